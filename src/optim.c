/* optim: SGD (momentum, Nesterov, L2), Adam (L2) and AdamW (decoupled
 * weight decay) with PyTorch's update rules (torch.optim, dampening 0,
 * amsgrad off), one loop over a range of the flat parameter buffer. */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "util.h"

void dtf_optim_defaults(dtf_optim *o, dtf_optim_kind kind)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->lr = 0.001f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    /* PyTorch's AdamW decays by default; SGD and Adam do not. */
    o->weight_decay = kind == DTF_ADAMW ? 0.01f : 0.0f;
}

int dtf_optim_kind_from_name(const char *name)
{
    if (!strcmp(name, "sgd"))
        return DTF_SGD;
    if (!strcmp(name, "adam"))
        return DTF_ADAM;
    if (!strcmp(name, "adamw"))
        return DTF_ADAMW;
    dtf_seterr("unknown optimizer '%s' (sgd, adam, adamw)", name);
    return -1;
}

const char *dtf_optim_kind_name(dtf_optim_kind kind)
{
    switch (kind) {
    case DTF_SGD: return "sgd";
    case DTF_ADAM: return "adam";
    case DTF_ADAMW: return "adamw";
    }
    return "?";
}

int dtf_optim_nslots(const dtf_optim *o)
{
    if (o->kind == DTF_SGD)
        return o->momentum != 0 ? 1 : 0;
    return 2;
}

static void sgd(const dtf_optim *o, float *p, const float *g, float *buf, size_t n)
{
    float lr = o->lr, wd = o->weight_decay, mu = o->momentum;
    if (mu == 0 || !buf) {
        for (size_t i = 0; i < n; i++)
            p[i] -= lr * (g[i] + wd * p[i]);
        return;
    }
    /* buf = mu * buf + d (torch starts buf at d on the first step, which is
     * the same thing with buf zeroed). */
    if (o->nesterov) {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            float b = mu * buf[i] + d;
            buf[i] = b;
            p[i] -= lr * (d + mu * b);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            float b = mu * buf[i] + d;
            buf[i] = b;
            p[i] -= lr * b;
        }
    }
}

/* Adam's per-step constants. Every path below computes each element with
 * the same IEEE operations in the same order (no FMA contraction: the core
 * builds as ISO C), so a parameter gets the same bits whether it lands in a
 * vector lane or the scalar tail, i.e. whatever range a ps shard covers.
 * plain: no weight decay (l2 = 0, shrink = 1), the terms are left out (as
 * torch.optim leaves them out). zero: the gradient is cleared as it is
 * read (one process). */
typedef struct {
    float b1, b2, c1, c2, eps, step_size, rbc2, l2, shrink;
    int plain, zero;
} adam_k;

static void adam_scalar(const adam_k *k, float *p, float *g, float *m, float *v, size_t i,
                        size_t n)
{
    for (; i < n; i++) {
        float pi = k->plain ? p[i] : p[i] * k->shrink;
        float d = k->plain ? g[i] : g[i] + k->l2 * p[i];
        float mi = k->b1 * m[i] + k->c1 * d;
        float vi = k->b2 * v[i] + (k->c2 * d) * d;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - (k->step_size * mi) / (sqrtf(vi) * k->rbc2 + k->eps);
        if (k->zero)
            g[i] = 0;
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_ADAM_AVX 1

/* The baseline build targets plain x86-64; this one function uses AVX when
 * the CPU has it (sqrtf blocks auto-vectorization, and Adam is the largest
 * cost of a small model's step after sgemm). Returns how many it did. */
__attribute__((target("avx"))) static size_t adam_avx(const adam_k *k, float *p, float *g,
                                                      float *m, float *v, size_t n)
{
    __m256 b1 = _mm256_set1_ps(k->b1), b2 = _mm256_set1_ps(k->b2);
    __m256 c1 = _mm256_set1_ps(k->c1), c2 = _mm256_set1_ps(k->c2);
    __m256 eps = _mm256_set1_ps(k->eps), ss = _mm256_set1_ps(k->step_size);
    __m256 rbc2 = _mm256_set1_ps(k->rbc2), l2 = _mm256_set1_ps(k->l2);
    __m256 shrink = _mm256_set1_ps(k->shrink), zero = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 pv = _mm256_loadu_ps(p + i), gv = _mm256_loadu_ps(g + i), pi = pv, d = gv;
        if (!k->plain) {
            pi = _mm256_mul_ps(pv, shrink);
            d = _mm256_add_ps(gv, _mm256_mul_ps(l2, pv));
        }
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(c1, d));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)),
                                  _mm256_mul_ps(_mm256_mul_ps(c2, d), d));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), rbc2), eps);
        _mm256_storeu_ps(p + i, _mm256_sub_ps(pi, _mm256_div_ps(_mm256_mul_ps(ss, mi), den)));
        if (k->zero)
            _mm256_storeu_ps(g + i, zero);
    }
    return i;
}
#endif

/* g is only written with zero set. */
static void adam(const dtf_optim *o, float *p, float *g, float *m, float *v, size_t n,
                 int64_t step, int decoupled, int zero)
{
    if (step < 1)
        step = 1;
    double bc1 = 1.0 - pow((double)o->beta1, (double)step);
    double bc2 = 1.0 - pow((double)o->beta2, (double)step);
    adam_k k;
    k.b1 = o->beta1;
    k.b2 = o->beta2;
    k.c1 = 1 - o->beta1;
    k.c2 = 1 - o->beta2;
    k.eps = o->eps;
    k.step_size = (float)(o->lr / bc1);
    k.rbc2 = (float)(1.0 / sqrt(bc2));
    k.l2 = decoupled ? 0.0f : o->weight_decay;
    k.shrink = decoupled ? 1.0f - o->lr * o->weight_decay : 1.0f;
    k.plain = k.l2 == 0 && k.shrink == 1;
    k.zero = zero;
    size_t i = 0;
#ifdef HAVE_ADAM_AVX
    if (__builtin_cpu_supports("avx"))
        i = adam_avx(&k, p, g, m, v, n);
#endif
    adam_scalar(&k, p, g, m, v, i, n);
}

void dtf_optim_apply(const dtf_optim *o, float *param, const float *grad,
                     float *slot0, float *slot1, size_t n, int64_t step)
{
    switch (o->kind) {
    case DTF_SGD:
        sgd(o, param, grad, slot0, n);
        break;
    case DTF_ADAM: /* grad is not written without zero */
        adam(o, param, (float *)grad, slot0, slot1, n, step, 0, 0);
        break;
    case DTF_ADAMW:
        adam(o, param, (float *)grad, slot0, slot1, n, step, 1, 0);
        break;
    }
}

void dtf_optim_apply_zero(const dtf_optim *o, float *param, float *grad, float *slot0,
                          float *slot1, size_t n, int64_t step)
{
    if (o->kind != DTF_SGD) { /* Adam stores the zeros in its own loop */
        adam(o, param, grad, slot0, slot1, n, step, o->kind == DTF_ADAMW, 1);
        return;
    }
    enum { BLOCK = 4096 }; /* 16 KB of each array: all four in L1 */
    for (size_t i = 0; i < n; i += BLOCK) {
        size_t k = n - i < BLOCK ? n - i : BLOCK;
        dtf_optim_apply(o, param + i, grad + i, slot0 ? slot0 + i : NULL, slot1 ? slot1 + i : NULL,
                        k, step);
        memset(grad + i, 0, k * sizeof(float));
    }
}
