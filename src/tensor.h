/* tensor: float32 n-d tensors over refcounted storage, and their kernels.
 *
 * A tensor is a header (shape, strides, offset) over a dtf_storage that may be
 * shared: views (reshape, narrow, transpose) cost a header, and a ps shard or
 * an in-flight send can hold the storage alive. Kernels take their outputs
 * from the caller and never allocate hidden state; each fast kernel has a
 * naive twin in tensor_naive.c that the tests compare it with.
 *
 * Gradient convention (THNN's): kernels that compute the gradient of an
 * *input* overwrite it; kernels that compute the gradient of a *parameter*
 * accumulate into it (+=), so zeroing parameter gradients is explicit.
 *
 * Errors: functions that can fail return 0 / -1 and set dtf_error(); a shape
 * mismatch names both shapes. */
#ifndef DTF_TENSOR_H
#define DTF_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define DTF_MAXDIM 6

typedef struct dtf_storage {
    float *data;
    size_t size;     /* number of floats */
    int refs;        /* owners: tensors, shards, in-flight sends */
    int owns;        /* data was allocated here and is freed with the storage */
} dtf_storage;

typedef struct dtf_tensor {
    dtf_storage *st;                 /* NULL for an inert (released) tensor */
    size_t off;                      /* first element, in floats */
    int ndim;
    int64_t shape[DTF_MAXDIM];
    int64_t stride[DTF_MAXDIM];      /* in floats */
} dtf_tensor;

static inline float *dtf_data(const dtf_tensor *t) { return t->st->data + t->off; }


/* ---- storage ---------------------------------------------------------------
 * A storage starts with one reference, held by whoever created it. */

/* n zeroed floats (data and header in one allocation); NULL on OOM. */
dtf_storage *dtf_storage_new(size_t n);
/* Wraps external memory. owns = 1 takes ownership of data (freed with free()
 * on the last release); owns = 0 borrows it (the caller keeps it alive). */
dtf_storage *dtf_storage_wrap(float *data, size_t n, int owns);
void dtf_storage_retain(dtf_storage *s);
void dtf_storage_release(dtf_storage *s); /* NULL is fine */

/* ---- headers -----------------------------------------------------------------
 * View functions (view, narrow, select, transpose, expand_row) write a header
 * into *out that borrows t's storage: they change no reference count, so
 * retain out->st if out outlives t. out may be t itself. */

/* A contiguous tensor over fresh zeroed storage (one reference, owned by *t).
 * ndim 0 is a scalar of one element. */
int dtf_tensor_init(dtf_tensor *t, int ndim, const int64_t *shape);
/* Header only: contiguous shape over st starting at off (no retain). */
int dtf_tensor_set(dtf_tensor *t, dtf_storage *st, size_t off, int ndim,
                   const int64_t *shape);
/* Drops t's reference and makes t inert (st = NULL); safe twice. */
void dtf_tensor_release(dtf_tensor *t);

int64_t dtf_numel(const dtf_tensor *t);
int dtf_is_contiguous(const dtf_tensor *t);
int dtf_same_shape(const dtf_tensor *a, const dtf_tensor *b);
/* "64x784" ("scalar" for ndim 0) into buf; returns buf. */
const char *dtf_shape_str(const dtf_tensor *t, char *buf, size_t n);
/* Checks that [off, off + span) of every element lies inside the storage. */
int dtf_check_bounds(const dtf_tensor *t);

/* Reshape without a copy; one entry of shape may be -1 (inferred). Errors
 * when t is not contiguous or the element counts differ. */
int dtf_view(dtf_tensor *out, const dtf_tensor *t, int ndim, const int64_t *shape);
/* 0-based dim and start. */
int dtf_narrow(dtf_tensor *out, const dtf_tensor *t, int dim, int64_t start, int64_t len);
/* Removes dim, keeping index i (0-based). */
int dtf_select(dtf_tensor *out, const dtf_tensor *t, int dim, int64_t i);
int dtf_transpose(dtf_tensor *out, const dtf_tensor *t, int d1, int d2);
/* A 1-D tensor of size shape[ndim-1] seen with shape `shape` (stride 0 on the
 * leading dims): the row-vector broadcast. */
