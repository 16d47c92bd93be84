/* bench/matmul: GFLOP/s of dtf_matmul against a plain cblas_sgemm call on
 * the same shapes and layouts (the products of the MLP and CNN steps, and a
 * large square), one BLAS thread, on the core dtf chooses (dtf_blas_setup,
 * as dtf's main does). Prints one line per shape:
 *   NAME M K N  dtf_gflops sgemm_gflops ratio core */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "blas.h"
#include "tensor.h"
#include "util.h"

typedef struct shape {
    const char *name;
    int m, k, n;
    int ta, tb; /* operand stored transposed (as a (K,M) or (N,K) matrix) */
} shape;

static double time_loop(void (*fn)(void *), void *arg, double seconds, long *iters)
{
    for (int i = 0; i < 2; i++)
        fn(arg);
    long n = 0;
    double t0 = dtf_now(), el;
    do {
        fn(arg);
        n++;
        el = dtf_now() - t0;
    } while (el < seconds);
    *iters = n;
    return el;
}

typedef struct job {
    const shape *s;
    dtf_tensor a, b, c;      /* a, b possibly transposed views */
    float *pa, *pb, *pc;
} job;

static void run_dtf(void *p)
{
    job *j = p;
    if (dtf_matmul(&j->c, &j->a, &j->b, 1.0f, 0.0f) != 0) {
        fprintf(stderr, "matmul: %s\n", dtf_error());
        exit(1);
    }
}

static void run_sgemm(void *p)
{
    job *j = p;
    const shape *s = j->s;
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                s->m, s->n, s->k, 1.0f, j->pa, s->ta ? s->m : s->k, j->pb, s->tb ? s->k : s->n,
                0.0f, j->pc, s->n);
}

static void make_operand(dtf_tensor *t, float **p, int rows, int cols, int transposed, dtf_rng *r)
{
    /* stored as (cols, rows) when transposed, then viewed as (rows, cols) */
    int64_t shp[2] = {transposed ? cols : rows, transposed ? rows : cols};
    dtf_tensor base;
    dtf_tensor_init(&base, 2, shp);
    dtf_fill_uniform(&base, r, -1, 1);
    /* the view takes over base's reference to the storage */
    if (transposed)
        dtf_transpose(t, &base, 0, 1);
    else
        *t = base;
    *p = t->st->data;
}

int main(int argc, char **argv)
{
    const char *warning = dtf_blas_setup(argv);
    if (warning)
        fprintf(stderr, "matmul: warning: %s\n", warning);
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    openblas_set_num_threads(1);
    static const shape shapes[] = {
        {"mlp fc1 forward   x.W^T", 64, 784, 100, 0, 1},
        {"mlp fc1 grad W   dy^T.x", 100, 64, 784, 1, 0},
        {"mlp fc2 forward   h.W^T", 64, 100, 10, 0, 1},
        {"mlp fc2 grad input dy.W", 64, 10, 100, 0, 0},
        {"cnn conv2 (im2col)     ", 64, 800, 196, 0, 0},
        {"cnn conv2 grad W       ", 64, 196, 800, 0, 1},
        {"cnn conv2 grad col     ", 800, 64, 196, 1, 0},
        {"cnn fc1 forward   x.W^T", 64, 3136, 1024, 0, 1},
        {"square 1024            ", 1024, 1024, 1024, 0, 0},
    };
    dtf_rng r;
    dtf_rng_seed(&r, 1);
    printf("%-26s %5s %5s %5s %10s %10s %7s  %s\n", "shape", "M", "K", "N", "dtf", "sgemm", "ratio",
           "core");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        job j = {.s = s};
        make_operand(&j.a, &j.pa, s->m, s->k, s->ta, &r);
        make_operand(&j.b, &j.pb, s->k, s->n, s->tb, &r);
        int64_t cs[2] = {s->m, s->n};
        dtf_tensor_init(&j.c, 2, cs);
        j.pc = j.c.st->data;
        double flops = 2.0 * s->m * s->k * s->n;
        /* Alternate the two in short slices and keep each one's best rate,
         * so frequency drift or noise from other processes hits both alike. */
        double gd = 0, gs = 0;
        for (int round = 0; round < 8; round++) {
            long n1, n2;
            double t1 = time_loop(run_dtf, &j, seconds / 16, &n1);
            double t2 = time_loop(run_sgemm, &j, seconds / 16, &n2);
            double r1 = flops * (double)n1 / t1 * 1e-9, r2 = flops * (double)n2 / t2 * 1e-9;
            gd = r1 > gd ? r1 : gd;
            gs = r2 > gs ? r2 : gs;
        }
        printf("%-26s %5d %5d %5d %10.1f %10.1f %7.3f  %s\n", s->name, s->m, s->k, s->n, gd, gs,
               gd / gs, dtf_blas_core());
        dtf_tensor_release(&j.a);
        dtf_tensor_release(&j.b);
        dtf_tensor_release(&j.c);
    }
    return 0;
}
