/* tensor_conv: 2-d convolution (im2col + sgemm) and 2x2 max-pooling, with
 * their backward passes, over contiguous NCHW float32 tensors (tensor.h).
 * tensor_naive.c has the direct loops they are tested against. */
#include "tensor.h"
#include "tensor_impl.h"

#include <cblas.h>
#include <string.h>

/* ======================================================================
 * conv2d (im2col + sgemm)
 * ==================================================================== */

typedef struct {
    int64_t N, C, H, W, O, KH, KW, OH, OW;
} convdims;

static int conv_dims(const char *what, convdims *d, const dtf_tensor *x, const dtf_tensor *w,
                     int stride, int pad)
{
    if (x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[1]) {
        MISMATCH(what, x, w);
        return -1;
    }
    if (stride < 1 || pad < 0) {
        dtf_seterr("%s: stride %d must be >= 1 and pad %d >= 0", what, stride, pad);
        return -1;
    }
    d->N = x->shape[0];
    d->C = x->shape[1];
    d->H = x->shape[2];
    d->W = x->shape[3];
    d->O = w->shape[0];
    d->KH = w->shape[2];
    d->KW = w->shape[3];
    int64_t hh = d->H + 2 * (int64_t)pad - d->KH, ww = d->W + 2 * (int64_t)pad - d->KW;
    if (hh < 0 || ww < 0 || d->KH < 1 || d->KW < 1) {
        MISMATCH(what, x, w);
        return -1;
    }
    d->OH = hh / stride + 1;
    d->OW = ww / stride + 1;
    if (d->O > INT32_MAX || d->C * d->KH * d->KW > INT32_MAX || d->OH * d->OW > INT32_MAX) {
        dtf_seterr("%s: dims too large for BLAS", what);
        return -1;
    }
    return 0;
}

static int is_pointwise(const convdims *d, int stride, int pad)
{
    return d->KH == 1 && d->KW == 1 && stride == 1 && pad == 0;
}

size_t dtf_conv2d_workspace(const dtf_tensor *x, const dtf_tensor *w, int stride, int pad)
{
    convdims d;
    if (conv_dims("conv2d", &d, x, w, stride, pad) < 0)
        return 0;
    if (is_pointwise(&d, stride, pad))
        return 0;
    return (size_t)(d.C * d.KH * d.KW * d.OH * d.OW);
}

static int need_contig(const char *what, const char *name, const dtf_tensor *t)
{
    if (!dtf_is_contiguous(t)) {
        char b[96];
        dtf_seterr("%s: %s (%s) must be contiguous", what, name, sh(t, b));
        return -1;
    }
    return 0;
}

static int need_shape(const char *what, const char *name, const dtf_tensor *t,
                      int ndim, const int64_t *shape)
{
    dtf_tensor e;
    e.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e.shape[i] = shape[i];
    if (!dtf_same_shape(t, &e)) {
        shapes2 s = sh2(t, &e);
        dtf_seterr("%s: %s (%s) and expected (%s) do not match", what, name, s.a, s.b);
        return -1;
    }
    return need_contig(what, name, t);
}

