/* test_tensor: every fast kernel against its naive twin on random inputs
 * (strided views included), finite-difference checks of the backward
 * kernels, and the header operations. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

#include "harness.h"
#include "tensor.h"
#include "tensor_impl.h"

/* ---- helpers ------------------------------------------------------------- */

static dtf_rng R;

/* A zeroed tensor of nd int sizes taken from ap. */
static dtf_tensor mkv(int nd, va_list ap)
{
    int64_t s[DTF_MAXDIM];
    for (int i = 0; i < nd; i++)
        s[i] = va_arg(ap, int);
    dtf_tensor t;
    if (dtf_tensor_init(&t, nd, s) < 0)
        abort();
    return t;
}

static dtf_tensor mk(int nd, ...)
{
    va_list ap;
    va_start(ap, nd);
    dtf_tensor t = mkv(nd, ap);
    va_end(ap);
    return t;
}

static dtf_tensor rnd(int nd, ...)
{
    va_list ap;
    va_start(ap, nd);
    dtf_tensor t = mkv(nd, ap);
    va_end(ap);
    dtf_fill_normal(&t, &R, 0, 1);
    return t;
}

static dtf_tensor like(const dtf_tensor *t)
{
    dtf_tensor o;
    if (dtf_tensor_init(&o, t->ndim, t->shape) < 0)
        abort();
    return o;
}

static dtf_tensor tr(const dtf_tensor *t)
{
    dtf_tensor o;
    dtf_transpose(&o, t, 0, 1);
    return o;
}

/* Largest |a - b| / (1 + |b|) over the elements, in logical order. */
static double maxdiff(const dtf_tensor *a, const dtf_tensor *b)
{
    if (!dtf_same_shape(a, b))
        return INFINITY;
    dtf_tensor ca = like(a), cb = like(b);
    dtf_copy(&ca, a);
    dtf_copy(&cb, b);
    double m = 0;
    for (int64_t i = 0; i < dtf_numel(a); i++) {
        double x = dtf_data(&ca)[i], y = dtf_data(&cb)[i];
        double d = fabs(x - y) / (1 + fabs(y));
        if (!(d <= m))
            m = isnan(d) ? INFINITY : d;
    }
    dtf_tensor_release(&ca);
    dtf_tensor_release(&cb);
    return m;
}

static void rel(int n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        dtf_tensor_release(va_arg(ap, dtf_tensor *));
    va_end(ap);
}

__attribute__((constructor(101))) static void seed_rng(void)
{
    dtf_rng_seed(&R, 12345);
}

/* ---- storage and headers --------------------------------------------------- */

TEST(storage_refcount_and_wrap)
{
    dtf_storage *s = dtf_storage_new(10);
    CHECK(s && s->refs == 1 && s->owns == 1 && s->size == 10);
    for (int i = 0; i < 10; i++)
        CHECK(s->data[i] == 0);
    dtf_storage_retain(s);
    CHECK_EQ_INT(s->refs, 2);
    dtf_storage_release(s);
    CHECK_EQ_INT(s->refs, 1);
    dtf_storage_release(s);

    float buf[6] = {1, 2, 3, 4, 5, 6};
    dtf_storage *w = dtf_storage_wrap(buf, 6, 0);
    dtf_tensor t;
    int64_t shape[2] = {2, 3};
    CHECK(dtf_tensor_set(&t, w, 0, 2, shape) == 0);
    int64_t idx[2] = {1, 2};
    CHECK(*dtf_at(&t, idx) == 6);
    dtf_tensor_release(&t);
    dtf_tensor_release(&t); /* twice is fine */
    CHECK(buf[5] == 6);     /* borrowed memory left alone */

    float *heap = malloc(4 * sizeof(float));
    dtf_storage *o = dtf_storage_wrap(heap, 4, 1);
    dtf_storage_release(o); /* frees heap (valgrind checks) */
}

TEST(views_share_storage)
{
    dtf_tensor t = mk(2, 3, 4);
    for (int i = 0; i < 12; i++)
        dtf_data(&t)[i] = (float)i;
    CHECK(dtf_is_contiguous(&t));

    dtf_tensor v;
    int64_t s[2] = {4, -1};
    CHECK(dtf_view(&v, &t, 2, s) == 0);
    CHECK_EQ_INT(v.shape[1], 3);
    int64_t bad[1] = {5};
    CHECK(dtf_view(&v, &t, 1, bad) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "(3x4) and (5)");

    dtf_tensor n;
    CHECK(dtf_narrow(&n, &t, 1, 1, 2) == 0);
    CHECK(!dtf_is_contiguous(&n));
    int64_t i0[2] = {2, 1};
    CHECK(*dtf_at(&n, i0) == 10);
    CHECK(dtf_view(&v, &n, 1, bad) < 0);
    CHECK(dtf_narrow(&n, &t, 1, 3, 2) < 0);

    dtf_tensor r;
    CHECK(dtf_select(&r, &t, 0, 2) == 0);
    CHECK_EQ_INT(r.ndim, 1);
    CHECK(dtf_data(&r)[0] == 8);
    dtf_data(&r)[0] = 100;
    CHECK(dtf_data(&t)[8] == 100);

    dtf_tensor tt = tr(&t);
    CHECK(!dtf_is_contiguous(&tt));
    int64_t i1[2] = {3, 1};
    CHECK(*dtf_at(&tt, i1) == 7);

    /* copy across shapes and strides */
    dtf_tensor c = mk(1, 12);
    CHECK(dtf_copy(&c, &tt) == 0);
    CHECK(dtf_data(&c)[1] == 4 && dtf_data(&c)[2] == 100);
    dtf_tensor c2 = mk(2, 4, 3);
    CHECK(dtf_copy(&c2, &tt) == 0);
    CHECK(maxdiff(&c2, &tt) == 0);
    dtf_tensor small = mk(1, 5);
    CHECK(dtf_copy(&small, &t) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "(5) and (3x4)");
    char buf[32];
    CHECK_STR_CONTAINS(dtf_shape_str(&t, buf, sizeof buf), "3x4");
    CHECK(dtf_check_bounds(&n) == 0);
    rel(4, &t, &c, &c2, &small);
}

