/* bf16: float32 <-> bfloat16 over arrays (bf16.h): a plain C path, an AVX2
 * path and an AVX-512 BF16 path, picked once by cpuid, and the naive twins
 * the tests hold them to. */
#include "bf16.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#define DTF_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#define EXP_MASK 0x7f800000u   /* a float32's exponent bits */
#define ABS_MASK 0x7fffffffu
#define QUIET 0x0040u          /* a bf16's top mantissa bit: set in every NaN made here */

/* ---- one value ----------------------------------------------------------- */

uint16_t dtf_bf16_from_float(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & ABS_MASK) > EXP_MASK) /* NaN: truncated, kept quiet */
        return (uint16_t)((u >> 16) | QUIET);
    /* Adding 0x7fff rounds up past the halfway point; the kept part's
     * lowest bit added on top makes an exact half round to even. A carry
     * into the exponent is right (1.1111111|1 rounds to 10.0000000), and
     * the largest finite values carry into inf. */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float dtf_bf16_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- plain C ----------------------------------------------------------------- */

static void narrow_scalar(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = dtf_bf16_from_float(in[i]);
}

/* Element by element through memcpy: in may lie in out's memory (bf16.h),
 * and memcpy's accesses may alias, whatever the aliasing flags. */
static void widen_scalar(float *out, const uint16_t *in, size_t n)
{
    const unsigned char *src = (const unsigned char *)in;
    unsigned char *dst = (unsigned char *)out;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        uint32_t u = (uint32_t)h << 16;
        memcpy(dst + 4 * i, &u, 4);
    }
}

/* ---- x86 ------------------------------------------------------------------------ */

#ifdef DTF_X86

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* The CPU must have the instructions and the OS must save the registers
 * (XCR0: SSE and AVX state; for AVX-512 also the opmask and ZMM state). */
static int detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)) || !(c & (1u << 28)))
        return DTF_BF16_SCALAR; /* no OSXSAVE or no AVX */
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6 || __get_cpuid_max(0, NULL) < 7)
        return DTF_BF16_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512 = ((b >> 16) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1); /* F, BW, VL */
    int maxsub = (int)a;
    int bf16 = 0;
    if (maxsub >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        bf16 = (a >> 5) & 1;
    }
    if (avx512 && bf16 && (xcr0 & 0xe6) == 0xe6)
        return DTF_BF16_AVX512;
    return avx2 ? DTF_BF16_AVX2 : DTF_BF16_SCALAR;
}

#define AVX2_TARGET __attribute__((target("avx2")))
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

AVX2_TARGET static void narrow_avx2(uint16_t *out, const float *in, size_t n)
{
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    const __m256i absm = _mm256_set1_epi32((int)ABS_MASK), inf = _mm256_set1_epi32((int)EXP_MASK);
    const __m256i quiet = _mm256_set1_epi32((int)QUIET);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; k++) {
            __m256i u = _mm256_loadu_si256((const __m256i *)(in + i + 8 * k));
            __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            __m256i t = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
            __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
            r[k] = _mm256_blendv_epi8(t, q, nan);
        }
        /* packus works within 128-bit lanes: a0-3 b0-3 a4-7 b4-7, put back in order */
        __m256i p = _mm256_packus_epi32(r[0], r[1]);
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_permute4x64_epi64(p, 0xd8));
    }
    narrow_scalar(out + i, in + i, n - i);
}

/* Each block is loaded whole before it is stored, so in may sit in the
 * upper part of out (bf16.h): a block's stores end at or before the next
 * block's loads begin. */
AVX2_TARGET static void widen_avx2(float *out, const uint16_t *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(in + i)));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_slli_epi32(h, 16));
    }
    widen_scalar(out + i, in + i, n - i);
}

/* Lanes holding a subnormal float: 1 <= |bits| <= 0x7fffff. */
AVX512_TARGET static __mmask16 subnormals512(__m512 x)
{
    __m512i t = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)ABS_MASK));
    return _mm512_cmplt_epu32_mask(_mm512_sub_epi32(t, _mm512_set1_epi32(1)),
                                   _mm512_set1_epi32(0x7fffff));
}

/* vcvtne2ps2bf16 rounds to nearest even and quiets NaNs as the scalar
 * code does, but treats subnormal inputs as zero (it ignores MXCSR). A
 * block with a subnormal in it, rare in gradients and parameters, is done
 * again in plain C so that every path gives the same bits. */
