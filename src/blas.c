/* blas: choosing the OpenBLAS core before the first BLAS call (see blas.h). */
#include "blas.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "tensor.h"
#include "util.h"

#define MARKER_ENV "DTF_BLAS_CORE"
#define CORE_ENV "OPENBLAS_CORETYPE"
#define WARNING_ENV "DTF_BLAS_WARNING"

/* ======================================================================
 * Core names and levels
 * ==================================================================== */

static const struct { const char *name; int rank; } cores[] = {
    {"Katmai", 1}, {"Coppermine", 1}, {"Northwood", 1}, {"Prescott", 1}, {"Banias", 1},
    {"Athlon", 1}, {"Opteron", 1}, {"Opteron_SSE3", 1},
    {"Atom", 2}, {"Core2", 2}, {"Penryn", 2}, {"Dunnington", 2}, {"Nehalem", 2},
    {"Barcelona", 2}, {"Nano", 2}, {"Bobcat", 2},
    {"Sandybridge", 3}, {"Bulldozer", 3}, {"Piledriver", 3}, {"Steamroller", 3},
    {"Excavator", 3},
    {"Haswell", 4}, {"Zen", 4},
    {"SkylakeX", 5}, {"Cooperlake", 5}, {"SapphireRapids", 5},
};

int dtf_blas_core_rank(const char *name)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < sizeof cores / sizeof cores[0]; i++)
        if (strcasecmp(name, cores[i].name) == 0)
            return cores[i].rank;
    return 0;
}

const char *dtf_blas_best_core(const dtf_cpu *c)
{
    if (c->avx512f && c->avx512bw && c->avx512dq && c->avx512vl)
        return "SkylakeX";
    if (c->avx2 && c->fma)
        return "Haswell";
    if (c->avx)
        return "Sandybridge";
    if (c->sse42)
        return "Nehalem";
    return NULL;
}

/* ======================================================================
 * The check against the naive kernels
 * ==================================================================== */

/* One product op(A) (M,K) @ op(B) (K,N), each operand stored transposed or
 * not, against dtf_matmul_naive. */
static int check_shape(int M, int K, int N, int ta, int tb, float alpha, float beta,
                       dtf_rng *r)
{
    dtf_tensor a0 = {0}, b0 = {0}, a, b, c = {0}, ref = {0};
    int64_t sa[2] = {ta ? K : M, ta ? M : K}, sb[2] = {tb ? N : K, tb ? K : N};
    int64_t sc[2] = {M, N};
    int rc = -1;
    if (dtf_tensor_init(&a0, 2, sa) < 0 || dtf_tensor_init(&b0, 2, sb) < 0
        || dtf_tensor_init(&c, 2, sc) < 0 || dtf_tensor_init(&ref, 2, sc) < 0)
        goto done;
    dtf_fill_uniform(&a0, r, -1, 1);
    dtf_fill_uniform(&b0, r, -1, 1);
    dtf_fill_uniform(&c, r, -1, 1);
    dtf_copy(&ref, &c);
    a = a0;
    b = b0;
    if (ta)
        dtf_transpose(&a, &a0, 0, 1);
    if (tb)
        dtf_transpose(&b, &b0, 0, 1);
    if (dtf_matmul(&c, &a, &b, alpha, beta) < 0 || dtf_matmul_naive(&ref, &a, &b, alpha, beta) < 0)
        goto done;
    /* Each element is a sum of K products of numbers in [-1, 1]: float
     * rounding stays far below 1e-5 * (K + 1); a wrong kernel is off by
     * whole products. */
    double tol = 1e-5 * (K + 1);
    const float *pc = dtf_data(&c), *pr = dtf_data(&ref);
    for (int i = 0; i < M * N; i++)
        if (!(fabs((double)pc[i] - pr[i]) <= tol)) {
            dtf_seterr("sgemm %dx%dx%d (%s%s, alpha %g, beta %g): element %d is %g, the naive "
                       "kernel gives %g", M, K, N, ta ? "A^T" : "A", tb ? " B^T" : " B",
                       (double)alpha, (double)beta, i, (double)pc[i], (double)pr[i]);
            goto done;
        }
    rc = 0;
done:
    dtf_tensor_release(&a0);
    dtf_tensor_release(&b0);
    dtf_tensor_release(&c);
    dtf_tensor_release(&ref);
    return rc;
}