TEST(fill_and_random_are_seeded)
{
    dtf_tensor a = mk(1, 1000), b = mk(1, 1000);
    dtf_rng r1, r2;
    dtf_rng_seed(&r1, 7);
    dtf_rng_seed(&r2, 7);
    dtf_fill_normal(&a, &r1, 1, 2);
    dtf_fill_normal(&b, &r2, 1, 2);
    CHECK(dtf_tensor_hash(&a, DTF_FNV_SEED) == dtf_tensor_hash(&b, DTF_FNV_SEED));
    double mean = dtf_sum_all(&a) / 1000;
    CHECK_NEAR(mean, 1, 0.25);
    dtf_fill_uniform(&a, &r1, -3, -1);
    CHECK(dtf_max_all(&a) < -1);
    CHECK_NEAR(dtf_sum_all(&a) / 1000, -2, 0.1);
    dtf_fill(&a, 2.5f);
    CHECK_NEAR(dtf_sum_all(&a), 2500, 1e-3);
    rel(2, &a, &b);
}

/* ---- matmul --------------------------------------------------------------- */

/* c = a @ b with a and b given in the layouts named by ta/tb (transposed
 * views when set), against the naive twin. */
static void matmul_case(int M, int K, int N, int ta, int tb, int tc, float alpha, float beta)
{
    dtf_tensor as = ta ? rnd(2, K, M) : rnd(2, M, K);
    dtf_tensor bs = tb ? rnd(2, N, K) : rnd(2, K, N);
    dtf_tensor a = ta ? tr(&as) : as, b = tb ? tr(&bs) : bs;
    dtf_tensor cs = tc ? rnd(2, N, M) : rnd(2, M, N);
    dtf_tensor c = tc ? tr(&cs) : cs;
    dtf_tensor ref = rnd(2, M, N);
    dtf_copy(&ref, &c);
    CHECK(dtf_matmul(&c, &a, &b, alpha, beta) == 0);
    CHECK(dtf_matmul_naive(&ref, &a, &b, alpha, beta) == 0);
    double d = maxdiff(&c, &ref);
    if (!(d < 1e-4))
        FAIL("matmul M%d K%d N%d ta%d tb%d tc%d: diff %g", M, K, N, ta, tb, tc, d);
    rel(4, &as, &bs, &cs, &ref);
}

TEST(matmul_transposed_views)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int tc = 0; tc < 2; tc++) {
                matmul_case(7, 5, 3, ta, tb, tc, 1, 0);
                matmul_case(64, 78, 10, ta, tb, tc, 0.5f, 1);
                matmul_case(1, 9, 1, ta, tb, tc, 1, 0.25f);
                matmul_case(4, 1, 6, ta, tb, tc, 2, 0);
            }
}

TEST(matmul_strided_and_copied_operands)
{
    /* a narrowed (ld > K) and an operand with no unit stride (copied) */
    dtf_tensor big = rnd(2, 6, 10);
    dtf_tensor a;
    dtf_narrow(&a, &big, 1, 2, 5); /* (6,5) with ld 10 */
    dtf_tensor b3 = rnd(3, 5, 4, 2);
    dtf_tensor b;
    dtf_select(&b, &b3, 2, 1); /* (5,4) strides (8,2): fits no layout */
    dtf_tensor cbig = rnd(2, 6, 9), c;
    dtf_narrow(&c, &cbig, 1, 3, 4);
    dtf_tensor ref = mk(2, 6, 4);
    dtf_copy(&ref, &c);
    CHECK(dtf_matmul(&c, &a, &b, 1, 1) == 0);
    dtf_matmul_naive(&ref, &a, &b, 1, 1);
    CHECK(maxdiff(&c, &ref) < 1e-5);
    /* an output that fits no layout either */
    dtf_tensor c3 = rnd(3, 6, 4, 2), c2;
    dtf_select(&c2, &c3, 2, 0);
    dtf_copy(&ref, &c2);
    CHECK(dtf_matmul(&c2, &a, &b, 1, 0.5f) == 0);
    dtf_matmul_naive(&ref, &a, &b, 1, 0.5f);
    CHECK(maxdiff(&c2, &ref) < 1e-5);
    rel(5, &big, &b3, &cbig, &ref, &c3);
}

TEST(matmul_errors_name_both_shapes)
{
    dtf_tensor x = mk(2, 64, 784), w = mk(2, 100, 784), y = mk(2, 64, 100);
    CHECK(dtf_matmul(&y, &x, &w, 1, 0) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "matmul: (64x784) and (100x784) do not match");
    dtf_tensor wt = tr(&w);
    CHECK(dtf_matmul(&y, &x, &wt, 1, 0) == 0);
    dtf_tensor bad = mk(2, 64, 99);
    CHECK(dtf_matmul(&bad, &x, &wt, 1, 0) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "64x99");
    rel(4, &x, &w, &y, &bad);
}

/* ---- elementwise ---------------------------------------------------------- */

