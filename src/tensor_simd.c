/* tensor_simd: the short-row loops of the convolution kernels (im2col's
 * copies, col2im's sums, the fused pooling and its backward), with an
 * AVX-512 version chosen at run time where the CPU has it.
 *
 * Why by hand: the rows are 14 or 28 floats, which -O2 leaves scalar or
 * turns into a library call per row (memcpy, memset: 550k calls a CNN
 * step), and the pooling needs the even/odd split of a row that no
 * compiler finds. Each AVX-512 loop computes element for element what the
 * plain one does (same comparisons, same tie rule), so the choice changes
 * no result; only the bias gradient's sum is added in another order. */
#include "tensor_impl.h"

#include <stdint.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX512 1
#endif

static int force_plain;

void dtf_simd_force_plain(int on)
{
    force_plain = on;
}

#ifdef HAVE_AVX512
static int use_avx512(void)
{
    static int have = -1;
    if (have < 0)
        have = __builtin_cpu_supports("avx512f") != 0;
    return have && !force_plain;
}

static inline __mmask16 lanes(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

__attribute__((target("avx512f"))) static void rows_copy_avx512(float *dst, int64_t ds,
                                                                const float *src, int64_t ss,
                                                                int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++, dst += ds, src += ss)
        for (int64_t c = 0; c < cols; c += 16) {
            __mmask16 m = lanes(cols - c);
            _mm512_mask_storeu_ps(dst + c, m, _mm512_maskz_loadu_ps(m, src + c));
        }
}

__attribute__((target("avx512f"))) static void rows_add_avx512(float *dst, int64_t ds,
                                                               const float *src, int64_t ss,
                                                               int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++, dst += ds, src += ss)
        for (int64_t c = 0; c < cols; c += 16) {
            __mmask16 m = lanes(cols - c);
            __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + c), _mm512_maskz_loadu_ps(m, src + c));
            _mm512_mask_storeu_ps(dst + c, m, v);
        }
}
#endif

void dtf_rows_copy(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows,
                   int64_t cols)
{
#ifdef HAVE_AVX512
    if (use_avx512()) {
        rows_copy_avx512(dst, ds, src, ss, rows, cols);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++, dst += ds, src += ss)
        for (int64_t c = 0; c < cols; c++)
            dst[c] = src[c];
}

void dtf_rows_add(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows,
                  int64_t cols)
{
#ifdef HAVE_AVX512
    if (use_avx512()) {
        rows_add_avx512(dst, ds, src, ss, rows, cols);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++, dst += ds, src += ss)
        for (int64_t c = 0; c < cols; c++)
            dst[c] += src[c];
}

/* ======================================================================
 * Linear layers' row passes
 * ==================================================================== */

#ifdef HAVE_AVX512
__attribute__((target("avx512f"))) static void bias_relu_avx512(float *o, int64_t rows,
                                                                int64_t D, const float *b,
                                                                int relu)
{
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t r = 0; r < rows; r++, o += D)
        for (int64_t j = 0; j < D; j += 16) {
            __mmask16 m = lanes(D - j);
            __m512 v = _mm512_maskz_loadu_ps(m, o + j);
            if (b)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + j));
            if (relu) /* x > 0 ? x : 0, NaN to 0 as the plain loop */
                v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), v);
            _mm512_mask_storeu_ps(o + j, m, v);
        }
}

__attribute__((target("avx512f"))) static void mask_sum_avx512(float *dym, float *db,
                                                               const float *dy, int64_t sdy,
                                                               const float *y, int64_t rows,
                                                               int64_t D)
{
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t r = 0; r < rows; r++, dy += sdy)
        for (int64_t j = 0; j < D; j += 16) {
            __mmask16 m = lanes(D - j);
            __m512 g = _mm512_maskz_loadu_ps(m, dy + j);
            if (y)
                g = _mm512_maskz_mov_ps(
                    _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, y + r * D + j), zero, _CMP_GT_OQ), g);
            if (dym)
                _mm512_mask_storeu_ps(dym + r * D + j, m, g);
            if (db)
                _mm512_mask_storeu_ps(db + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, db + j), g));
        }
}
#endif

void dtf_bias_relu_rows(float *o, int64_t rows, int64_t D, const float *b, int relu)
{
#ifdef HAVE_AVX512
    if (use_avx512()) {
        bias_relu_avx512(o, rows, D, b, relu);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++, o += D)
        for (int64_t j = 0; j < D; j++) {
            float v = b ? o[j] + b[j] : o[j];
            o[j] = relu && !(v > 0) ? 0.0f : v;
        }
}

void dtf_mask_sum_rows(float *dym, float *db, const float *dy, int64_t sdy, const float *y,
                       int64_t rows, int64_t D)
{
#ifdef HAVE_AVX512
    if (use_avx512()) {
        mask_sum_avx512(dym, db, dy, sdy, y, rows, D);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++, dy += sdy)
        for (int64_t j = 0; j < D; j++) {
            float g = y && !(y[r * D + j] > 0) ? 0.0f : dy[j];
            if (dym)
                dym[r * D + j] = g;
            if (db)
                db[j] += g;
        }
}