int dtf_blas_selftest(void)
{
    /* Odd sizes reach the kernels' edge code, each transpose its own copy
     * routine, and 24x16x20 a few whole register blocks: 16k multiply-adds
     * in all, a fraction of a millisecond for the naive twin. */
    static const struct { int m, k, n, transposes; float alpha, beta; } shapes[] = {
        {1, 1, 1, 4, 1, 0}, {7, 13, 5, 4, 1, 0}, {17, 3, 33, 4, 0.5f, 1}, {24, 16, 20, 1, 1, 0.25f},
    };
    dtf_rng r;
    dtf_rng_seed(&r, 12345);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int t = 0; t < shapes[i].transposes; t++)
            if (check_shape(shapes[i].m, shapes[i].k, shapes[i].n, t & 1, t >> 1,
                            shapes[i].alpha, shapes[i].beta, &r) < 0)
                return -1;
    return 0;
}

/* ======================================================================
 * The decision
 * ==================================================================== */

/* Splits a marker "SET:PICK" (or "!SET:PICK") into its names; 0 when it
 * has that form. */
static int parse_marker(const char *m, int *failed, char *set, size_t nset, char *pick,
                        size_t npick)
{
    if (!m)
        return -1;
    *failed = m[0] == '!';
    if (*failed)
        m++;
    const char *colon = strchr(m, ':');
    if (!colon || colon == m || !colon[1] || (size_t)(colon - m) >= nset
        || strlen(colon + 1) >= npick)
        return -1;
    snprintf(set, nset, "%.*s", (int)(colon - m), m);
    snprintf(pick, npick, "%s", colon + 1);
    return 0;
}

void dtf_blas_decide(const dtf_blas_in *in, dtf_blas_plan *out)
{
    memset(out, 0, sizeof *out);
    char set[32], pick[32];
    int failed = 0;
    int marked = parse_marker(in->marker, &failed, set, sizeof set, pick, sizeof pick) == 0;
    const char *cur = in->current;
    if (in->env_core) {
        if (marked && !failed && strcmp(set, in->env_core) == 0) {
            /* dtf's choice, made by this process before a re-exec or
             * inherited from the dtf that started it */
            if (!in->selftest_ok) {
                out->reexec = 1;
                snprintf(out->marker, sizeof out->marker, "!%s:%s", set, pick);
                snprintf(out->warning, sizeof out->warning,
                         "BLAS core %s disagrees with the naive kernels; falling back to "
                         "OpenBLAS's own pick, %s", cur, pick);
            } else if (strcasecmp(cur, set) == 0) {
                snprintf(out->note, sizeof out->note, "OpenBLAS picked %s", pick);
            } else {
                snprintf(out->note, sizeof out->note,
                         "OpenBLAS picked %s; %s=%s gave %s", pick, CORE_ENV, set, cur);
            }
            return;
        }
        snprintf(out->note, sizeof out->note, "set by %s=%s", CORE_ENV, in->env_core);
        if (!in->selftest_ok)
            snprintf(out->warning, sizeof out->warning,
                     "BLAS core %s (%s=%s) disagrees with the naive kernels", cur, CORE_ENV,
                     in->env_core);
        return;
    }
    if (marked && failed) {
        snprintf(out->note, sizeof out->note,
                 "OpenBLAS's own pick; %s disagreed with the naive kernels", set);
        return;
    }
    if (in->best && dtf_blas_core_rank(cur) < dtf_blas_core_rank(in->best)) {
        out->reexec = 1;
        snprintf(out->set_core, sizeof out->set_core, "%s", in->best);
        snprintf(out->marker, sizeof out->marker, "%s:%s", in->best, cur);
        return;
    }
    snprintf(out->note, sizeof out->note, "OpenBLAS's own pick");
    if (!in->selftest_ok)
        snprintf(out->warning, sizeof out->warning,
                 "BLAS core %s disagrees with the naive kernels", cur);
}

