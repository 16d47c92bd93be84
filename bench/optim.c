/* bench/optim: one Adam update over normal optimizer slots against one over
 * subnormal-heavy slots (the moments of weights whose gradients are 0, as
 * the border pixels' of MNIST-style images, decay into the subnormal range
 * within a few hundred steps), with denormals flushed as dtf trains and
 * kept (denormals=keep). One line per model size:
 *   NAME params  normal_us subnormal_us ratio  kept_us ratio */
#include <stdio.h>
#include <stdlib.h>

#include "blas.h"
#include "cpu.h"
#include "optim.h"
#include "util.h"

typedef struct slots {
    float *p, *g, *m, *v;
    size_t n;
} slots;

/* subnormal: m and v hold subnormal floats and g is 0 (what decay leaves);
 * else ordinary moments and gradients. */
static void fill(slots *s, int subnormal)
{
    for (size_t i = 0; i < s->n; i++) {
        s->p[i] = 0.01f * (float)(i % 100);
        s->g[i] = subnormal ? 0.0f : 0.001f * (float)((int)(i % 7) - 3);
        s->m[i] = subnormal ? 1e-39f : 1e-3f;
        s->v[i] = subnormal ? 1e-41f : 1e-6f;
    }
}

/* Seconds of one update, the slots refilled before it (a flushed update
 * leaves zeros behind, not subnormals). */
static double one_update(slots *s, int subnormal, int step)
{
    dtf_optim o;
    dtf_optim_defaults(&o, DTF_ADAM);
    fill(s, subnormal);
    double t = dtf_now();
    dtf_optim_apply(&o, s->p, s->g, s->m, s->v, s->n, step);
    return dtf_now() - t;
}

static double min2(double a, double b)
{
    return a < b ? a : b;
}

int main(int argc, char **argv)
{
    (void)argc;
    dtf_blas_setup(argv); /* the process as dtf runs (nothing here uses BLAS) */
    static const struct { const char *name; size_t n; int rounds; } sizes[] = {
        {"mlp 784-100-10", 79510, 200},
        {"cnn", 3274634, 30},
    };
    printf("%-16s %9s %11s %14s %7s %11s %7s\n", "adam update", "params", "normal us",
           "subnormal us", "ratio", "kept us", "ratio");
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        slots s = {malloc(sizes[k].n * 4), malloc(sizes[k].n * 4), malloc(sizes[k].n * 4),
                   malloc(sizes[k].n * 4), sizes[k].n};
        if (!s.p || !s.g || !s.m || !s.v)
            return 1;
        /* normal and subnormal alternate (best of each); kept is slow enough
         * for three */
        double normal = 1e9, sub = 1e9, kept = 1e9;
        dtf_fp_flush_denormals(1);
        for (int r = 0; r < sizes[k].rounds; r++) {
            normal = min2(normal, one_update(&s, 0, 800 + r));
            sub = min2(sub, one_update(&s, 1, 800 + r));
        }
        dtf_fp_flush_denormals(0);
        for (int r = 0; r < 3; r++)
            kept = min2(kept, one_update(&s, 1, 800 + r));
        dtf_fp_flush_denormals(1);
        printf("%-16s %9zu %11.1f %14.1f %7.2f %11.1f %7.2f\n", sizes[k].name, sizes[k].n,
               normal * 1e6, sub * 1e6, sub / normal, kept * 1e6, kept / normal);
        free(s.p);
        free(s.g);
        free(s.m);
        free(s.v);
    }
    return 0;
}
