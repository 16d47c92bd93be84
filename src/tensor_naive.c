/* tensor_naive: the plain twin of every fast kernel in tensor.c and
 * tensor_conv.c, written for obviousness (element by element through dtf_at,
 * double accumulators, direct convolution loops) and compared with the fast
 * ones by tests/unit/test_tensor.c. Same signatures and error behaviour for
 * the cases the tests use; speed is not a goal. */
#include "tensor.h"

#include <math.h>
#include <string.h>

/* Element k (logical order) of t's multi-index into idx. */
static void unravel(const dtf_tensor *t, int64_t k, int64_t *idx)
{
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = t->shape[d] ? k % t->shape[d] : 0;
        k = t->shape[d] ? k / t->shape[d] : 0;
    }
}

static float *elem(const dtf_tensor *t, int64_t k)
{
    int64_t idx[DTF_MAXDIM];
    unravel(t, k, idx);
    return dtf_at(t, idx);
}

static float *at2(const dtf_tensor *t, int64_t i, int64_t j)
{
    int64_t idx[2] = {i, j};
    return dtf_at(t, idx);
}

static float *at4(const dtf_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t idx[4] = {a, b, c, d};
    return dtf_at(t, idx);
}

static int mismatch(const char *what, const dtf_tensor *a, const dtf_tensor *b)
{
    char s1[96], s2[96];
    dtf_seterr("%s: (%s) and (%s) do not match", what, dtf_shape_str(a, s1, sizeof s1),
               dtf_shape_str(b, s2, sizeof s2));
    return -1;
}

int dtf_matmul_naive(dtf_tensor *c, const dtf_tensor *a, const dtf_tensor *b,
                     float alpha, float beta)
{
    if (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[0])
        return mismatch("matmul", a, b);
    int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (c->ndim != 2 || c->shape[0] != M || c->shape[1] != N)
        return mismatch("matmul", c, a);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)*at2(a, i, k) * *at2(b, k, j);
            float *o = at2(c, i, j);
            *o = (float)(alpha * acc + (beta == 0 ? 0 : beta * *o));
        }
    return 0;
}

/* y = x w^T + b, relu: element by element. */
int dtf_linear_naive(dtf_tensor *y, const dtf_tensor *x, const dtf_tensor *w,
                     const dtf_tensor *b, int relu)
{
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1])
        return mismatch("linear", x, w);
    int64_t N = x->shape[0], K = x->shape[1], D = w->shape[0];
    if (y->ndim != 2 || y->shape[0] != N || y->shape[1] != D)
        return mismatch("linear", y, x);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < D; j++) {
            double acc = b ? *elem(b, j) : 0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)*at2(x, i, k) * *at2(w, j, k);
            *at2(y, i, j) = (float)(relu && !(acc > 0) ? 0 : acc);
        }
    return 0;
}

int dtf_linear_backward_naive(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db,
                              const dtf_tensor *dy, const dtf_tensor *x, const dtf_tensor *w,
                              const dtf_tensor *y, dtf_tensor *dym)
{
    (void)dym;
    if (x->ndim != 2 || w->ndim != 2 || dy->ndim != 2)
        return mismatch("linear_backward", x, w);
    int64_t N = x->shape[0], K = x->shape[1], D = w->shape[0];
    /* g(i, j): the product's gradient */
#define G(i, j) (y && !(*at2(y, (i), (j)) > 0) ? 0.0 : (double)*at2(dy, (i), (j)))
    for (int64_t j = 0; j < D; j++) {
        double acc = 0;
        for (int64_t i = 0; i < N; i++)
            acc += G(i, j);
        if (db)
            *elem(db, j) += (float)acc;
        for (int64_t k = 0; k < K && dw; k++) {
            double a = 0;
            for (int64_t i = 0; i < N; i++)
                a += G(i, j) * *at2(x, i, k);
            *at2(dw, j, k) += (float)a;
        }
    }
    for (int64_t i = 0; i < N && dx; i++)
        for (int64_t k = 0; k < K; k++) {
            double a = 0;
            for (int64_t j = 0; j < D; j++)
                a += G(i, j) * *at2(w, j, k);
            *at2(dx, i, k) = (float)a;
        }
#undef G
    return 0;
}