TEST(binary_ops_against_naive)
{
    for (int op = DTF_ADD; op <= DTF_DIV; op++) {
        /* same shape, strided a */
        dtf_tensor as = rnd(2, 5, 7), b = rnd(2, 7, 5);
        dtf_tensor a = tr(&as);
        dtf_tensor o1 = mk(2, 7, 5), o2 = mk(2, 7, 5);
        CHECK(dtf_binary(&o1, &a, &b, (dtf_binop)op, 0.5f) == 0);
        CHECK(dtf_binary_naive(&o2, &a, &b, (dtf_binop)op, 0.5f) == 0);
        CHECK(maxdiff(&o1, &o2) < 1e-6);
        /* row vector on either side */
        dtf_tensor row = rnd(1, 5);
        CHECK(dtf_binary(&o1, &b, &row, (dtf_binop)op, 2) == 0);
        CHECK(dtf_binary_naive(&o2, &b, &row, (dtf_binop)op, 2) == 0);
        CHECK(maxdiff(&o1, &o2) < 1e-6);
        CHECK(dtf_binary(&o1, &row, &a, (dtf_binop)op, 1) == 0);
        CHECK(dtf_binary_naive(&o2, &row, &a, (dtf_binop)op, 1) == 0);
        CHECK(maxdiff(&o1, &o2) < 1e-6);
        /* in place */
        dtf_tensor ref = like(&b);
        dtf_binary_naive(&ref, &b, &a, (dtf_binop)op, 1);
        CHECK(dtf_binary(&b, &b, &a, (dtf_binop)op, 1) == 0);
        CHECK(maxdiff(&b, &ref) < 1e-6);
        rel(6, &as, &b, &o1, &o2, &row, &ref);
    }
    for (int op = DTF_ADD; op <= DTF_RDIV; op++) {
        dtf_tensor as = rnd(3, 2, 3, 4), a;
        dtf_transpose(&a, &as, 0, 2);
        dtf_tensor o1 = like(&a), o2 = like(&a);
        CHECK(dtf_binary_scalar(&o1, &a, 1.5f, (dtf_binop)op) == 0);
        CHECK(dtf_binary_scalar_naive(&o2, &a, 1.5f, (dtf_binop)op) == 0);
        CHECK(maxdiff(&o1, &o2) < 1e-6);
        rel(3, &as, &o1, &o2);
    }
    dtf_tensor a = mk(2, 3, 4), b = mk(2, 4, 3);
    CHECK(dtf_binary(&a, &a, &b, DTF_ADD, 1) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "add: (3x4) and (4x3) do not match");
    rel(2, &a, &b);
}

/* ---- reductions --------------------------------------------------------- */

TEST(reductions_against_naive)
{
    dtf_tensor ts = rnd(3, 4, 5, 6);
    dtf_tensor views[2];
    views[0] = ts;
    dtf_transpose(&views[1], &ts, 0, 2); /* (6,5,4) strided */
    for (int v = 0; v < 2; v++) {
        dtf_tensor *t = &views[v];
        CHECK_NEAR(dtf_sum_all(t), dtf_sum_all_naive(t), 1e-4);
        CHECK(dtf_max_all(t) == dtf_max_all_naive(t));
        CHECK_EQ_INT(dtf_argmax_all(t), dtf_argmax_all_naive(t));
        for (int dim = 0; dim < 3; dim++) {
            int64_t s[3];
            for (int d = 0, k = 0; d < 3; d++)
                if (d != dim)
                    s[k++] = t->shape[d];
            dtf_tensor o1, o2, i1, i2;
            dtf_tensor_init(&o1, 2, s);
            dtf_tensor_init(&o2, 2, s);
            dtf_tensor_init(&i1, 2, s);
            dtf_tensor_init(&i2, 2, s);
            CHECK(dtf_sum_dim(&o1, t, dim) == 0);
            dtf_sum_dim_naive(&o2, t, dim);
            CHECK(maxdiff(&o1, &o2) < 1e-5);
            CHECK(dtf_mean_dim(&o1, t, dim) == 0);
            dtf_mean_dim_naive(&o2, t, dim);
            CHECK(maxdiff(&o1, &o2) < 1e-5);
            CHECK(dtf_max_dim(&o1, &i1, t, dim) == 0);
            dtf_max_dim_naive(&o2, &i2, t, dim);
            CHECK(maxdiff(&o1, &o2) == 0);
            CHECK(maxdiff(&i1, &i2) == 0);
            /* keepdim-shaped output */
            int64_t k[3] = {t->shape[0], t->shape[1], t->shape[2]};
            k[dim] = 1;
            dtf_tensor kd;
            dtf_tensor_init(&kd, 3, k);
            CHECK(dtf_sum_dim(&kd, t, dim) == 0);
            dtf_tensor kv;
            dtf_view(&kv, &kd, 2, s);
            dtf_sum_dim_naive(&o2, t, dim);
            CHECK(maxdiff(&kv, &o2) < 1e-5);
            rel(5, &o1, &o2, &i1, &i2, &kd);
        }
    }
    dtf_tensor bad = mk(2, 4, 4);
    CHECK(dtf_sum_dim(&bad, &ts, 1) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "4x4");
    CHECK(dtf_sum_dim(&bad, &ts, 3) < 0);
    /* 1-D reduce to {1} */
    dtf_tensor v = rnd(1, 9), one = mk(1, 1);
    CHECK(dtf_sum_dim(&one, &v, 0) == 0);
    CHECK_NEAR(dtf_data(&one)[0], dtf_sum_all_naive(&v), 1e-5);
    rel(4, &ts, &bad, &v, &one);
}

