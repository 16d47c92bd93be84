/* tensor_conv: 2-d convolution (im2col + sgemm), 2x2 max-pooling, and the
 * two fused with bias and ReLU, with their backward passes, over contiguous
 * NCHW float32 tensors (tensor.h). tensor_naive.c has the direct loops
 * they are tested against. */
#include "tensor.h"
#include "tensor_impl.h"

#include <string.h>

/* ======================================================================
 * conv2d: im2col over a chunk of the batch + one sgemm per chunk
 *
 * A chunk of nc images is unfolded into col (C*KH*KW, nc*P), P = OH*OW, and
 * multiplied in one sgemm; nc is what fits CONV_CHUNK_BYTES, so col is
 * still in cache when sgemm packs it. The product (O, nc*P) lands in the
 * workspace and an epilogue writes it to the NCHW output with the bias
 * added (in the fused block: with ReLU and pooling). The backward pass runs
 * over the same chunks: col is unfolded again instead of kept for the whole
 * batch (40 MB for the CNN's second conv at batch 64), which bounds the
 * memory.
 * ==================================================================== */

/* Bytes of workspace a chunk aims at (col and the product): col must still
 * be in L2 when sgemm packs it. Measured on the CNN's blocks (2 MB of L2):
 * one image a chunk (180 KB for conv1, 680 KB for conv2) ran 20-30%
 * faster than 3 MB chunks and 2x faster than 50 MB ones; a smaller image
 * gets a few. */
#ifndef CONV_CHUNK_BYTES
#define CONV_CHUNK_BYTES ((size_t)256 << 10)
#endif

typedef struct {
    int64_t N, C, H, W, O, KH, KW, OH, OW;
    int64_t CKK, P; /* rows of col, output pixels per image */
    int stride, pad;
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
    d->CKK = d->C * d->KH * d->KW;
    d->P = d->OH * d->OW;
    d->stride = stride;
    d->pad = pad;
    if (d->O > INT32_MAX || d->CKK > INT32_MAX || d->P > INT32_MAX / 2
        || (d->CKK + d->O) * d->P > INT32_MAX) {
        dtf_seterr("%s: dims too large for BLAS", what);
        return -1;
    }
    return 0;
}

/* The zero-padded plane (H + 2 pad, W + 2 pad) the stride-1 loops use: with
 * it every row of col is one copy of OW floats, no edge cases. */
static int64_t padded_size(const convdims *d)
{
    return (d->H + 2 * d->pad) * (d->W + 2 * d->pad);
}

/* Floats of workspace per image of a chunk: its columns of col and of the
 * product (and once per call, padded_size() floats of scratch). */
static int64_t per_image(const convdims *d)
{
    return (d->CKK + d->O) * d->P;
}

/* Images per chunk: what CONV_CHUNK_BYTES holds (at least 1, at most N,
 * and no more than a product's columns can count in an int). */
static int64_t chunk_images(const convdims *d)
{
    int64_t per = per_image(d), nc = per ? (int64_t)(CONV_CHUNK_BYTES / sizeof(float)) / per : 1;
    if (nc > INT32_MAX / (d->P ? d->P : 1))
        nc = INT32_MAX / (d->P ? d->P : 1);
    if (nc > d->N)
        nc = d->N;
    return nc < 1 ? 1 : nc;
}

size_t dtf_conv2d_workspace(const dtf_tensor *x, const dtf_tensor *w, int stride, int pad)
{
    convdims d;
    if (conv_dims("conv2d", &d, x, w, stride, pad) < 0)
        return 0;
    return (size_t)(chunk_images(&d) * per_image(&d) + padded_size(&d));
}

/* The chunk the given workspace allows: chunk_images(), or fewer images if
 * ws_n is smaller; -1 with an error if not even one image fits. */