/* ======================================================================
 * Setup
 * ==================================================================== */

static char info[320];
static char warning[640];

static void describe(const char *note)
{
    /* openblas_get_config(): "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." */
    char lib[64] = "OpenBLAS";
    const char *cfg = openblas_get_config();
    if (cfg) {
        char w1[32], w2[32];
        if (sscanf(cfg, "%31s %31s", w1, w2) == 2)
            snprintf(lib, sizeof lib, "%s %s", w1, w2);
    }
    snprintf(info, sizeof info, "%s, core %s (%s)", lib, openblas_get_corename(), note);
}

const char *dtf_blas_info(void)
{
    if (!info[0])
        describe("OpenBLAS's own pick");
    return info;
}

const char *dtf_blas_core(void)
{
    return openblas_get_corename();
}

/* A process exec'd as /proc/self/exe is named "exe" (comm): give it the
 * name its own exec gave it, the last part of argv[0], so that ps, pgrep,
 * top and the chart's liveness probe (which looks for comm "dtf") still
 * find it. Harmless when this process was not re-executed. */
static void restore_name(char **argv)
{
    if (!argv || !argv[0] || !argv[0][0])
        return;
    const char *base = strrchr(argv[0], '/');
    prctl(PR_SET_NAME, base ? base + 1 : argv[0], 0, 0, 0);
}

const char *dtf_blas_setup(char **argv)
{
    if (getenv(MARKER_ENV))
        restore_name(argv);
    /* A warning the process before the re-exec had for us (one shot). */
    const char *handed = getenv(WARNING_ENV);
    if (handed) {
        snprintf(warning, sizeof warning, "%s", handed);
        unsetenv(WARNING_ENV);
    }
    dtf_cpu cpu;
    dtf_cpu_detect(&cpu);
    dtf_blas_in in = {
        .env_core = getenv(CORE_ENV),
        .marker = getenv(MARKER_ENV),
        .current = openblas_get_corename(),
        .best = dtf_blas_best_core(&cpu),
        .selftest_ok = dtf_blas_selftest() == 0,
    };
    char why[200];
    snprintf(why, sizeof why, "%s", in.selftest_ok ? "" : dtf_error());
    dtf_blas_plan plan;
    dtf_blas_decide(&in, &plan);
    if (plan.reexec) {
        if (plan.set_core[0])
            setenv(CORE_ENV, plan.set_core, 1);
        else
            unsetenv(CORE_ENV);
        setenv(MARKER_ENV, plan.marker, 1);
        if (plan.warning[0]) {
            snprintf(warning, sizeof warning, "%s (%s)", plan.warning, why);
            setenv(WARNING_ENV, warning, 1);
        }
        execv("/proc/self/exe", argv);
        /* still here: run on the core loaded now, the library's own pick
         * (or, when the fallback failed, the bad one: say so) */
        int err = errno;
        unsetenv(WARNING_ENV);
        if (plan.set_core[0]) {
            unsetenv(CORE_ENV);
            unsetenv(MARKER_ENV);
        }
        snprintf(plan.note, sizeof plan.note, "re-exec for %s failed: %s",
                 plan.set_core[0] ? plan.set_core : "the fallback", strerror(err));
        size_t k = strlen(warning);
        snprintf(warning + k, sizeof warning - k, "%scannot re-execute /proc/self/exe: %s",
                 k ? "; " : "", strerror(err));
        describe(plan.note);
        return warning;
    }
    describe(plan.note);
    if (plan.warning[0]) {
        snprintf(warning, sizeof warning, "%s (%s)", plan.warning, why);
        return warning;
    }
    return warning[0] ? warning : NULL;
}