static float binop(dtf_binop op, float x, float y, float alpha)
{
    switch (op) {
    case DTF_ADD: return x + alpha * y;
    case DTF_SUB: return x - alpha * y;
    case DTF_MUL: return x * y;
    case DTF_DIV: return x / y;
    case DTF_RSUB: return y - x;
    case DTF_RDIV: return y / x;
    }
    return 0;
}

int dtf_binary_naive(dtf_tensor *out, const dtf_tensor *a, const dtf_tensor *b,
                     dtf_binop op, float alpha)
{
    int arow = 0, brow = 0;
    const dtf_tensor *full = a;
    if (dtf_same_shape(a, b)) {
    } else if (b->ndim == 1 && a->ndim > 1 && b->shape[0] == a->shape[a->ndim - 1]) {
        brow = 1;
    } else if (a->ndim == 1 && b->ndim > 1 && a->shape[0] == b->shape[b->ndim - 1]) {
        arow = 1;
        full = b;
    } else {
        return mismatch("binary", a, b);
    }
    if (!dtf_same_shape(out, full))
        return mismatch("binary", out, full);
    int64_t n = dtf_numel(full), D = full->ndim ? full->shape[full->ndim - 1] : 1;
    for (int64_t k = 0; k < n; k++) {
        float x = arow ? *elem(a, k % D) : *elem(a, k);
        float y = brow ? *elem(b, k % D) : *elem(b, k);
        *elem(out, k) = binop(op, x, y, alpha);
    }
    return 0;
}

int dtf_binary_scalar_naive(dtf_tensor *out, const dtf_tensor *a, float s, dtf_binop op)
{
    if (!dtf_same_shape(out, a))
        return mismatch("scalar op", out, a);
    int64_t n = dtf_numel(a);
    for (int64_t k = 0; k < n; k++)
        *elem(out, k) = binop(op, *elem(a, k), s, 1.0f);
    return 0;
}

double dtf_sum_all_naive(const dtf_tensor *t)
{
    double acc = 0;
    int64_t n = dtf_numel(t);
    for (int64_t k = 0; k < n; k++)
        acc += *elem(t, k);
    return acc;
}

double dtf_max_all_naive(const dtf_tensor *t)
{
    double m = -INFINITY;
    int64_t n = dtf_numel(t);
    for (int64_t k = 0; k < n; k++)
        if (*elem(t, k) > m)
            m = *elem(t, k);
    return m;
}

int64_t dtf_argmax_all_naive(const dtf_tensor *t)
{
    int64_t n = dtf_numel(t), arg = n ? 0 : -1;
    for (int64_t k = 1; k < n; k++)
        if (*elem(t, k) > *elem(t, arg))
            arg = k;
    return arg;
}

/* Reductions along dim, out in the dim-removed shape or keepdim shape. */
static int reduce_naive(dtf_tensor *vals, dtf_tensor *idx, const dtf_tensor *t, int dim, int kind)
{
    if (dim < 0 || dim >= t->ndim) {
        dtf_seterr("reduce: dim %d out of range", dim + 1);
        return -1;
    }
    int64_t R = t->shape[dim];
    int64_t rest = R ? dtf_numel(t) / R : 0;
    /* rest enumerates t's shape without dim in logical order; both output
     * layouts (removed or kept) enumerate the same order. */
    dtf_tensor red = *t;
    for (int d = dim; d < t->ndim - 1; d++)
        red.shape[d] = t->shape[d + 1];
    red.ndim--;
    for (int64_t k = 0; k < rest; k++) {
        int64_t ri[DTF_MAXDIM], ti[DTF_MAXDIM];
        unravel(&red, k, ri);
        for (int d = 0, j = 0; d < t->ndim; d++)
            ti[d] = d == dim ? 0 : ri[j++];
        double acc = 0, best = -INFINITY;
        int64_t arg = 0;
        for (int64_t r = 0; r < R; r++) {
            ti[dim] = r;
            float v = *dtf_at(t, ti);
            acc += v;
            if (r == 0 || v > best) {
                best = v;
                arg = r;
            }
        }
        if (vals)
            *elem(vals, k) = (float)(kind == 0 ? acc : kind == 1 ? acc / (double)R : best);
        if (idx)
            *elem(idx, k) = (float)arg;
    }
    return 0;
}