/* ======================================================================
 * 2x2 pooling of a product plane, with bias and ReLU, and its backward
 * ==================================================================== */

static void pool_plain(float *out, float *at, const float *src, int64_t OH, int64_t OW, float bias)
{
    int64_t PH = OH / 2, PW = OW / 2;
    for (int64_t ph = 0; ph < PH; ph++) {
        const float *r0 = src + 2 * ph * OW, *r1 = r0 + OW;
        for (int64_t pw = 0; pw < PW; pw++) {
            int64_t j = 2 * pw, off = 0;
            float best = r0[j];
            if (r0[j + 1] > best) { best = r0[j + 1]; off = 1; }
            if (r1[j] > best) { best = r1[j]; off = OW; }
            if (r1[j + 1] > best) { best = r1[j + 1]; off = OW + 1; }
            float v = best + bias;
            out[ph * PW + pw] = v > 0 ? v : 0;
            if (at)
                at[ph * PW + pw] = (float)(2 * ph * OW + j + off);
        }
    }
}

static float unpool_plain(float *dst, const float *dy, const float *y, const float *at,
                          int64_t OH, int64_t OW)
{
    int64_t PH = OH / 2, PW = OW / 2;
    float acc = 0;
    for (int64_t ph = 0; ph < PH; ph++) {
        float *r0 = dst + 2 * ph * OW, *r1 = r0 + OW;
        for (int64_t pw = 0; pw < PW; pw++) {
            int64_t k = ph * PW + pw, j = 2 * pw, base = 2 * ph * OW + j;
            float g = y[k] > 0 ? dy[k] : 0.0f, f = at[k];
            /* 0, 1, OW or OW + 1 for an index forward wrote; none for junk */
            int64_t off = f >= 0 && f < (float)(OH * OW) ? (int64_t)f - base : -1;
            r0[j] = off == 0 ? g : 0.0f;
            r0[j + 1] = off == 1 ? g : 0.0f;
            r1[j] = off == OW ? g : 0.0f;
            r1[j + 1] = off == OW + 1 ? g : 0.0f;
            acc += g;
        }
        for (int64_t w = 2 * PW; w < OW; w++)
            r0[w] = r1[w] = 0;
    }
    for (int64_t i = 2 * PH * OW; i < OH * OW; i++)
        dst[i] = 0;
    return acc;
}

#ifdef HAVE_AVX512
/* Lanes 0..15 of the even (odd) elements of the 32 in (lo, hi). */
#define EVENS _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define ODDS _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)

/* The 2n floats from p as (lo, hi), 16 each (zeros past 2n). */
__attribute__((target("avx512f"))) static inline void load2(const float *p, int64_t n,
                                                            __m512 *lo, __m512 *hi)
{
    *lo = _mm512_maskz_loadu_ps(lanes(2 * n), p);
    *hi = _mm512_maskz_loadu_ps(lanes(2 * n - 16 > 0 ? 2 * n - 16 : 0), p + 16);
}

__attribute__((target("avx512f"))) static void pool_avx512(float *out, float *at, const float *src,
                                                           int64_t OH, int64_t OW, float bias)
{
    int64_t PH = OH / 2, PW = OW / 2;
    const __m512i ev = EVENS, od = ODDS, step2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16,
                                                                    18, 20, 22, 24, 26, 28, 30);
    const __m512 vb = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
    const __m512i one = _mm512_set1_epi32(1), ow = _mm512_set1_epi32((int)OW);
    const __m512i ow1 = _mm512_set1_epi32((int)OW + 1);
    for (int64_t ph = 0; ph < PH; ph++) {
        const float *r0 = src + 2 * ph * OW, *r1 = r0 + OW;
        for (int64_t p0 = 0; p0 < PW; p0 += 16) {
            int64_t n = PW - p0 < 16 ? PW - p0 : 16;
            __m512 a, b;
            load2(r0 + 2 * p0, n, &a, &b);
            __m512 e0 = _mm512_permutex2var_ps(a, ev, b), o0 = _mm512_permutex2var_ps(a, od, b);
            load2(r1 + 2 * p0, n, &a, &b);
            __m512 e1 = _mm512_permutex2var_ps(a, ev, b), o1 = _mm512_permutex2var_ps(a, od, b);
            __m512 best = e0;
            __m512i off = _mm512_setzero_si512();
            __mmask16 m = _mm512_cmp_ps_mask(o0, best, _CMP_GT_OQ);
            best = _mm512_mask_mov_ps(best, m, o0);
            off = _mm512_mask_mov_epi32(off, m, one);
            m = _mm512_cmp_ps_mask(e1, best, _CMP_GT_OQ);
            best = _mm512_mask_mov_ps(best, m, e1);
            off = _mm512_mask_mov_epi32(off, m, ow);
            m = _mm512_cmp_ps_mask(o1, best, _CMP_GT_OQ);
            best = _mm512_mask_mov_ps(best, m, o1);
            off = _mm512_mask_mov_epi32(off, m, ow1);
            __mmask16 keep = lanes(n);
            _mm512_mask_storeu_ps(out + ph * PW + p0, keep, _mm512_max_ps(_mm512_add_ps(best, vb), zero));
            if (at) {
                __m512i base = _mm512_set1_epi32((int)(2 * ph * OW + 2 * p0));
                __m512i k = _mm512_add_epi32(_mm512_add_epi32(base, step2), off);
                _mm512_mask_storeu_ps(at + ph * PW + p0, keep, _mm512_cvtepi32_ps(k));
            }
        }
    }
}

