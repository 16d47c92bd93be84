/* bench/matmul: GFLOP/s of dtf_matmul against a plain cblas_sgemm call on
 * the same shapes and layouts (the products of the MLP and CNN steps, and a
 * large square), one BLAS thread, on the core dtf chooses (dtf_blas_setup,
 * as dtf's main does). Prints one line per shape:
 *   NAME M K N  dtf_gflops sgemm_gflops ratio core
 * (the ratio is the median over adjacent pairs of blocks, dtf over sgemm). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "blas.h"
#include "tensor.h"

typedef struct shape {
    const char *name;
    int m, k, n;
    int ta, tb; /* operand stored transposed (as a (K,M) or (N,K) matrix) */
} shape;

/* Thread CPU seconds: time the process is descheduled does not count. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define MAX_BLOCKS 20000

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* CPU seconds of one block of `reps` calls. */
static double block(void (*fn)(void *), void *arg, long reps)
{
    double t0 = cpu_now();
    for (long i = 0; i < reps; i++)
        fn(arg);
    return cpu_now() - t0;
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
        /* Many short blocks of CPU time, alternating: each side's rate is
         * its fastest block (noise only ever slows one down), and the ratio
         * the median over adjacent pairs, which see the same machine (the
         * load of a shared one drifts). */
        for (int i = 0; i < 3; i++) {
            run_dtf(&j);
            run_sgemm(&j);
        }
        double one = block(run_sgemm, &j, 3) / 3;
        long reps = one > 0 ? (long)(5e-4 / one) : 1;
        if (reps < 1)
            reps = 1;
        int blocks = (int)(seconds / 1e-3);
        if (blocks < 21)
            blocks = 21;
        if (blocks > MAX_BLOCKS)
            blocks = MAX_BLOCKS;
        static double pair[MAX_BLOCKS];
        double bd = 1e9, bs = 1e9;
        for (int k = 0; k < blocks; k++) {
            double td = block(run_dtf, &j, reps), ts = block(run_sgemm, &j, reps);
            if (td <= 0 || ts <= 0) { /* below the clock's resolution: again */
                k--;
                continue;
            }
            bd = td < bd ? td : bd;
            bs = ts < bs ? ts : bs;
            pair[k] = ts / td;
        }
        qsort(pair, (size_t)blocks, sizeof pair[0], cmp_double);
        double gd = flops * (double)reps / bd * 1e-9, gs = flops * (double)reps / bs * 1e-9;
        double ratio = pair[blocks / 2];
        printf("%-26s %5d %5d %5d %10.1f %10.1f %7.3f  %s\n", s->name, s->m, s->k, s->n, gd, gs,
               ratio, dtf_blas_core());
        dtf_tensor_release(&j.a);
        dtf_tensor_release(&j.b);
        dtf_tensor_release(&j.c);
    }
    return 0;
}