AVX512_TARGET static void narrow_avx512(uint16_t *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = _mm512_loadu_ps(in + i), b = _mm512_loadu_ps(in + i + 16);
        __m512bh r = _mm512_cvtne2ps_pbh(b, a); /* a goes to the low half */
        _mm512_storeu_si512((void *)(out + i), (__m512i)r);
        if (subnormals512(a) | subnormals512(b))
            narrow_scalar(out + i, in + i, 32);
    }
    for (; i < n; i += 16) {
        size_t k = n - i < 16 ? n - i : 16;
        __mmask16 m = (__mmask16)((1u << k) - 1);
        __m512 a = _mm512_maskz_loadu_ps(m, in + i);
        __m256bh r = _mm512_cvtneps_pbh(a);
        _mm256_mask_storeu_epi16((void *)(out + i), m, (__m256i)r);
        if (subnormals512(a) & m)
            narrow_scalar(out + i, in + i, k);
    }
}

/* As widen_avx2: each block loaded whole before it is stored. */
AVX512_TARGET static void widen_avx512(float *out, const uint16_t *in, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(in + i)));
        _mm512_storeu_si512((void *)(out + i), _mm512_slli_epi32(h, 16));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, in + i));
        _mm512_mask_storeu_epi32((void *)(out + i), m, _mm512_slli_epi32(h, 16));
    }
}

#else

static int detect(void)
{
    return DTF_BF16_SCALAR;
}

#endif

/* ---- dispatch ---------------------------------------------------------------------- */

static atomic_int best_path = -1;

int dtf_bf16_best_path(void)
{
    int p = atomic_load_explicit(&best_path, memory_order_relaxed);
    if (p < 0) {
        p = detect();
        atomic_store_explicit(&best_path, p, memory_order_relaxed);
    }
    return p;
}

int dtf_bf16_have_path(int path)
{
    int best = dtf_bf16_best_path();
    /* each path's CPU features include the ones below it */
    return path >= 0 && path <= best;
}

const char *dtf_bf16_path_name(int path)
{
    static const char *const names[] = {"scalar", "avx2", "avx512-bf16"};
    return path >= 0 && path < DTF_BF16_NPATHS ? names[path] : "?";
}

int dtf_bf16_from_floats_on(int path, uint16_t *out, const float *in, size_t n)
{
    if (!dtf_bf16_have_path(path)) {
        dtf_seterr("bf16 path %s is not available on this CPU", dtf_bf16_path_name(path));
        return -1;
    }
    switch (path) {
#ifdef DTF_X86
    case DTF_BF16_AVX512: narrow_avx512(out, in, n); break;
    case DTF_BF16_AVX2: narrow_avx2(out, in, n); break;
#endif
    default: narrow_scalar(out, in, n); break;
    }
    return 0;
}

int dtf_bf16_to_floats_on(int path, float *out, const uint16_t *in, size_t n)
{
    if (!dtf_bf16_have_path(path)) {
        dtf_seterr("bf16 path %s is not available on this CPU", dtf_bf16_path_name(path));
        return -1;
    }
    switch (path) {
#ifdef DTF_X86
    case DTF_BF16_AVX512: widen_avx512(out, in, n); break;
    case DTF_BF16_AVX2: widen_avx2(out, in, n); break;
#endif
    default: widen_scalar(out, in, n); break;
    }
    return 0;
}

void dtf_bf16_from_floats(uint16_t *out, const float *in, size_t n)
{
    dtf_bf16_from_floats_on(dtf_bf16_best_path(), out, in, n);
}

void dtf_bf16_to_floats(float *out, const uint16_t *in, size_t n)
{
    dtf_bf16_to_floats_on(dtf_bf16_best_path(), out, in, n);
}

/* ---- naive twins ------------------------------------------------------------------ */

float dtf_bf16_to_float_naive(uint16_t h)
{
    int sign = h >> 15, e = (h >> 7) & 0xff, m = h & 0x7f;
    double v;
    if (e == 0xff) {
        if (m) /* a NaN keeps its bits */
            return dtf_bf16_to_float(h);
        v = INFINITY;
    } else if (e == 0) {
        v = ldexp(m, -133);              /* subnormal: m * 2^(1 - 127 - 7) */
    } else {
        v = ldexp(128 + m, e - 127 - 7); /* 1.m * 2^(e - 127) */
    }
    return (float)(sign ? -v : v);
}

uint16_t dtf_bf16_from_float_naive(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    if (isnan(x))
        return (uint16_t)((u >> 16) | QUIET);
    if (isinf(x))
        return (uint16_t)(sign | 0x7f80u);
    /* bf16 keeps 8 significant bits: in [2^(e-1), 2^e) its spacing is
     * 2^(e-8), and never finer than the smallest subnormal, 2^-133. */
    double a = fabs((double)x);
    int e;
    frexp(a, &e);
    int q = e - 8 < -133 ? -133 : e - 8;
    double r = ldexp(rint(ldexp(a, -q)), q); /* rint: to nearest, ties to even */
    if (r >= ldexp(1.0, 128))
        return (uint16_t)(sign | 0x7f80u); /* past the largest finite bf16 */
    float f = (float)r;                      /* exact: r has at most 8 significant bits */
    uint32_t v;
    memcpy(&v, &f, 4);
    return (uint16_t)(sign | (v >> 16));
}