/* col (C*KH*KW, OH*OW) from one image x (C,H,W). */
static void im2col(float *col, const float *x, const convdims *d, int stride, int pad)
{
    int64_t OH = d->OH, OW = d->OW, H = d->H, W = d->W;
    for (int64_t c = 0; c < d->C; c++)
        for (int64_t kh = 0; kh < d->KH; kh++)
            for (int64_t kw = 0; kw < d->KW; kw++) {
                const float *xc = x + c * H * W;
                for (int64_t oh = 0; oh < OH; oh++) {
                    int64_t ih = oh * stride - pad + kh;
                    float *o = col + oh * OW;
                    if (ih < 0 || ih >= H) {
                        memset(o, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    const float *xr = xc + ih * W;
                    if (stride == 1) {
                        /* iw = ow - pad + kw, valid for ow in [lo, hi) */
                        int64_t lo = pad - kw, hi = W + pad - kw;
                        if (lo < 0) lo = 0;
                        if (hi > OW) hi = OW;
                        if (lo > OW) lo = OW;
                        if (hi < lo) hi = lo;
                        for (int64_t ow = 0; ow < lo; ow++)
                            o[ow] = 0;
                        if (hi > lo)
                            memcpy(o + lo, xr + lo - pad + kw, (size_t)(hi - lo) * sizeof(float));
                        for (int64_t ow = hi; ow < OW; ow++)
                            o[ow] = 0;
                    } else {
                        for (int64_t ow = 0; ow < OW; ow++) {
                            int64_t iw = ow * stride - pad + kw;
                            o[ow] = iw >= 0 && iw < W ? xr[iw] : 0;
                        }
                    }
                }
                col += OH * OW;
            }
}

/* x (C,H,W) += col (C*KH*KW, OH*OW) scattered back. */
static void col2im(float *x, const float *col, const convdims *d, int stride, int pad)
{
    int64_t OH = d->OH, OW = d->OW, H = d->H, W = d->W;
    for (int64_t c = 0; c < d->C; c++)
        for (int64_t kh = 0; kh < d->KH; kh++)
            for (int64_t kw = 0; kw < d->KW; kw++) {
                float *xc = x + c * H * W;
                for (int64_t oh = 0; oh < OH; oh++) {
                    int64_t ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H)
                        continue;
                    const float *o = col + oh * OW;
                    float *xr = xc + ih * W;
                    if (stride == 1) {
                        int64_t lo = pad - kw, hi = W + pad - kw;
                        if (lo < 0) lo = 0;
                        if (hi > OW) hi = OW;
                        int64_t sh = kw - pad; /* iw = ow + sh */
                        for (int64_t ow = lo; ow < hi; ow++)
                            xr[ow + sh] += o[ow];
                        continue;
                    }
                    for (int64_t ow = 0; ow < OW; ow++) {
                        int64_t iw = ow * stride - pad + kw;
                        if (iw >= 0 && iw < W)
                            xr[iw] += o[ow];
                    }
                }
                col += OH * OW;
            }
}

int dtf_conv2d(dtf_tensor *y, const dtf_tensor *x, const dtf_tensor *w,
               const dtf_tensor *b, int stride, int pad, float *ws, size_t ws_n)
{
    convdims d;
    if (conv_dims("conv2d", &d, x, w, stride, pad) < 0)
        return -1;
    int64_t ys[4] = {d.N, d.O, d.OH, d.OW};
    if (need_contig("conv2d", "x", x) < 0 || need_contig("conv2d", "w", w) < 0
        || need_shape("conv2d", "y", y, 4, ys) < 0)
        return -1;
    if (b && (b->ndim != 1 || b->shape[0] != d.O)) {
        MISMATCH("conv2d", b, w);
        return -1;
    }
    int pw = is_pointwise(&d, stride, pad);
    int64_t CKK = d.C * d.KH * d.KW, P = d.OH * d.OW;
    if (!pw && (!ws || ws_n < (size_t)(CKK * P))) {
        dtf_seterr("conv2d: workspace of %zu floats, %lld needed", ws ? ws_n : 0,
                   (long long)(CKK * P));
        return -1;
    }
    const float *wp = dtf_data(w);
    for (int64_t n = 0; n < d.N; n++) {
        const float *xn = dtf_data(x) + n * d.C * d.H * d.W;
        float *yn = dtf_data(y) + n * d.O * P;
        float beta = 0;
        if (b) {
            for (int64_t o = 0; o < d.O; o++) {
                float v = dtf_data(b)[o * b->stride[0]];
                for (int64_t i = 0; i < P; i++)
                    yn[o * P + i] = v;
            }
            beta = 1;
        }
        const float *col = xn;
        if (!pw) {
            im2col(ws, xn, &d, stride, pad);
            col = ws;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d.O, (int)P, (int)CKK,
                    1.0f, wp, (int)CKK, col, (int)P, beta, yn, (int)P);
    }
    return 0;
}

int dtf_conv2d_backward(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db,
                        const dtf_tensor *dy, const dtf_tensor *x,
                        const dtf_tensor *w, int stride, int pad,
                        float *ws, size_t ws_n)
{
    const char *what = "conv2d_backward";
    convdims d;
    if (conv_dims(what, &d, x, w, stride, pad) < 0)
        return -1;
    int64_t ys[4] = {d.N, d.O, d.OH, d.OW};
    if (need_contig(what, "x", x) < 0 || need_contig(what, "w", w) < 0
        || need_shape(what, "dy", dy, 4, ys) < 0)
        return -1;
    if (dx && need_shape(what, "dx", dx, 4, x->shape) < 0)
        return -1;
    if (dw && need_shape(what, "dw", dw, 4, w->shape) < 0)
        return -1;
    if (db && (db->ndim != 1 || db->shape[0] != d.O)) {
        MISMATCH(what, db, w);
        return -1;
    }
    int pw = is_pointwise(&d, stride, pad);
    int64_t CKK = d.C * d.KH * d.KW, P = d.OH * d.OW;
    if (!pw && (dx || dw) && (!ws || ws_n < (size_t)(CKK * P))) {
        dtf_seterr("%s: workspace of %zu floats, %lld needed", what, ws ? ws_n : 0,
                   (long long)(CKK * P));
        return -1;
    }
    const float *wp = dtf_data(w);
    for (int64_t n = 0; n < d.N; n++) {
        const float *xn = dtf_data(x) + n * d.C * d.H * d.W;
        const float *dyn = dtf_data(dy) + n * d.O * P;
        if (db) {
            float *o = dtf_data(db);
            for (int64_t c = 0; c < d.O; c++) {
                const float *r = dyn + c * P;
                float acc = 0;
                for (int64_t i = 0; i < P; i++)
                    acc += r[i];
                o[c * db->stride[0]] += acc;
            }
        }
        if (dw) {
            const float *col = xn;
            if (!pw) {
                im2col(ws, xn, &d, stride, pad);
                col = ws;
            }
            /* dw (O, CKK) += dy_n (O, P) @ col^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d.O, (int)CKK, (int)P,
                        1.0f, dyn, (int)P, col, (int)P, 1.0f, dtf_data(dw), (int)CKK);
        }
        if (dx) {
            float *dxn = dtf_data(dx) + n * d.C * d.H * d.W;
            float *col = pw ? dxn : ws;
            /* col (CKK, P) = w^T @ dy_n */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)CKK, (int)P, (int)d.O,
                        1.0f, wp, (int)CKK, dyn, (int)P, 0.0f, col, (int)P);
            if (!pw) {
                memset(dxn, 0, (size_t)(d.C * d.H * d.W) * sizeof(float));
                col2im(dxn, col, &d, stride, pad);
            }
        }
    }
    return 0;
}

