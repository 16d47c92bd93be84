/* tensor_impl: helpers shared by the kernels in tensor.c and tensor_conv.c
 * (internal; the interface is tensor.h). */
#ifndef DTF_TENSOR_IMPL_H
#define DTF_TENSOR_IMPL_H

#include "tensor.h" /* and util.h: dtf_seterr */

/* Two shapes for an error message. */
typedef struct { char a[96], b[96]; } shapes2;

static inline shapes2 sh2(const dtf_tensor *a, const dtf_tensor *b)
{
    shapes2 s;
    dtf_shape_str(a, s.a, sizeof s.a);
    dtf_shape_str(b, s.b, sizeof s.b);
    return s;
}

static inline const char *sh(const dtf_tensor *t, char *buf)
{
    return dtf_shape_str(t, buf, 96);
}

/* Sets the error "what: (a shape) and (b shape) do not match". */
#define MISMATCH(what, x, y)                                               \
    do {                                                                   \
        shapes2 s_ = sh2((x), (y));                                        \
        dtf_seterr("%s: (%s) and (%s) do not match", (what), s_.a, s_.b);  \
    } while (0)

/* ---- every sgemm of the kernels goes through here (tensor.c) ---------- */

/* cblas_sgemm, row-major, recorded while dtf_gemm_record() is on. */
void dtf_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* ---- short-row loops (tensor_simd.c), AVX-512 where the CPU has it ---- */

/* rows x cols floats: dst (row stride ds) = or += src (row stride ss). */
void dtf_rows_copy(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows,
                   int64_t cols);
void dtf_rows_add(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows,
                  int64_t cols);
/* o (rows, D) += b (D, NULL: none), then max(o, 0) if relu. */
void dtf_bias_relu_rows(float *o, int64_t rows, int64_t D, const float *b, int relu);
/* g = dy (rows, D; row stride sdy) masked by y > 0 (y NULL: no mask;
 * contiguous): dym (NULL skips) = g, db (D, NULL skips) += column sums. */
void dtf_mask_sum_rows(float *dym, float *db, const float *dy, int64_t sdy, const float *y,
                       int64_t rows, int64_t D);
/* One (OH, OW) plane src pooled 2x2 into out (OH/2, OW/2): max(max(window)
 * + bias, 0); at (NULL skips) gets the first maximum's offset in the plane. */
void dtf_pool2x2_relu(float *out, float *at, const float *src, int64_t OH, int64_t OW,
                      float bias);
/* Its backward: dst (OH, OW), every element written, gets dy at each
 * window's offset at where y > 0, 0 elsewhere; returns the sum routed. */
float dtf_unpool2x2_relu(float *dst, const float *dy, const float *y, const float *at,
                         int64_t OH, int64_t OW);
/* Tests: 1 runs the plain loops even where AVX-512 is there. */
void dtf_simd_force_plain(int on);

#endif
