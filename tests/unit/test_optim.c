/* test_optim: each optimizer over several steps against a plain scalar
 * reference in double precision that transcribes torch.optim's docs. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "harness.h"
#include "optim.h"
#include "util.h"

#define N 37
#define STEPS 6

/* Reference: one parameter, one step, PyTorch's algorithm boxes. */
static void ref_step(const dtf_optim *o, double *p, double g, double *s0, double *s1, int t)
{
    if (o->kind == DTF_SGD) {
        double d = g + o->weight_decay * *p;
        if (o->momentum != 0) {
            *s0 = t == 1 ? d : o->momentum * *s0 + d;
            d = o->nesterov ? d + o->momentum * *s0 : *s0;
        }
        *p -= o->lr * d;
        return;
    }
    if (o->kind == DTF_ADAMW)
        *p *= 1 - o->lr * o->weight_decay;
    else
        g += o->weight_decay * *p;
    *s0 = o->beta1 * *s0 + (1 - o->beta1) * g;
    *s1 = o->beta2 * *s1 + (1 - o->beta2) * g * g;
    double mhat = *s0 / (1 - pow(o->beta1, t));
    double vhat = *s1 / (1 - pow(o->beta2, t));
    *p -= o->lr * mhat / (sqrt(vhat) + o->eps);
}

/* Runs STEPS updates with fresh gradients each step; returns the largest
 * difference between dtf_optim_apply and the reference. */
static double run(const dtf_optim *o)
{
    float p[N], g[N], s0[N], s1[N];
    double rp[N], rs0[N], rs1[N];
    dtf_rng r;
    dtf_rng_seed(&r, 99);
    for (int i = 0; i < N; i++) {
        p[i] = (float)dtf_rng_normal(&r);
        rp[i] = p[i];
        s0[i] = s1[i] = 0;
        rs0[i] = rs1[i] = 0;
    }
    double worst = 0;
    for (int t = 1; t <= STEPS; t++) {
        for (int i = 0; i < N; i++)
            g[i] = (float)dtf_rng_normal(&r);
        int ns = dtf_optim_nslots(o);
        dtf_optim_apply(o, p, g, ns > 0 ? s0 : NULL, ns > 1 ? s1 : NULL, N, t);
        for (int i = 0; i < N; i++) {
            ref_step(o, &rp[i], g[i], &rs0[i], &rs1[i], t);
            worst = fmax(worst, fabs(p[i] - rp[i]) / (1 + fabs(rp[i])));
        }
    }
    return worst;
}

TEST(names_defaults_slots)
{
    dtf_optim o;
    CHECK_EQ_INT(dtf_optim_kind_from_name("sgd"), DTF_SGD);
    CHECK_EQ_INT(dtf_optim_kind_from_name("adam"), DTF_ADAM);
    CHECK_EQ_INT(dtf_optim_kind_from_name("adamw"), DTF_ADAMW);
    CHECK_EQ_INT(dtf_optim_kind_from_name("rmsprop"), -1);
    CHECK_STR_CONTAINS(dtf_error(), "rmsprop");
    CHECK(!strcmp(dtf_optim_kind_name(DTF_ADAMW), "adamw"));
    dtf_optim_defaults(&o, DTF_ADAM);
    CHECK_NEAR(o.lr, 0.001, 1e-9);
    CHECK_NEAR(o.beta1, 0.9, 1e-7);
    CHECK_NEAR(o.beta2, 0.999, 1e-7);
    CHECK_NEAR(o.eps, 1e-8, 1e-12);
    CHECK(o.weight_decay == 0);
    CHECK_EQ_INT(dtf_optim_nslots(&o), 2);
    dtf_optim_defaults(&o, DTF_ADAMW);
    CHECK_NEAR(o.weight_decay, 0.01, 1e-9);
    dtf_optim_defaults(&o, DTF_SGD);
    CHECK_EQ_INT(dtf_optim_nslots(&o), 0);
    o.momentum = 0.9f;
    CHECK_EQ_INT(dtf_optim_nslots(&o), 1);
}