int dtf_expand_row(dtf_tensor *out, const dtf_tensor *row, int ndim, const int64_t *shape);

/* dst <- src elementwise in logical (row-major) order; same numel, any
 * strides and shapes. Overlapping dst and src are not supported. */
int dtf_copy(dtf_tensor *dst, const dtf_tensor *src);
void dtf_fill(dtf_tensor *t, float v);
/* Seeded fills, element by element in logical order, so the same seed gives
 * the same tensor everywhere. */
void dtf_fill_normal(dtf_tensor *t, dtf_rng *r, float mean, float std);
void dtf_fill_uniform(dtf_tensor *t, dtf_rng *r, float lo, float hi);
/* Element at a 0-based multi-index (no checks). */
float *dtf_at(const dtf_tensor *t, const int64_t *idx);
/* FNV-1a over the float bytes in logical order (chain from seed). */
uint64_t dtf_tensor_hash(const dtf_tensor *t, uint64_t seed);

/* ---- kernels -----------------------------------------------------------------
 * Each returns 0, or -1 with dtf_error() set (a shape mismatch names both
 * shapes). Unless said otherwise an output may be the same tensor as an
 * input of the same shape and strides (in place), but must not otherwise
 * overlap one. Each has a twin NAME_naive in tensor_naive.c. */

/* c = alpha * a @ b + beta * c, a (M,K), b (K,N), c (M,N). a and b may be
 * transposed views (any of row- or column-major strides go to sgemm as they
 * are, with CblasTrans where needed); only an operand that fits neither
 * layout is copied. beta = 0 overwrites c (NaNs in c are not propagated). */
int dtf_matmul(dtf_tensor *c, const dtf_tensor *a, const dtf_tensor *b,
               float alpha, float beta);

/* A linear layer: y (N,out) = x (N,in) @ w (out,in)^T + b (out), then
 * max(y, 0) if relu; y contiguous, b may be NULL. */
int dtf_linear(dtf_tensor *y, const dtf_tensor *x, const dtf_tensor *w, const dtf_tensor *b,
               int relu);
/* Its backward pass from dy (N,out): with y (the ReLU output, NULL for no
 * ReLU) the gradient is first masked by y > 0 into dym (contiguous, dy's
 * shape; unused without y); then db += its column sums, dw += g^T @ x, dx
 * = g @ w (overwritten). dx, dw, db may each be NULL (skipped). */
int dtf_linear_backward(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db, const dtf_tensor *dy,
                        const dtf_tensor *x, const dtf_tensor *w, const dtf_tensor *y,
                        dtf_tensor *dym);

typedef enum {
    DTF_ADD = 0, DTF_SUB, DTF_MUL, DTF_DIV,
    DTF_RSUB, DTF_RDIV /* scalar only: s - a, s / a */
} dtf_binop;

/* out = a OP (alpha * b) for ADD and SUB, a OP b for MUL and DIV (alpha is
 * ignored). a and b have the same shape, or one of them is 1-D with the size
 * of the other's last dim (a row vector broadcast over the leading dims);
 * out has the full shape. */
int dtf_binary(dtf_tensor *out, const dtf_tensor *a, const dtf_tensor *b,
               dtf_binop op, float alpha);
/* out = a OP s (RSUB: s - a, RDIV: s / a); out has a's shape. */
int dtf_binary_scalar(dtf_tensor *out, const dtf_tensor *a, float s, dtf_binop op);

/* Reductions over everything (accumulated in double; 0 / -inf for no
 * elements; argmax is the first maximum's linear index in logical order,
 * -1 for no elements). */
double dtf_sum_all(const dtf_tensor *t);
double dtf_max_all(const dtf_tensor *t);
int64_t dtf_argmax_all(const dtf_tensor *t);
/* Along dim (0-based). out has t's shape without dim ({1} when t is 1-D) or
 * with dim kept as size 1; any strides. max_dim: vals and/or idx may be NULL;
 * idx receives the 0-based index along dim, as a float. */
int dtf_sum_dim(dtf_tensor *out, const dtf_tensor *t, int dim);
int dtf_mean_dim(dtf_tensor *out, const dtf_tensor *t, int dim);
int dtf_max_dim(dtf_tensor *vals, dtf_tensor *idx, const dtf_tensor *t, int dim);