__attribute__((target("avx512f"))) static float unpool_avx512(float *dst, const float *dy,
                                                              const float *y, const float *at,
                                                              int64_t OH, int64_t OW)
{
    int64_t PH = OH / 2, PW = OW / 2;
    const __m512i lo_i = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi_i = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30,
                                           15, 31);
    const __m512i step2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                            30);
    const __m512 zero = _mm512_setzero_ps(), limit = _mm512_set1_ps((float)(OH * OW));
    const __m512i one = _mm512_set1_epi32(1), ow = _mm512_set1_epi32((int)OW);
    const __m512i ow1 = _mm512_set1_epi32((int)OW + 1), none = _mm512_set1_epi32(-1);
    __m512 acc = zero;
    for (int64_t ph = 0; ph < PH; ph++) {
        float *r0 = dst + 2 * ph * OW, *r1 = r0 + OW;
        for (int64_t p0 = 0; p0 < PW; p0 += 16) {
            int64_t n = PW - p0 < 16 ? PW - p0 : 16, k = ph * PW + p0;
            __mmask16 keep = lanes(n);
            __m512 yv = _mm512_maskz_loadu_ps(keep, y + k), f = _mm512_maskz_loadu_ps(keep, at + k);
            __m512 g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(yv, zero, _CMP_GT_OQ),
                                           _mm512_maskz_loadu_ps(keep, dy + k));
            acc = _mm512_add_ps(acc, g);
            __mmask16 valid = _mm512_cmp_ps_mask(f, zero, _CMP_GE_OQ)
                              & _mm512_cmp_ps_mask(f, limit, _CMP_LT_OQ);
            __m512i base = _mm512_add_epi32(_mm512_set1_epi32((int)(2 * ph * OW + 2 * p0)), step2);
            __m512i off = _mm512_mask_mov_epi32(none, valid,
                                                _mm512_sub_epi32(_mm512_cvttps_epi32(f), base));
            __m512 e0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(off, _mm512_setzero_si512()), g);
            __m512 o0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(off, one), g);
            __m512 e1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(off, ow), g);
            __m512 o1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(off, ow1), g);
            __mmask16 m0 = lanes(2 * n), m1 = lanes(2 * n - 16 > 0 ? 2 * n - 16 : 0);
            _mm512_mask_storeu_ps(r0 + 2 * p0, m0, _mm512_permutex2var_ps(e0, lo_i, o0));
            _mm512_mask_storeu_ps(r0 + 2 * p0 + 16, m1, _mm512_permutex2var_ps(e0, hi_i, o0));
            _mm512_mask_storeu_ps(r1 + 2 * p0, m0, _mm512_permutex2var_ps(e1, lo_i, o1));
            _mm512_mask_storeu_ps(r1 + 2 * p0 + 16, m1, _mm512_permutex2var_ps(e1, hi_i, o1));
        }
        for (int64_t w = 2 * PW; w < OW; w++)
            r0[w] = r1[w] = 0;
    }
    for (int64_t i = 2 * PH * OW; i < OH * OW; i++)
        dst[i] = 0;
    return _mm512_reduce_add_ps(acc);
}
#endif

void dtf_pool2x2_relu(float *out, float *at, const float *src, int64_t OH, int64_t OW, float bias)
{
#ifdef HAVE_AVX512
    /* the index arithmetic is int32 */
    if (use_avx512() && OH * OW < INT32_MAX / 2) {
        pool_avx512(out, at, src, OH, OW, bias);
        return;
    }
#endif
    pool_plain(out, at, src, OH, OW, bias);
}

float dtf_unpool2x2_relu(float *dst, const float *dy, const float *y, const float *at,
                         int64_t OH, int64_t OW)
{
#ifdef HAVE_AVX512
    if (use_avx512() && OH * OW < INT32_MAX / 2)
        return unpool_avx512(dst, dy, y, at, OH, OW);
#endif
    return unpool_plain(dst, dy, y, at, OH, OW);
}