/* ---- activations, loss ---------------------------------------------------- */

TEST(relu_softmax_against_naive)
{
    dtf_tensor xs = rnd(2, 9, 13), x = tr(&xs);
    dtf_tensor o1 = like(&x), o2 = like(&x), dy = rnd(2, 13, 9);
    CHECK(dtf_relu(&o1, &x) == 0);
    dtf_relu_naive(&o2, &x);
    CHECK(maxdiff(&o1, &o2) == 0);
    CHECK(dtf_relu_backward(&o1, &dy, &x) == 0);
    dtf_relu_backward_naive(&o2, &dy, &x);
    CHECK(maxdiff(&o1, &o2) == 0);
    /* dx may be dy */
    CHECK(dtf_relu_backward(&dy, &dy, &x) == 0);
    CHECK(maxdiff(&dy, &o2) == 0);
    CHECK(dtf_softmax(&o1, &x) == 0);
    dtf_softmax_naive(&o2, &x);
    CHECK(maxdiff(&o1, &o2) < 1e-6);
    CHECK(dtf_log_softmax(&o1, &x) == 0);
    dtf_log_softmax_naive(&o2, &x);
    CHECK(maxdiff(&o1, &o2) < 1e-5);
    /* stable for large logits */
    dtf_binary_scalar(&o1, &x, 1000, DTF_ADD);
    CHECK(dtf_softmax(&o2, &o1) == 0);
    CHECK(isfinite(dtf_sum_all(&o2)));
    CHECK_NEAR(dtf_sum_all(&o2), 13, 1e-4);
    /* 3-D rows */
    dtf_tensor t3 = rnd(3, 2, 3, 4), s1 = like(&t3), s2 = like(&t3);
    CHECK(dtf_softmax(&s1, &t3) == 0);
    dtf_softmax_naive(&s2, &t3);
    CHECK(maxdiff(&s1, &s2) < 1e-6);
    rel(7, &xs, &o1, &o2, &dy, &t3, &s1, &s2);
}

static dtf_tensor labels_for(int N, int C)
{
    dtf_tensor l = mk(1, N);
    for (int i = 0; i < N; i++)
        dtf_data(&l)[i] = (float)dtf_rng_below(&R, (uint64_t)C);
    return l;
}

TEST(cross_entropy_against_naive_and_fd)
{
    int N = 16, C = 10;
    dtf_tensor x = rnd(2, N, C), lab = labels_for(N, C);
    dtf_tensor d1 = like(&x), d2 = like(&x);
    double l1, l2;
    CHECK(dtf_cross_entropy(&x, &lab, &d1, &l1) == 0);
    CHECK(dtf_cross_entropy_naive(&x, &lab, &d2, &l2) == 0);
    CHECK_NEAR(l1, l2, 1e-5);
    CHECK(maxdiff(&d1, &d2) < 1e-6);
    /* finite differences of the mean loss */
    double worst = 0;
    for (int k = 0; k < N * C; k += 7) {
        float keep = dtf_data(&x)[k];
        double lp, lm, h = 1e-2;
        dtf_data(&x)[k] = keep + (float)h;
        dtf_cross_entropy_naive(&x, &lab, NULL, &lp);
        dtf_data(&x)[k] = keep - (float)h;
        dtf_cross_entropy_naive(&x, &lab, NULL, &lm);
        dtf_data(&x)[k] = keep;
        double fd = (lp - lm) / (2 * h);
        worst = fmax(worst, fabs(fd - dtf_data(&d1)[k]));
    }
    CHECK(worst < 1e-4);
    /* dlogits may be the logits */
    CHECK(dtf_cross_entropy(&x, &lab, &x, &l1) == 0);
    CHECK(maxdiff(&x, &d2) < 1e-6);
    CHECK_NEAR(l1, l2, 1e-5);
    /* labels out of range */
    dtf_data(&lab)[3] = 10;
    CHECK(dtf_cross_entropy(&d1, &lab, NULL, &l1) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "label 10 at row 4");
    dtf_data(&lab)[3] = -1;
    CHECK(dtf_cross_entropy(&d1, &lab, NULL, &l1) < 0);
    dtf_data(&lab)[3] = 1.5f;
    CHECK(dtf_cross_entropy(&d1, &lab, NULL, &l1) < 0);
    dtf_tensor short_lab = mk(1, 3);
    CHECK(dtf_cross_entropy(&d1, &short_lab, NULL, &l1) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "(16x10) and (3)");
    rel(5, &x, &lab, &d1, &d2, &short_lab);
}

TEST(accuracy_and_bias_backward)
{
    dtf_tensor x = rnd(2, 50, 7), lab = labels_for(50, 7);
    int64_t c1, c2;
    CHECK(dtf_accuracy(&x, &lab, &c1) == 0);
    dtf_accuracy_naive(&x, &lab, &c2);
    CHECK_EQ_INT(c1, c2);
    /* labels = argmax -> all correct */
    dtf_tensor idx = mk(1, 50);
    dtf_max_dim(NULL, &idx, &x, 1);
    CHECK(dtf_accuracy(&x, &idx, &c1) == 0);
    CHECK_EQ_INT(c1, 50);

    dtf_tensor dys = rnd(2, 7, 50), dy = tr(&dys);
    dtf_tensor db1 = rnd(1, 7), db2 = like(&db1);
    dtf_copy(&db2, &db1);
    CHECK(dtf_bias_backward(&db1, &dy) == 0);
    dtf_bias_backward_naive(&db2, &dy);
    CHECK(maxdiff(&db1, &db2) < 1e-5);
    CHECK(dtf_bias_backward(&db1, &x) == 0);
    dtf_bias_backward_naive(&db2, &x);
    CHECK(maxdiff(&db1, &db2) < 1e-5);
    dtf_tensor bad = mk(1, 6);
    CHECK(dtf_bias_backward(&bad, &x) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "(6) and (50x7)");
    rel(7, &x, &lab, &idx, &dys, &db1, &db2, &bad);
}