/* out = max(x, 0); dx = dy * (x > 0) (overwrites dx; dx may be dy). */
int dtf_relu(dtf_tensor *out, const dtf_tensor *x);
int dtf_relu_backward(dtf_tensor *dx, const dtf_tensor *dy, const dtf_tensor *x);

/* Row-wise over the last dim, max-subtracted. */
int dtf_softmax(dtf_tensor *out, const dtf_tensor *x);
int dtf_log_softmax(dtf_tensor *out, const dtf_tensor *x);

/* logits (N,C), labels (N) holding class values 0..C-1 as floats. *loss =
 * mean over rows of -log softmax(logits)[label]. dlogits (N,C), when not
 * NULL, is overwritten with (softmax - onehot) / N; it may be logits. */
int dtf_cross_entropy(const dtf_tensor *logits, const dtf_tensor *labels,
                      dtf_tensor *dlogits, double *loss);
/* *count = rows of logits (N,C) whose argmax equals the label. */
int dtf_accuracy(const dtf_tensor *logits, const dtf_tensor *labels, int64_t *count);

/* db (D) += column sums of dy (..., D). */
int dtf_bias_backward(dtf_tensor *db, const dtf_tensor *dy);

/* conv2d over contiguous tensors: x (N,C,H,W), w (O,C,KH,KW), b (O) or NULL,
 * y (N,O,OH,OW) with OH = (H + 2 pad - KH) / stride + 1. ws is the
 * workspace (im2col and the product of a chunk of images): with
 * dtf_conv2d_workspace() floats the chunk is the one sized for the caches;
 * less (but at least one image's worth) works in smaller chunks. */
size_t dtf_conv2d_workspace(const dtf_tensor *x, const dtf_tensor *w, int stride, int pad);
int dtf_conv2d(dtf_tensor *y, const dtf_tensor *x, const dtf_tensor *w,
               const dtf_tensor *b, int stride, int pad, float *ws, size_t ws_n);
/* dx (overwritten; NULL skips), dw += , db += (NULL skips). */
int dtf_conv2d_backward(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db,
                        const dtf_tensor *dy, const dtf_tensor *x,
                        const dtf_tensor *w, int stride, int pad,
                        float *ws, size_t ws_n);

/* The block conv2d, + bias, ReLU, 2x2 max-pooling in one pass, without the
 * full-size activation: y (N,O,OH/2,OW/2) = maxpool(relu(conv2d(x) + b)),
 * idx (same shape, NULL skips) the offsets of the maxima as maxpool2d
 * gives them (where y is 0 any offset in the window may be given). The
 * workspace is conv2d's. backward: dy is the gradient of y; dx
 * (overwritten; NULL skips), dw +=, db += (NULL skips), as the three
 * layers' backward passes would give. */
int dtf_conv2d_relu_pool(dtf_tensor *y, dtf_tensor *idx, const dtf_tensor *x,
                         const dtf_tensor *w, const dtf_tensor *b, int stride, int pad,
                         float *ws, size_t ws_n);
int dtf_conv2d_relu_pool_backward(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db,
                                  const dtf_tensor *dy, const dtf_tensor *y,
                                  const dtf_tensor *idx, const dtf_tensor *x,
                                  const dtf_tensor *w, int stride, int pad, float *ws,
                                  size_t ws_n);

/* 2x2 max pooling with stride 2 over contiguous x (N,C,H,W) -> y
 * (N,C,H/2,W/2) (odd edges dropped). idx (same shape as y) receives each
 * maximum's offset h*W+w inside its (H,W) plane, as a float. backward
 * overwrites dx (N,C,H,W) and routes dy to those offsets. */
int dtf_maxpool2d(dtf_tensor *y, dtf_tensor *idx, const dtf_tensor *x);
int dtf_maxpool2d_backward(dtf_tensor *dx, const dtf_tensor *dy, const dtf_tensor *idx);

/* ---- naive twins (tensor_naive.c) ---------------------------------------- */
int dtf_matmul_naive(dtf_tensor *c, const dtf_tensor *a, const dtf_tensor *b,
                     float alpha, float beta);