TEST(sgd_variants_match_reference)
{
    dtf_optim o;
    dtf_optim_defaults(&o, DTF_SGD);
    o.lr = 0.1f;
    CHECK(run(&o) < 1e-6);
    o.weight_decay = 0.01f;
    CHECK(run(&o) < 1e-6);
    o.momentum = 0.9f;
    CHECK(run(&o) < 1e-6);
    o.nesterov = 1;
    CHECK(run(&o) < 1e-6);
    o.weight_decay = 0;
    CHECK(run(&o) < 1e-6);
}

TEST(adam_matches_reference)
{
    dtf_optim o;
    dtf_optim_defaults(&o, DTF_ADAM);
    o.lr = 0.01f;
    CHECK(run(&o) < 1e-5);
    o.weight_decay = 0.1f;
    CHECK(run(&o) < 1e-5);
    o.beta1 = 0.5f;
    o.beta2 = 0.9f;
    o.eps = 1e-3f;
    CHECK(run(&o) < 1e-5);
}

TEST(adamw_matches_reference)
{
    dtf_optim o;
    dtf_optim_defaults(&o, DTF_ADAMW);
    o.lr = 0.01f;
    CHECK(run(&o) < 1e-5);
    o.weight_decay = 0.5f;
    CHECK(run(&o) < 1e-5);
    /* decoupled: differs from Adam's L2 with the same decay */
    dtf_optim a = o;
    a.kind = DTF_ADAM;
    float p1 = 1, p2 = 1, g = 0.5f, m1 = 0, v1 = 0, m2 = 0, v2 = 0;
    dtf_optim_apply(&o, &p1, &g, &m1, &v1, 1, 1);
    dtf_optim_apply(&a, &p2, &g, &m2, &v2, 1, 1);
    CHECK(fabsf(p1 - p2) > 1e-4f);
}

TEST(first_adam_step_moves_by_lr)
{
    /* bias correction: the first step is lr * sign(g) up to eps */
    dtf_optim o;
    dtf_optim_defaults(&o, DTF_ADAM);
    float p[2] = {0, 0}, g[2] = {3, -0.001f}, m[2] = {0, 0}, v[2] = {0, 0};
    dtf_optim_apply(&o, p, g, m, v, 2, 1);
    CHECK_NEAR(p[0], -0.001, 1e-7);
    CHECK_NEAR(p[1], 0.001, 1e-6);
}

/* A ps shard applies the update to its own range: the bits must not depend
 * on where a range starts or ends (vector lanes vs scalar tail). */
TEST(ranges_give_identical_bits)
{
    dtf_optim_kind kinds[3] = {DTF_SGD, DTF_ADAM, DTF_ADAMW};
    for (int k = 0; k < 3; k++) {
        dtf_optim o;
        dtf_optim_defaults(&o, kinds[k]);
        o.lr = 0.01f;
        o.momentum = 0.9f;
        o.weight_decay = 0.05f;
        enum { M = 101 };
        float p1[M], p2[M], g[M], a1[M] = {0}, b1[M] = {0}, a2[M] = {0}, b2[M] = {0};
        dtf_rng r;
        dtf_rng_seed(&r, 5);
        for (int i = 0; i < M; i++)
            p1[i] = p2[i] = (float)dtf_rng_normal(&r);
        for (int t = 1; t <= 3; t++) {
            for (int i = 0; i < M; i++)
                g[i] = (float)dtf_rng_normal(&r);
            dtf_optim_apply(&o, p1, g, a1, b1, M, t);
            size_t cuts[] = {0, 3, 13, 14, 50, 77, M};
            for (int c = 0; c + 1 < 7; c++) {
                size_t at = cuts[c], n = cuts[c + 1] - at;
                dtf_optim_apply(&o, p2 + at, g + at, a2 + at, b2 + at, n, t);
            }
        }
        CHECK(memcmp(p1, p2, sizeof p1) == 0);
        CHECK(memcmp(a1, a2, sizeof a1) == 0);
        CHECK(memcmp(b1, b2, sizeof b1) == 0);
    }
}

/* Whatever path the CPU takes (AVX or scalar), one Adam step stays within a
 * few ulp of the update computed in double: over 10^5 elements of every
 * magnitude, zero moments and zero gradients (the border pixels' weights)
 * included. */