/* ---- linear layers ------------------------------------------------------------ */

static void linear_case(int N, int K, int D)
{
    dtf_tensor x = rnd(2, N, K), w = rnd(2, D, K), b = rnd(1, D);
    dtf_tensor y1 = mk(2, N, D), y2 = like(&y1);
    for (int relu = 0; relu < 2; relu++) {
        CHECK(dtf_linear(&y1, &x, &w, &b, relu) == 0);
        CHECK(dtf_linear_naive(&y2, &x, &w, &b, relu) == 0);
        CHECK(maxdiff(&y1, &y2) < 1e-4);
        dtf_tensor dy = rnd(2, N, D), dym = like(&dy);
        dtf_tensor dx1 = rnd(2, N, K), dx2 = like(&x), dw1 = rnd(2, D, K), dw2 = like(&w);
        dtf_tensor db1 = rnd(1, D), db2 = like(&b);
        dtf_copy(&dw2, &dw1);
        dtf_copy(&db2, &db1);
        const dtf_tensor *yy = relu ? &y1 : NULL;
        CHECK(dtf_linear_backward(&dx1, &dw1, &db1, &dy, &x, &w, yy, &dym) == 0);
        CHECK(dtf_linear_backward_naive(&dx2, &dw2, &db2, &dy, &x, &w, yy, NULL) == 0);
        double d = fmax(maxdiff(&dx1, &dx2), fmax(maxdiff(&dw1, &dw2), maxdiff(&db1, &db2)));
        if (!(d < 1e-4))
            FAIL("linear bwd %dx%dx%d relu %d: %g", N, K, D, relu, d);
        /* a transposed dy view, no bias: the same */
        dtf_tensor dyt0 = mk(2, D, N), dyt;
        dtf_transpose(&dyt, &dyt0, 0, 1);
        dtf_copy(&dyt, &dy);
        dtf_copy(&dw2, &dw1);
        CHECK(dtf_linear_backward(&dx1, &dw1, NULL, &dyt, &x, &w, yy, &dym) == 0);
        CHECK(dtf_linear_backward_naive(&dx2, &dw2, NULL, &dy, &x, &w, yy, NULL) == 0);
        CHECK(maxdiff(&dx1, &dx2) < 1e-4 && maxdiff(&dw1, &dw2) < 1e-4);
        rel(9, &dy, &dym, &dx1, &dx2, &dw1, &dw2, &db1, &db2, &dyt0);
    }
    rel(5, &x, &w, &b, &y1, &y2);
}

TEST(linear_against_naive)
{
    linear_case(64, 784, 100);
    linear_case(5, 7, 3);
    linear_case(1, 10, 1);
    linear_case(3, 5, 17); /* a row longer than one vector, not a multiple */
    dtf_tensor x = mk(2, 4, 3), w = mk(2, 5, 3), y = mk(2, 4, 4), dy = mk(2, 4, 5), y5 = mk(2, 4, 5);
    CHECK(dtf_linear(&y, &x, &w, NULL, 0) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "(4x4) must be a contiguous (4x5)");
    CHECK(dtf_linear_backward(NULL, NULL, NULL, &dy, &x, &w, &y5, NULL) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "workspace");
    rel(5, &x, &w, &y, &dy, &y5);
}

/* ---- conv2d, maxpool -------------------------------------------------------- */

static void conv_case(int N, int C, int H, int W, int O, int KH, int KW, int stride, int pad)
{
    dtf_tensor x = rnd(4, N, C, H, W), w = rnd(4, O, C, KH, KW), b = rnd(1, O);
    int OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    dtf_tensor y1 = mk(4, N, O, OH, OW), y2 = mk(4, N, O, OH, OW);
    size_t wsn = dtf_conv2d_workspace(&x, &w, stride, pad);
    float *ws = malloc((wsn ? wsn : 1) * sizeof(float));
    CHECK(dtf_conv2d(&y1, &x, &w, &b, stride, pad, ws, wsn) == 0);
    CHECK(dtf_conv2d_naive(&y2, &x, &w, &b, stride, pad, NULL, 0) == 0);
    double d = maxdiff(&y1, &y2);
    if (!(d < 1e-4))
        FAIL("conv fwd N%d C%d H%d W%d O%d K%dx%d s%d p%d: %g", N, C, H, W, O, KH, KW, stride, pad, d);
    CHECK(dtf_conv2d(&y1, &x, &w, NULL, stride, pad, ws, wsn) == 0);
    dtf_conv2d_naive(&y2, &x, &w, NULL, stride, pad, NULL, 0);
    CHECK(maxdiff(&y1, &y2) < 1e-4);

    dtf_tensor dy = rnd(4, N, O, OH, OW);
    dtf_tensor dx1 = rnd(4, N, C, H, W), dx2 = like(&x); /* dx overwritten */
    dtf_tensor dw1 = rnd(4, O, C, KH, KW), dw2 = like(&w);
    dtf_tensor db1 = rnd(1, O), db2 = like(&b);
    dtf_copy(&dw2, &dw1);
    dtf_copy(&db2, &db1);
    CHECK(dtf_conv2d_backward(&dx1, &dw1, &db1, &dy, &x, &w, stride, pad, ws, wsn) == 0);
    CHECK(dtf_conv2d_backward_naive(&dx2, &dw2, &db2, &dy, &x, &w, stride, pad, NULL, 0) == 0);
    d = fmax(maxdiff(&dx1, &dx2), fmax(maxdiff(&dw1, &dw2), maxdiff(&db1, &db2)));
    if (!(d < 1e-4))
        FAIL("conv bwd N%d C%d H%d W%d O%d K%dx%d s%d p%d: %g", N, C, H, W, O, KH, KW, stride, pad, d);
    /* dx skipped, db skipped */
    CHECK(dtf_conv2d_backward(NULL, &dw1, NULL, &dy, &x, &w, stride, pad, ws, wsn) == 0);
    free(ws);
    rel(12, &x, &w, &b, &y1, &y2, &dy, &dx1, &dx2, &dw1, &dw2, &db1, &db2);
}