int dtf_linear_naive(dtf_tensor *y, const dtf_tensor *x, const dtf_tensor *w,
                     const dtf_tensor *b, int relu);
int dtf_linear_backward_naive(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db,
                              const dtf_tensor *dy, const dtf_tensor *x, const dtf_tensor *w,
                              const dtf_tensor *y, dtf_tensor *dym);
int dtf_binary_naive(dtf_tensor *out, const dtf_tensor *a, const dtf_tensor *b,
                     dtf_binop op, float alpha);
int dtf_binary_scalar_naive(dtf_tensor *out, const dtf_tensor *a, float s, dtf_binop op);
double dtf_sum_all_naive(const dtf_tensor *t);
double dtf_max_all_naive(const dtf_tensor *t);
int64_t dtf_argmax_all_naive(const dtf_tensor *t);
int dtf_sum_dim_naive(dtf_tensor *out, const dtf_tensor *t, int dim);
int dtf_mean_dim_naive(dtf_tensor *out, const dtf_tensor *t, int dim);
int dtf_max_dim_naive(dtf_tensor *vals, dtf_tensor *idx, const dtf_tensor *t, int dim);
int dtf_relu_naive(dtf_tensor *out, const dtf_tensor *x);
int dtf_relu_backward_naive(dtf_tensor *dx, const dtf_tensor *dy, const dtf_tensor *x);
int dtf_softmax_naive(dtf_tensor *out, const dtf_tensor *x);
int dtf_log_softmax_naive(dtf_tensor *out, const dtf_tensor *x);
int dtf_cross_entropy_naive(const dtf_tensor *logits, const dtf_tensor *labels,
                            dtf_tensor *dlogits, double *loss);
int dtf_accuracy_naive(const dtf_tensor *logits, const dtf_tensor *labels, int64_t *count);
int dtf_bias_backward_naive(dtf_tensor *db, const dtf_tensor *dy);
int dtf_conv2d_naive(dtf_tensor *y, const dtf_tensor *x, const dtf_tensor *w,
                     const dtf_tensor *b, int stride, int pad, float *ws, size_t ws_n);
int dtf_conv2d_backward_naive(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db,
                              const dtf_tensor *dy, const dtf_tensor *x,
                              const dtf_tensor *w, int stride, int pad,
                              float *ws, size_t ws_n);
int dtf_conv2d_relu_pool_naive(dtf_tensor *y, dtf_tensor *idx, const dtf_tensor *x,
                               const dtf_tensor *w, const dtf_tensor *b, int stride, int pad,
                               float *ws, size_t ws_n);
int dtf_conv2d_relu_pool_backward_naive(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db,
                                        const dtf_tensor *dy, const dtf_tensor *y,
                                        const dtf_tensor *idx, const dtf_tensor *x,
                                        const dtf_tensor *w, int stride, int pad, float *ws,
                                        size_t ws_n);
int dtf_maxpool2d_naive(dtf_tensor *y, dtf_tensor *idx, const dtf_tensor *x);
int dtf_maxpool2d_backward_naive(dtf_tensor *dx, const dtf_tensor *dy, const dtf_tensor *idx);

/* ---- the matmul-only bound (bench/step.lua) ------------------------------
 * Every sgemm the kernels call can be recorded (shape, transposes, leading
 * dimensions, beta) and replayed alone on scratch operands: the time a
 * training step spends in sgemm, without anything else it does. */
typedef struct dtf_gemm_call {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float beta;
} dtf_gemm_call;
/* Starts recording into calls[0..cap) (NULL stops). */
void dtf_gemm_record(dtf_gemm_call *calls, size_t cap);
/* Calls made since recording started (more than cap: the rest were lost). */
size_t dtf_gemm_recorded(void);
/* Floats of scratch dtf_gemm_replay needs for these calls. */
size_t dtf_gemm_replay_scratch(const dtf_gemm_call *calls, size_t n);
int dtf_gemm_replay(const dtf_gemm_call *calls, size_t n, float *scratch, size_t scratch_n);

/* Sets the BLAS thread count (openblas_set_num_threads). */
void dtf_set_num_threads(int n);

#endif