/* ======================================================================
 * maxpool2d 2x2 stride 2
 * ==================================================================== */

int dtf_maxpool2d(dtf_tensor *y, dtf_tensor *idx, const dtf_tensor *x)
{
    const char *what = "maxpool2d";
    if (x->ndim != 4) {
        char b[96];
        dtf_seterr("%s: x (%s) must be (N,C,H,W)", what, sh(x, b));
        return -1;
    }
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t OH = H / 2, OW = W / 2;
    int64_t ys[4] = {N, C, OH, OW};
    if (need_contig(what, "x", x) < 0 || need_shape(what, "y", y, 4, ys) < 0
        || (idx && need_shape(what, "indices", idx, 4, ys) < 0))
        return -1;
    const float *xp = dtf_data(x);
    float *yp = dtf_data(y), *ip = idx ? dtf_data(idx) : NULL;
    for (int64_t p = 0; p < N * C; p++) {
        const float *xc = xp + p * H * W;
        float *yc = yp + p * OH * OW;
        float *ic = ip ? ip + p * OH * OW : NULL;
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *r0 = xc + 2 * oh * W, *r1 = r0 + W;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t j = 2 * ow, at = 2 * oh * W + j;
                float best = r0[j];
                if (r0[j + 1] > best) { best = r0[j + 1]; at = 2 * oh * W + j + 1; }
                if (r1[j] > best) { best = r1[j]; at = (2 * oh + 1) * W + j; }
                if (r1[j + 1] > best) { best = r1[j + 1]; at = (2 * oh + 1) * W + j + 1; }
                yc[oh * OW + ow] = best;
                if (ic)
                    ic[oh * OW + ow] = (float)at;
            }
        }
    }
    return 0;
}

int dtf_maxpool2d_backward(dtf_tensor *dx, const dtf_tensor *dy, const dtf_tensor *idx)
{
    const char *what = "maxpool2d_backward";
    if (dx->ndim != 4 || dy->ndim != 4 || dx->shape[0] != dy->shape[0]
        || dx->shape[1] != dy->shape[1] || dx->shape[2] / 2 != dy->shape[2]
        || dx->shape[3] / 2 != dy->shape[3]) {
        MISMATCH(what, dx, dy);
        return -1;
    }
    if (need_contig(what, "dx", dx) < 0 || need_shape(what, "dy", dy, 4, dy->shape) < 0
        || need_shape(what, "indices", idx, 4, dy->shape) < 0)
        return -1;
    int64_t NC = dx->shape[0] * dx->shape[1], HW = dx->shape[2] * dx->shape[3];
    int64_t P = dy->shape[2] * dy->shape[3];
    float *dxp = dtf_data(dx);
    const float *dyp = dtf_data(dy), *ip = dtf_data(idx);
    memset(dxp, 0, (size_t)(NC * HW) * sizeof(float));
    for (int64_t p = 0; p < NC; p++)
        for (int64_t i = 0; i < P; i++) {
            float f = ip[p * P + i];
            if (!(f >= 0 && f < (float)HW)) {
                dtf_seterr("%s: index %g out of range", what, (double)f);
                return -1;
            }
            dxp[p * HW + (int64_t)f] += dyp[p * P + i];
        }
    return 0;
}