TEST(conv2d_against_naive)
{
    conv_case(2, 3, 8, 8, 4, 3, 3, 1, 0);
    conv_case(2, 3, 8, 8, 4, 3, 3, 1, 1);
    conv_case(1, 2, 9, 7, 3, 3, 3, 2, 1);
    conv_case(3, 1, 28, 28, 6, 5, 5, 1, 2);
    conv_case(2, 4, 6, 6, 5, 1, 1, 1, 0); /* pointwise */
    conv_case(1, 2, 7, 9, 2, 2, 3, 3, 2);
    conv_case(2, 2, 5, 5, 3, 5, 5, 1, 0);
    conv_case(37, 3, 9, 9, 5, 3, 3, 1, 1); /* several chunks, a short last one */
}

/* The same convolution with a workspace of one image and of a few:
 * chunks of 1 and 3 images give the chunk of the full workspace's result. */
TEST(conv2d_chunks_agree)
{
    int N = 7, C = 3, H = 10, W = 9, O = 4, K = 3;
    dtf_tensor x = rnd(4, N, C, H, W), w = rnd(4, O, C, K, K), b = rnd(1, O);
    dtf_tensor y1 = mk(4, N, O, H, W), y2 = like(&y1), dy = rnd(4, N, O, H, W);
    dtf_tensor dx1 = like(&x), dx2 = like(&x), dw1 = like(&w), dw2 = like(&w);
    size_t full = dtf_conv2d_workspace(&x, &w, 1, 1);
    size_t one = (size_t)(C * K * K + O) * H * W + (size_t)(H + 2) * (W + 2);
    CHECK(full >= one);
    float *ws = malloc(full * sizeof(float));
    CHECK(dtf_conv2d(&y1, &x, &w, &b, 1, 1, ws, full) == 0);
    CHECK(dtf_conv2d_backward(&dx1, &dw1, NULL, &dy, &x, &w, 1, 1, ws, full) == 0);
    size_t sizes[2] = {one, one + 2 * (size_t)(C * K * K + O) * H * W + 5};
    for (int k = 0; k < 2; k++) {
        dtf_fill(&dw2, 0);
        CHECK(dtf_conv2d(&y2, &x, &w, &b, 1, 1, ws, sizes[k]) == 0);
        CHECK(dtf_conv2d_backward(&dx2, &dw2, NULL, &dy, &x, &w, 1, 1, ws, sizes[k]) == 0);
        CHECK(maxdiff(&y1, &y2) < 1e-5);
        CHECK(maxdiff(&dx1, &dx2) < 1e-5);
        CHECK(maxdiff(&dw1, &dw2) < 1e-4);
    }
    CHECK(dtf_conv2d(&y2, &x, &w, &b, 1, 1, ws, one - 1) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "workspace");
    free(ws);
    rel(9, &x, &w, &b, &y1, &y2, &dy, &dx1, &dx2, &dw1);
    dtf_tensor_release(&dw2);
}

/* conv2d + bias + ReLU + maxpool in one kernel against the three naive
 * layers; backward with the fast forward's maxima for both. */