TEST(adam_step_is_near_exact)
{
    enum { M = 100003 };
    static float p[M], g[M], m[M], v[M], p0[M], m0[M], v0[M];
    dtf_rng r;
    dtf_rng_seed(&r, 77);
    for (int i = 0; i < M; i++) {
        double mag = pow(10.0, -8 + 8 * dtf_rng_uniform(&r));
        p[i] = p0[i] = (float)dtf_rng_normal(&r);
        g[i] = i % 5 == 0 ? 0.0f : (float)(dtf_rng_normal(&r) * mag);
        m[i] = m0[i] = i % 7 == 0 ? 0.0f : (float)(dtf_rng_normal(&r) * mag);
        v[i] = v0[i] = i % 7 == 0 ? 0.0f : (float)(mag * mag * dtf_rng_uniform(&r));
    }
    dtf_optim o;
    dtf_optim_defaults(&o, DTF_ADAM);
    o.lr = 0.01f;
    int t = 10;
    dtf_optim_apply(&o, p, g, m, v, M, t);
    /* the float constants the kernels use, the arithmetic in double */
    double b1 = o.beta1, b2 = o.beta2, c1 = (float)(1 - o.beta1), c2 = (float)(1 - o.beta2);
    double ss = (float)(o.lr / (1 - pow(b1, t))), rbc2 = (float)(1 / sqrt(1 - pow(b2, t)));
    double worst = 0;
    int at = -1;
    for (int i = 0; i < M; i++) {
        double mi = b1 * m0[i] + c1 * g[i], vi = b2 * v0[i] + c2 * (double)g[i] * g[i];
        double step = ss * mi / (sqrt(vi) * rbc2 + (double)o.eps);
        double want = p0[i] - step;
        /* float rounding of p itself, plus a few ulp of the step */
        double tol = 2 * fabs(want) * FLT_EPSILON + 8 * fabs(step) * FLT_EPSILON + 1e-30;
        double e = fabs(p[i] - want) / tol;
        /* the moments: a few ulp of their terms (which may cancel) */
        double tm = 2 * (fabs(b1 * m0[i]) + fabs(c1 * g[i])) * FLT_EPSILON + 1e-38;
        double tv = 2 * (b2 * v0[i] + c2 * (double)g[i] * g[i]) * FLT_EPSILON + 1e-38;
        if (fabs(m[i] - mi) > tm || fabs(v[i] - vi) > tv)
            e = fmax(e, 2);
        if (e > worst) {
            worst = e;
            at = i;
        }
    }
    if (!(worst <= 1))
        FAIL("adam step off by %.3g of its tolerance at element %d (p %g -> %.9g)", worst, at,
             (double)p0[at], (double)p[at]);
}

/* The fused zeroing: the same parameters and slots, and zero gradients. */
TEST(apply_zero_matches_and_clears)
{
    enum { M = 10007 };
    static float p1[M], p2[M], g1[M], g2[M], a1[M], a2[M], b1[M], b2[M];
    dtf_rng r;
    dtf_rng_seed(&r, 3);
    for (int i = 0; i < M; i++) {
        p1[i] = p2[i] = (float)dtf_rng_normal(&r);
        g1[i] = g2[i] = (float)dtf_rng_normal(&r);
        a1[i] = a2[i] = b1[i] = b2[i] = 0;
    }
    dtf_optim_kind kinds[2] = {DTF_ADAM, DTF_SGD};
    for (int k = 0; k < 2; k++) {
        dtf_optim o;
        dtf_optim_defaults(&o, kinds[k]);
        o.momentum = 0.9f;
        dtf_optim_apply(&o, p1, g1, a1, b1, M, 1);
        dtf_optim_apply_zero(&o, p2, g2, a2, b2, M, 1);
        CHECK(memcmp(p1, p2, sizeof p1) == 0);
        CHECK(memcmp(a1, a2, sizeof a1) == 0);
        CHECK(memcmp(b1, b2, sizeof b1) == 0);
        int zero = 1;
        for (int i = 0; i < M; i++)
            zero &= g2[i] == 0;
        CHECK(zero);
        memcpy(g2, g1, sizeof g1);
    }
}

RUN_TESTS("optim")