int dtf_sum_dim_naive(dtf_tensor *out, const dtf_tensor *t, int dim)
{
    return reduce_naive(out, NULL, t, dim, 0);
}

int dtf_mean_dim_naive(dtf_tensor *out, const dtf_tensor *t, int dim)
{
    return reduce_naive(out, NULL, t, dim, 1);
}

int dtf_max_dim_naive(dtf_tensor *vals, dtf_tensor *idx, const dtf_tensor *t, int dim)
{
    return reduce_naive(vals, idx, t, dim, 2);
}

int dtf_relu_naive(dtf_tensor *out, const dtf_tensor *x)
{
    if (!dtf_same_shape(out, x))
        return mismatch("relu", out, x);
    int64_t n = dtf_numel(x);
    for (int64_t k = 0; k < n; k++) {
        float v = *elem(x, k);
        *elem(out, k) = v > 0 ? v : 0;
    }
    return 0;
}

int dtf_relu_backward_naive(dtf_tensor *dx, const dtf_tensor *dy, const dtf_tensor *x)
{
    if (!dtf_same_shape(dy, x) || !dtf_same_shape(dx, x))
        return mismatch("relu_backward", dy, x);
    int64_t n = dtf_numel(x);
    for (int64_t k = 0; k < n; k++)
        *elem(dx, k) = *elem(x, k) > 0 ? *elem(dy, k) : 0;
    return 0;
}

static int softmax_naive(dtf_tensor *out, const dtf_tensor *x, int logmode)
{
    if (x->ndim < 1 || !dtf_same_shape(out, x))
        return mismatch("softmax", out, x);
    int64_t C = x->shape[x->ndim - 1];
    int64_t rows = C ? dtf_numel(x) / C : 0;
    for (int64_t r = 0; r < rows; r++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < C; j++)
            mx = fmax(mx, *elem(x, r * C + j));
        for (int64_t j = 0; j < C; j++)
            sum += exp(*elem(x, r * C + j) - mx);
        for (int64_t j = 0; j < C; j++) {
            double v = *elem(x, r * C + j) - mx;
            *elem(out, r * C + j) = (float)(logmode ? v - log(sum) : exp(v) / sum);
        }
    }
    return 0;
}

int dtf_softmax_naive(dtf_tensor *out, const dtf_tensor *x)
{
    return softmax_naive(out, x, 0);
}

int dtf_log_softmax_naive(dtf_tensor *out, const dtf_tensor *x)
{
    return softmax_naive(out, x, 1);
}

int dtf_cross_entropy_naive(const dtf_tensor *logits, const dtf_tensor *labels,
                            dtf_tensor *dlogits, double *loss)
{
    if (logits->ndim != 2 || labels->ndim != 1 || labels->shape[0] != logits->shape[0])
        return mismatch("cross_entropy", logits, labels);
    int64_t N = logits->shape[0], C = logits->shape[1];
    double total = 0;
    for (int64_t i = 0; i < N; i++) {
        float lv = *elem(labels, i);
        if (!(lv >= 0 && lv < (float)C && lv == floorf(lv))) {
            dtf_seterr("cross_entropy: label %g at row %lld is not a class in 0..%lld",
                       (double)lv, (long long)i + 1, (long long)C - 1);
            return -1;
        }
        int64_t y = (int64_t)lv;
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < C; j++)
            mx = fmax(mx, *at2(logits, i, j));
        for (int64_t j = 0; j < C; j++)
            sum += exp(*at2(logits, i, j) - mx);
        double lse = mx + log(sum), ly = *at2(logits, i, y);
        total += lse - ly;
        if (dlogits)
            for (int64_t j = 0; j < C; j++) {
                double p = exp(*at2(logits, i, j) - lse);
                *at2(dlogits, i, j) = (float)((p - (j == y)) / (double)N);
            }
    }
    *loss = N ? total / (double)N : 0;
    return 0;
}