static void block_case(int N, int C, int H, int W, int O, int K, int stride, int pad, size_t ws_cut)
{
    dtf_tensor x = rnd(4, N, C, H, W), w = rnd(4, O, C, K, K), b = rnd(1, O);
    int OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;
    dtf_tensor y1 = mk(4, N, O, OH / 2, OW / 2), y2 = like(&y1), i1 = like(&y1), i2 = like(&y1);
    size_t wsn = dtf_conv2d_workspace(&x, &w, stride, pad);
    if (ws_cut)
        wsn = ws_cut;
    float *ws = malloc(wsn * sizeof(float));
    CHECK(dtf_conv2d_relu_pool(&y1, &i1, &x, &w, &b, stride, pad, ws, wsn) == 0);
    CHECK(dtf_conv2d_relu_pool_naive(&y2, &i2, &x, &w, &b, stride, pad, NULL, 0) == 0);
    double d = maxdiff(&y1, &y2);
    if (!(d < 1e-4))
        FAIL("block fwd N%d C%d H%d W%d O%d K%d s%d p%d: %g", N, C, H, W, O, K, stride, pad, d);
    int64_t positive = 0, agree = 0;
    for (int64_t k = 0; k < dtf_numel(&y1); k++)
        if (dtf_data(&y1)[k] > 1e-4f) {
            positive++;
            agree += dtf_data(&i1)[k] == dtf_data(&i2)[k];
        }
    CHECK(positive > 0);
    CHECK_EQ_INT(agree, positive);
    /* no indices: the same output */
    CHECK(dtf_conv2d_relu_pool(&y2, NULL, &x, &w, &b, stride, pad, ws, wsn) == 0);
    CHECK(maxdiff(&y1, &y2) == 0);

    dtf_tensor dy = rnd(4, N, O, OH / 2, OW / 2);
    dtf_tensor dx1 = rnd(4, N, C, H, W), dx2 = like(&x), dw1 = rnd(4, O, C, K, K), dw2 = like(&w);
    dtf_tensor db1 = rnd(1, O), db2 = like(&b);
    dtf_copy(&dw2, &dw1);
    dtf_copy(&db2, &db1);
    CHECK(dtf_conv2d_relu_pool_backward(&dx1, &dw1, &db1, &dy, &y1, &i1, &x, &w, stride, pad, ws,
                                        wsn) == 0);
    CHECK(dtf_conv2d_relu_pool_backward_naive(&dx2, &dw2, &db2, &dy, &y1, &i1, &x, &w, stride,
                                              pad, NULL, 0) == 0);
    d = fmax(maxdiff(&dx1, &dx2), fmax(maxdiff(&dw1, &dw2), maxdiff(&db1, &db2)));
    if (!(d < 1e-4))
        FAIL("block bwd N%d C%d H%d W%d O%d K%d s%d p%d: %g", N, C, H, W, O, K, stride, pad, d);
    /* the first layer: no dx, and no db */
    CHECK(dtf_conv2d_relu_pool_backward(NULL, &dw1, NULL, &dy, &y1, &i1, &x, &w, stride, pad, ws,
                                        wsn) == 0);
    free(ws);
    rel(14, &x, &w, &b, &y1, &y2, &i1, &i2, &dy, &dx1, &dx2, &dw1, &dw2, &db1, &db2);
}

TEST(conv2d_relu_pool_against_naive)
{
    block_case(2, 1, 28, 28, 8, 5, 1, 2, 0);  /* the CNN's first block */
    block_case(3, 4, 14, 14, 6, 5, 1, 2, 0);  /* and its second */
    block_case(2, 3, 9, 7, 4, 3, 1, 1, 0);    /* odd sizes: the last row and column dropped */
    block_case(2, 2, 11, 11, 3, 3, 2, 1, 0);  /* stride 2 */
    block_case(9, 2, 8, 8, 3, 3, 1, 1, (2 * 9 + 3) * 64 * 2 + 100); /* chunks of 2 images */
}

/* The plain loops the AVX-512 ones stand in for (what a CPU without
 * AVX-512 runs): the same cases. */
TEST(kernels_on_plain_loops)
{
    dtf_simd_force_plain(1);
    linear_case(64, 784, 100);
    linear_case(3, 5, 17);
    conv_case(3, 2, 9, 9, 4, 3, 3, 1, 1);
    conv_case(37, 3, 9, 9, 5, 3, 3, 1, 1);
    block_case(2, 1, 28, 28, 8, 5, 1, 2, 0);
    block_case(3, 4, 14, 14, 6, 5, 1, 2, 0);
    block_case(2, 3, 9, 7, 4, 3, 1, 1, 0);
    dtf_simd_force_plain(0);
}

TEST(conv2d_relu_pool_errors)
{
    dtf_tensor x = mk(4, 2, 3, 8, 8), w = mk(4, 4, 3, 3, 3), y = mk(4, 2, 4, 6, 6);
    dtf_tensor idx = mk(4, 2, 4, 3, 2), dy = mk(4, 2, 4, 3, 3);
    size_t wsn = dtf_conv2d_workspace(&x, &w, 1, 0);
    float *ws = malloc(wsn * sizeof(float));
    CHECK(dtf_conv2d_relu_pool(&y, NULL, &x, &w, NULL, 1, 0, ws, wsn) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "y (2x4x6x6) and expected (2x4x3x3)");
    dtf_tensor yp = mk(4, 2, 4, 3, 3);
    CHECK(dtf_conv2d_relu_pool(&yp, &idx, &x, &w, NULL, 1, 0, ws, wsn) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "indices (2x4x3x2)");
    CHECK(dtf_conv2d_relu_pool_backward(NULL, NULL, NULL, &dy, &yp, &idx, &x, &w, 1, 0, ws, wsn) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "indices");
    /* junk indices route nothing and never write outside the planes */
    dtf_tensor junk = like(&dy), dw = like(&w);
    dtf_fill(&junk, 1e9f);
    dtf_fill(&yp, 1);
    dtf_fill(&dy, 1);
    CHECK(dtf_conv2d_relu_pool_backward(NULL, &dw, NULL, &dy, &yp, &junk, &x, &w, 1, 0, ws, wsn) == 0);
    free(ws);
    rel(8, &x, &w, &y, &idx, &dy, &yp, &junk, &dw);
}

TEST(conv2d_errors)
{
    dtf_tensor x = mk(4, 2, 3, 8, 8), w = mk(4, 4, 2, 3, 3), y = mk(4, 2, 4, 6, 6);
    static float ws[3000];
    CHECK(dtf_conv2d(&y, &x, &w, NULL, 1, 0, ws, 3000) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "(2x3x8x8) and (4x2x3x3)");
    dtf_tensor w3 = mk(4, 4, 3, 3, 3);
    CHECK(dtf_conv2d_workspace(&x, &w3, 1, 0) <= 3000);
    CHECK(dtf_conv2d(&y, &x, &w3, NULL, 1, 0, ws, 10) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "workspace");
    CHECK(dtf_conv2d(&y, &x, &w3, NULL, 1, 0, ws, 3000) == 0);
    dtf_tensor ybad = mk(4, 2, 4, 5, 6);
    CHECK(dtf_conv2d(&ybad, &x, &w3, NULL, 1, 0, ws, 3000) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "y (2x4x5x6) and expected (2x4x6x6)");
    rel(5, &x, &w, &y, &w3, &ybad);
}