static int64_t chunk_for(const char *what, const convdims *d, const float *ws, size_t ws_n)
{
    int64_t per = per_image(d), nc = chunk_images(d), extra = padded_size(d);
    if (!ws || ws_n < (size_t)(per + extra)) {
        dtf_seterr("%s: workspace of %zu floats, %lld needed", what, ws ? ws_n : 0,
                   (long long)(nc * per + extra));
        return -1;
    }
    if ((size_t)(nc * per + extra) > ws_n)
        nc = (int64_t)((ws_n - (size_t)extra) / (size_t)per);
    return nc;
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

/* One (OH, OW) plane of col: image plane xc (H, W) seen through kernel
 * offset (kh, kw), any stride (the stride-1 case goes through the padded
 * plane below). */
static void unfold_plane(float *o, const float *xc, const convdims *d, int64_t kh, int64_t kw)
{
    int64_t OH = d->OH, OW = d->OW, H = d->H, W = d->W, s = d->stride, pad = d->pad;
    for (int64_t oh = 0; oh < OH; oh++, o += OW) {
        int64_t ih = oh * s - pad + kh;
        for (int64_t ow = 0; ow < OW; ow++) {
            int64_t iw = ow * s - pad + kw;
            o[ow] = ih >= 0 && ih < H && iw >= 0 && iw < W ? xc[ih * W + iw] : 0;
        }
    }
}

/* col (CKK, nc*P) from images x[0..nc) (C,H,W each): column j*P + p is
 * output pixel p of image j. pad is padded_size() floats of scratch. */
static void im2col(float *col, const float *x, int64_t nc, const convdims *d, float *pad)
{
    int64_t ld = nc * d->P, HW = d->H * d->W, KK = d->KH * d->KW;
    if (d->stride != 1) {
        for (int64_t c = 0; c < d->C; c++)
            for (int64_t k = 0; k < KK; k++)
                for (int64_t j = 0; j < nc; j++)
                    unfold_plane(col + (c * KK + k) * ld + j * d->P, x + (j * d->C + c) * HW, d,
                                 k / d->KW, k % d->KW);
        return;
    }
    int64_t Wp = d->W + 2 * d->pad, p = d->pad;
    for (int64_t i = 0; i < padded_size(d); i++)
        pad[i] = 0; /* the border stays 0, the interior is rewritten */
    for (int64_t j = 0; j < nc; j++)
        for (int64_t c = 0; c < d->C; c++) {
            dtf_rows_copy(pad + p * Wp + p, Wp, x + (j * d->C + c) * HW, d->W, d->H, d->W);
            float *dst = col + c * KK * ld + j * d->P;
            for (int64_t kh = 0; kh < d->KH; kh++)
                for (int64_t kw = 0; kw < d->KW; kw++, dst += ld)
                    dtf_rows_copy(dst, d->OW, pad + kh * Wp + kw, Wp, d->OH, d->OW);
        }
}

/* Images dx[0..nc) (C,H,W), overwritten with col (CKK, nc*P) folded back:
 * each element the sum of the columns that read it. */
static void col2im(float *dx, const float *col, int64_t nc, const convdims *d, float *pad)
{
    int64_t ld = nc * d->P, HW = d->H * d->W, KK = d->KH * d->KW;
    if (d->stride == 1) {
        int64_t Wp = d->W + 2 * d->pad, p = d->pad, n = padded_size(d);
        for (int64_t j = 0; j < nc; j++)
            for (int64_t c = 0; c < d->C; c++) {
                for (int64_t i = 0; i < n; i++)
                    pad[i] = 0;
                const float *src = col + c * KK * ld + j * d->P;
                for (int64_t kh = 0; kh < d->KH; kh++)
                    for (int64_t kw = 0; kw < d->KW; kw++, src += ld)
                        dtf_rows_add(pad + kh * Wp + kw, Wp, src, d->OW, d->OH, d->OW);
                dtf_rows_copy(dx + (j * d->C + c) * HW, d->W, pad + p * Wp + p, Wp, d->H, d->W);
            }
        return;
    }
    memset(dx, 0, (size_t)(nc * d->C * HW) * sizeof(float));
    for (int64_t c = 0; c < d->C; c++)
        for (int64_t kh = 0; kh < d->KH; kh++)
            for (int64_t kw = 0; kw < d->KW; kw++) {
                const float *row = col + ((c * d->KH + kh) * d->KW + kw) * ld;
                for (int64_t j = 0; j < nc; j++) {
                    float *xc = dx + (j * d->C + c) * HW;
                    const float *o = row + j * d->P;
                    for (int64_t oh = 0; oh < d->OH; oh++) {
                        int64_t ih = oh * d->stride - d->pad + kh;
                        if (ih < 0 || ih >= d->H)
                            continue;
                        for (int64_t ow = 0; ow < d->OW; ow++) {
                            int64_t iw = ow * d->stride - d->pad + kw;
                            if (iw >= 0 && iw < d->W)
                                xc[ih * d->W + iw] += o[oh * d->OW + ow];
                        }
                    }
                }
            }
}

/* prod (O, nc*P) = w (O, CKK) @ col (CKK, nc*P) */
static void gemm_forward(float *prod, const float *w, const float *col, int64_t nc,
                         const convdims *d)
{
    int ld = (int)(nc * d->P);
    dtf_sgemm(0, 0, (int)d->O, ld, (int)d->CKK, 1.0f, w, (int)d->CKK, col, ld, 0.0f, prod, ld);
}

/* The backward products of one chunk, given dprod (O, nc*P): dw += dprod
 * @ col^T, then dx = fold(w^T @ dprod). col is the workspace, refilled. */
static void gemm_backward(float *dx, float *dw, const float *dprod, float *col, float *pad,
                          const float *x, const float *w, int64_t nc, const convdims *d)
{
    int ld = (int)(nc * d->P);
    if (dw) {
        im2col(col, x, nc, d, pad);
        dtf_sgemm(0, 1, (int)d->O, (int)d->CKK, ld, 1.0f, dprod, ld, col, ld, 1.0f, dw,
                  (int)d->CKK);
    }
    if (dx) {
        dtf_sgemm(1, 0, (int)d->CKK, ld, (int)d->O, 1.0f, w, (int)d->CKK, dprod, ld, 0.0f, col,
                  ld);
        col2im(dx, col, nc, d, pad);
    }
}

/* The checks conv2d and its fused block share: contiguous x and w, a bias
 * (O) if given, output shape. */
static int check_forward(const char *what, convdims *d, const dtf_tensor *y, const dtf_tensor *x,
                         const dtf_tensor *w, const dtf_tensor *b, int stride, int pad, int pooled)
{
    if (conv_dims(what, d, x, w, stride, pad) < 0)
        return -1;
    int64_t ys[4] = {d->N, d->O, pooled ? d->OH / 2 : d->OH, pooled ? d->OW / 2 : d->OW};
    if (need_contig(what, "x", x) < 0 || need_contig(what, "w", w) < 0
        || need_shape(what, "y", y, 4, ys) < 0)
        return -1;
    if (b && (b->ndim != 1 || b->shape[0] != d->O)) {
        MISMATCH(what, b, w);
        return -1;
    }
    return 0;
}

int dtf_conv2d(dtf_tensor *y, const dtf_tensor *x, const dtf_tensor *w,
               const dtf_tensor *b, int stride, int pad, float *ws, size_t ws_n)
{
    convdims d;
    if (check_forward("conv2d", &d, y, x, w, b, stride, pad, 0) < 0)
        return -1;
    int64_t nc = chunk_for("conv2d", &d, ws, ws_n);
    if (nc < 0)
        return -1;
    float *col = ws, *prod = ws + nc * d.CKK * d.P, *scratch = prod + nc * d.O * d.P;
    int64_t CHW = d.C * d.H * d.W, P = d.P;
    for (int64_t n0 = 0; n0 < d.N; n0 += nc) {
        int64_t m = d.N - n0 < nc ? d.N - n0 : nc, ld = m * P;
        im2col(col, dtf_data(x) + n0 * CHW, m, &d, scratch);
        gemm_forward(prod, dtf_data(w), col, m, &d);
        for (int64_t j = 0; j < m; j++)
            for (int64_t o = 0; o < d.O; o++) {
                float bias = b ? dtf_data(b)[o * b->stride[0]] : 0.0f;
                const float *src = prod + o * ld + j * P;
                float *dst = dtf_data(y) + ((n0 + j) * d.O + o) * P;
                for (int64_t i = 0; i < P; i++)
                    dst[i] = src[i] + bias;
            }
    }
    return 0;
}

/* The checks of both backward passes: dy's shape (pooled or not), dx, dw
 * and db where given. */
static int check_backward(const char *what, convdims *d, const dtf_tensor *dx,
                          const dtf_tensor *dw, const dtf_tensor *db, const dtf_tensor *dy,
                          const dtf_tensor *x, const dtf_tensor *w, int stride, int pad,
                          int pooled)
{
    if (conv_dims(what, d, x, w, stride, pad) < 0)
        return -1;
    int64_t ys[4] = {d->N, d->O, pooled ? d->OH / 2 : d->OH, pooled ? d->OW / 2 : d->OW};
    if (need_contig(what, "x", x) < 0 || need_contig(what, "w", w) < 0
        || need_shape(what, "dy", dy, 4, ys) < 0)
        return -1;
    if (dx && need_shape(what, "dx", dx, 4, x->shape) < 0)
        return -1;
    if (dw && need_shape(what, "dw", dw, 4, w->shape) < 0)
        return -1;
    if (db && (db->ndim != 1 || db->shape[0] != d->O)) {
        MISMATCH(what, db, w);
        return -1;
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
    if (check_backward(what, &d, dx, dw, db, dy, x, w, stride, pad, 0) < 0)
        return -1;
    int64_t nc = chunk_for(what, &d, ws, ws_n);
    if (nc < 0)
        return -1;
    float *col = ws, *dprod = ws + nc * d.CKK * d.P, *scratch = dprod + nc * d.O * d.P;
    int64_t CHW = d.C * d.H * d.W, P = d.P;
    for (int64_t n0 = 0; n0 < d.N; n0 += nc) {
        int64_t m = d.N - n0 < nc ? d.N - n0 : nc, ld = m * P;
        /* dprod (O, m*P) gathered from dy's NCHW chunk, db summed on the way */
        for (int64_t o = 0; o < d.O; o++) {
            float acc = 0;
            for (int64_t j = 0; j < m; j++) {
                const float *src = dtf_data(dy) + ((n0 + j) * d.O + o) * P;
                float *dst = dprod + o * ld + j * P;
                for (int64_t i = 0; i < P; i++) {
                    dst[i] = src[i];
                    acc += src[i];
                }
            }
            if (db)
                dtf_data(db)[o * db->stride[0]] += acc;
        }
        gemm_backward(dx ? dtf_data(dx) + n0 * CHW : NULL, dw ? dtf_data(dw) : NULL, dprod, col,
                      scratch, dtf_data(x) + n0 * CHW, dtf_data(w), m, &d);
    }
    return 0;
}

/* ======================================================================
 * The fused block: conv2d, bias, ReLU, 2x2 max-pooling
 *
 * relu(max(window)) = max(relu(window)), so the product is pooled straight
 * from the workspace: the full-size activation never exists in memory,
 * only the pooled output and each window's argmax. Backward builds the
 * product's gradient from those (the argmax gets dy where the output is
 * positive, every other element 0) in one write.
 * ==================================================================== */

int dtf_conv2d_relu_pool(dtf_tensor *y, dtf_tensor *idx, const dtf_tensor *x,
                         const dtf_tensor *w, const dtf_tensor *b, int stride, int pad,
                         float *ws, size_t ws_n)
{
    const char *what = "conv2d_relu_pool";
    convdims d;
    if (check_forward(what, &d, y, x, w, b, stride, pad, 1) < 0
        || (idx && need_shape(what, "indices", idx, 4, y->shape) < 0))
        return -1;
    int64_t nc = chunk_for(what, &d, ws, ws_n);
    if (nc < 0)
        return -1;
    float *col = ws, *prod = ws + nc * d.CKK * d.P, *scratch = prod + nc * d.O * d.P;
    int64_t CHW = d.C * d.H * d.W, P = d.P, PP = (d.OH / 2) * (d.OW / 2);
    for (int64_t n0 = 0; n0 < d.N; n0 += nc) {
        int64_t m = d.N - n0 < nc ? d.N - n0 : nc, ld = m * P;
        im2col(col, dtf_data(x) + n0 * CHW, m, &d, scratch);
        gemm_forward(prod, dtf_data(w), col, m, &d);
        for (int64_t j = 0; j < m; j++)
            for (int64_t o = 0; o < d.O; o++) {
                int64_t k = ((n0 + j) * d.O + o) * PP;
                dtf_pool2x2_relu(dtf_data(y) + k, idx ? dtf_data(idx) + k : NULL,
                                 prod + o * ld + j * P, d.OH, d.OW,
                                 b ? dtf_data(b)[o * b->stride[0]] : 0.0f);
            }
    }
    return 0;
}

int dtf_conv2d_relu_pool_backward(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db,
                                  const dtf_tensor *dy, const dtf_tensor *y,
                                  const dtf_tensor *idx, const dtf_tensor *x,
                                  const dtf_tensor *w, int stride, int pad, float *ws,
                                  size_t ws_n)
{
    const char *what = "conv2d_relu_pool_backward";
    convdims d;
    if (check_backward(what, &d, dx, dw, db, dy, x, w, stride, pad, 1) < 0
        || need_shape(what, "y", y, 4, dy->shape) < 0
        || need_shape(what, "indices", idx, 4, dy->shape) < 0)
        return -1;
    int64_t nc = chunk_for(what, &d, ws, ws_n);
    if (nc < 0)
        return -1;
    float *col = ws, *dprod = ws + nc * d.CKK * d.P, *scratch = dprod + nc * d.O * d.P;
    int64_t CHW = d.C * d.H * d.W, P = d.P, PP = (d.OH / 2) * (d.OW / 2);
    for (int64_t n0 = 0; n0 < d.N; n0 += nc) {
        int64_t m = d.N - n0 < nc ? d.N - n0 : nc, ld = m * P;
        for (int64_t o = 0; o < d.O; o++) {
            float acc = 0;
            for (int64_t j = 0; j < m; j++) {
                int64_t k = ((n0 + j) * d.O + o) * PP;
                acc += dtf_unpool2x2_relu(dprod + o * ld + j * P, dtf_data(dy) + k,
                                          dtf_data(y) + k, dtf_data(idx) + k, d.OH, d.OW);
            }
            if (db)
                dtf_data(db)[o * db->stride[0]] += acc;
        }
        gemm_backward(dx ? dtf_data(dx) + n0 * CHW : NULL, dw ? dtf_data(dw) : NULL, dprod, col,
                      scratch, dtf_data(x) + n0 * CHW, dtf_data(w), m, &d);
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