int dtf_accuracy_naive(const dtf_tensor *logits, const dtf_tensor *labels, int64_t *count)
{
    if (logits->ndim != 2 || labels->ndim != 1 || labels->shape[0] != logits->shape[0])
        return mismatch("accuracy", logits, labels);
    int64_t n = 0;
    for (int64_t i = 0; i < logits->shape[0]; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < logits->shape[1]; j++)
            if (*at2(logits, i, j) > *at2(logits, i, best))
                best = j;
        n += logits->shape[1] > 0 && (float)best == *elem(labels, i);
    }
    *count = n;
    return 0;
}

int dtf_bias_backward_naive(dtf_tensor *db, const dtf_tensor *dy)
{
    if (db->ndim != 1 || dy->ndim < 1 || dy->shape[dy->ndim - 1] != db->shape[0])
        return mismatch("bias_backward", db, dy);
    int64_t D = db->shape[0];
    int64_t rows = D ? dtf_numel(dy) / D : 0;
    for (int64_t j = 0; j < D; j++) {
        double acc = 0;
        for (int64_t r = 0; r < rows; r++)
            acc += *elem(dy, r * D + j);
        *elem(db, j) += (float)acc;
    }
    return 0;
}

/* Direct convolution: y[n,o,oh,ow] = b[o] + sum w[o,c,kh,kw] x[n,c,ih,iw]. */
int dtf_conv2d_naive(dtf_tensor *y, const dtf_tensor *x, const dtf_tensor *w,
                     const dtf_tensor *b, int stride, int pad, float *ws, size_t ws_n)
{
    (void)ws;
    (void)ws_n;
    if (x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[1])
        return mismatch("conv2d", x, w);
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = w->shape[0], KH = w->shape[2], KW = w->shape[3];
    int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    if (y->ndim != 4 || y->shape[0] != N || y->shape[1] != O || y->shape[2] != OH || y->shape[3] != OW)
        return mismatch("conv2d", y, x);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double acc = b ? *elem(b, o) : 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t kh = 0; kh < KH; kh++)
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                acc += (double)*at4(w, o, c, kh, kw) * *at4(x, n, c, ih, iw);
                            }
                    *at4(y, n, o, oh, ow) = (float)acc;
                }
    return 0;
}

int dtf_conv2d_backward_naive(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db,
                              const dtf_tensor *dy, const dtf_tensor *x,
                              const dtf_tensor *w, int stride, int pad,
                              float *ws, size_t ws_n)
{
    (void)ws;
    (void)ws_n;
    if (x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[1])
        return mismatch("conv2d_backward", x, w);
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = w->shape[0], KH = w->shape[2], KW = w->shape[3];
    int64_t OH = dy->shape[2], OW = dy->shape[3];
    if (dx)
        for (int64_t k = 0; k < dtf_numel(dx); k++)
            *elem(dx, k) = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    float g = *at4(dy, n, o, oh, ow);
                    if (db)
                        *elem(db, o) += g;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t kh = 0; kh < KH; kh++)
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                if (dw)
                                    *at4(dw, o, c, kh, kw) += g * *at4(x, n, c, ih, iw);
                                if (dx)
                                    *at4(dx, n, c, ih, iw) += g * *at4(w, o, c, kh, kw);
                            }
                }
    return 0;
}

int dtf_maxpool2d_naive(dtf_tensor *y, dtf_tensor *idx, const dtf_tensor *x)
{
    if (x->ndim != 4 || y->ndim != 4)
        return mismatch("maxpool2d", y, x);
    int64_t W = x->shape[3];
    for (int64_t n = 0; n < y->shape[0]; n++)
        for (int64_t c = 0; c < y->shape[1]; c++)
            for (int64_t oh = 0; oh < y->shape[2]; oh++)
                for (int64_t ow = 0; ow < y->shape[3]; ow++) {
                    float best = -INFINITY;
                    int64_t at = -1;
                    for (int64_t dh = 0; dh < 2; dh++)
                        for (int64_t dw = 0; dw < 2; dw++) {
                            float v = *at4(x, n, c, 2 * oh + dh, 2 * ow + dw);
                            if (at < 0 || v > best) {
                                best = v;
                                at = (2 * oh + dh) * W + 2 * ow + dw;
                            }
                        }
                    *at4(y, n, c, oh, ow) = best;
                    if (idx)
                        *at4(idx, n, c, oh, ow) = (float)at;
                }
    return 0;
}