/* loss = sum(y * r): d loss / d x = conv2d_backward(dy = r). */
TEST(conv2d_finite_differences)
{
    int N = 2, C = 2, H = 6, W = 5, O = 3, K = 3, stride = 2, pad = 1;
    dtf_tensor x = rnd(4, N, C, H, W), w = rnd(4, O, C, K, K), b = rnd(1, O);
    int OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;
    dtf_tensor y = mk(4, N, O, OH, OW), r = rnd(4, N, O, OH, OW);
    dtf_tensor dx = like(&x), dw = like(&w), db = like(&b);
    size_t wsn = dtf_conv2d_workspace(&x, &w, stride, pad);
    float *ws = malloc(wsn * sizeof(float));
    CHECK(dtf_conv2d_backward(&dx, &dw, &db, &r, &x, &w, stride, pad, ws, wsn) == 0);
    dtf_tensor *params[3] = {&x, &w, &b}, *grads[3] = {&dx, &dw, &db};
    double worst = 0;
    for (int p = 0; p < 3; p++)
        for (int64_t k = 0; k < dtf_numel(params[p]); k++) {
            float *v = dtf_data(params[p]) + k, keep = *v;
            double h = 1e-2, lp, lm;
            *v = keep + (float)h;
            dtf_conv2d(&y, &x, &w, &b, stride, pad, ws, wsn);
            dtf_binary(&y, &y, &r, DTF_MUL, 1);
            lp = dtf_sum_all(&y);
            *v = keep - (float)h;
            dtf_conv2d(&y, &x, &w, &b, stride, pad, ws, wsn);
            dtf_binary(&y, &y, &r, DTF_MUL, 1);
            lm = dtf_sum_all(&y);
            *v = keep;
            double fd = (lp - lm) / (2 * h);
            worst = fmax(worst, fabs(fd - dtf_data(grads[p])[k]) / (1 + fabs(fd)));
        }
    CHECK(worst < 2e-3);
    free(ws);
    rel(8, &x, &w, &b, &y, &r, &dx, &dw, &db);
}

TEST(relu_finite_differences)
{
    dtf_tensor x = rnd(2, 4, 6), y = like(&x), r = rnd(2, 4, 6), dx = like(&x);
    /* keep inputs away from the kink */
    for (int i = 0; i < 24; i++)
        if (fabsf(dtf_data(&x)[i]) < 0.05f)
            dtf_data(&x)[i] = 0.5f;
    CHECK(dtf_relu_backward(&dx, &r, &x) == 0);
    double worst = 0;
    for (int k = 0; k < 24; k++) {
        float keep = dtf_data(&x)[k];
        double h = 1e-2, lp, lm;
        dtf_data(&x)[k] = keep + (float)h;
        dtf_relu(&y, &x);
        dtf_binary(&y, &y, &r, DTF_MUL, 1);
        lp = dtf_sum_all(&y);
        dtf_data(&x)[k] = keep - (float)h;
        dtf_relu(&y, &x);
        dtf_binary(&y, &y, &r, DTF_MUL, 1);
        lm = dtf_sum_all(&y);
        dtf_data(&x)[k] = keep;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - dtf_data(&dx)[k]));
    }
    CHECK(worst < 1e-3);
    rel(4, &x, &y, &r, &dx);
}

TEST(maxpool_against_naive)
{
    int shapes[3][4] = {{2, 3, 8, 8}, {1, 2, 7, 9}, {3, 1, 28, 28}};
    for (int s = 0; s < 3; s++) {
        int N = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
        dtf_tensor x = rnd(4, N, C, H, W);
        dtf_tensor y1 = mk(4, N, C, H / 2, W / 2), y2 = like(&y1);
        dtf_tensor i1 = like(&y1), i2 = like(&y1);
        CHECK(dtf_maxpool2d(&y1, &i1, &x) == 0);
        CHECK(dtf_maxpool2d_naive(&y2, &i2, &x) == 0);
        CHECK(maxdiff(&y1, &y2) == 0);
        CHECK(maxdiff(&i1, &i2) == 0);
        dtf_tensor dy = rnd(4, N, C, H / 2, W / 2);
        dtf_tensor dx1 = rnd(4, N, C, H, W), dx2 = like(&x);
        CHECK(dtf_maxpool2d_backward(&dx1, &dy, &i1) == 0);
        CHECK(dtf_maxpool2d_backward_naive(&dx2, &dy, &i2) == 0);
        CHECK(maxdiff(&dx1, &dx2) == 0);
        CHECK_NEAR(dtf_sum_all(&dx1), dtf_sum_all(&dy), 1e-4);
        rel(8, &x, &y1, &y2, &i1, &i2, &dy, &dx1, &dx2);
    }
    dtf_tensor x = mk(4, 1, 1, 4, 4), y = mk(4, 1, 1, 3, 2);
    CHECK(dtf_maxpool2d(&y, NULL, &x) < 0);
    CHECK_STR_CONTAINS(dtf_error(), "(1x1x3x2) and expected (1x1x2x2)");
    rel(2, &x, &y);
}

RUN_TESTS("tensor")