int dtf_maxpool2d_backward_naive(dtf_tensor *dx, const dtf_tensor *dy, const dtf_tensor *idx)
{
    if (dx->ndim != 4 || dy->ndim != 4)
        return mismatch("maxpool2d_backward", dx, dy);
    int64_t W = dx->shape[3];
    for (int64_t k = 0; k < dtf_numel(dx); k++)
        *elem(dx, k) = 0;
    for (int64_t n = 0; n < dy->shape[0]; n++)
        for (int64_t c = 0; c < dy->shape[1]; c++)
            for (int64_t oh = 0; oh < dy->shape[2]; oh++)
                for (int64_t ow = 0; ow < dy->shape[3]; ow++) {
                    int64_t at = (int64_t)*at4(idx, n, c, oh, ow);
                    *at4(dx, n, c, at / W, at % W) += *at4(dy, n, c, oh, ow);
                }
    return 0;
}

/* The block as its three layers: conv2d, ReLU, maxpool (the naive
 * kernels, over a full-size temporary). */
int dtf_conv2d_relu_pool_naive(dtf_tensor *y, dtf_tensor *idx, const dtf_tensor *x,
                               const dtf_tensor *w, const dtf_tensor *b, int stride, int pad,
                               float *ws, size_t ws_n)
{
    if (x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[1])
        return mismatch("conv2d_relu_pool", x, w);
    int64_t N = x->shape[0], O = w->shape[0];
    int64_t OH = (x->shape[2] + 2 * pad - w->shape[2]) / stride + 1;
    int64_t OW = (x->shape[3] + 2 * pad - w->shape[3]) / stride + 1;
    int64_t s[4] = {N, O, OH, OW};
    dtf_tensor t;
    if (dtf_tensor_init(&t, 4, s) < 0)
        return -1;
    int rc = dtf_conv2d_naive(&t, x, w, b, stride, pad, ws, ws_n);
    if (rc == 0)
        rc = dtf_relu_naive(&t, &t);
    if (rc == 0)
        rc = dtf_maxpool2d_naive(y, idx, &t);
    dtf_tensor_release(&t);
    return rc;
}

/* Backward as the layers would run it: maxpool's, then ReLU's (the
 * pooled output is positive exactly where the pooled input was), then
 * conv2d's. */
int dtf_conv2d_relu_pool_backward_naive(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db,
                                        const dtf_tensor *dy, const dtf_tensor *y,
                                        const dtf_tensor *idx, const dtf_tensor *x,
                                        const dtf_tensor *w, int stride, int pad, float *ws,
                                        size_t ws_n)
{
    if (x->ndim != 4 || w->ndim != 4 || dy->ndim != 4)
        return mismatch("conv2d_relu_pool_backward", x, w);
    int64_t OH = (x->shape[2] + 2 * pad - w->shape[2]) / stride + 1;
    int64_t OW = (x->shape[3] + 2 * pad - w->shape[3]) / stride + 1;
    int64_t s[4] = {dy->shape[0], dy->shape[1], OH, OW};
    dtf_tensor t, g;
    if (dtf_tensor_init(&t, 4, s) < 0)
        return -1;
    if (dtf_tensor_init(&g, 4, dy->shape) < 0) {
        dtf_tensor_release(&t);
        return -1;
    }
    for (int64_t k = 0; k < dtf_numel(dy); k++)
        *elem(&g, k) = *elem(y, k) > 0 ? *elem(dy, k) : 0;
    int rc = dtf_maxpool2d_backward_naive(&t, &g, idx);
    if (rc == 0)
        rc = dtf_conv2d_backward_naive(dx, dw, db, &t, x, w, stride, pad, ws, ws_n);
    dtf_tensor_release(&t);
    dtf_tensor_release(&g);
    return rc;
}
