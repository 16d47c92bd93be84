/* tensor: float32 tensors over refcounted storage, and their kernels.
 *
 * Kernels have a fast path for the layouts training uses (contiguous, or a
 * row vector broadcast) and a strided path for everything else; neither
 * allocates, except matmul when an operand fits no BLAS layout (a view that
 * is neither row- nor column-major) and has to be copied. */
#include "tensor.h"
#include "tensor_impl.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================
 * Storage
 * ==================================================================== */

/* The header is padded so that inline data starts 64 bytes in. */
#define STORAGE_HDR 64

dtf_storage *dtf_storage_new(size_t n)
{
    if (n > (SIZE_MAX - STORAGE_HDR) / sizeof(float)) {
        dtf_seterr("storage: %zu floats is too many", n);
        return NULL;
    }
    /* calloc: large blocks come from mmap already zeroed, so this is cheap. */
    char *mem = calloc(1, STORAGE_HDR + n * sizeof(float));
    if (!mem) {
        dtf_seterr("storage: out of memory for %zu floats", n);
        return NULL;
    }
    dtf_storage *s = (dtf_storage *)mem;
    s->data = (float *)(mem + STORAGE_HDR);
    s->size = n;
    s->refs = 1;
    s->owns = 1;
    return s;
}

dtf_storage *dtf_storage_wrap(float *data, size_t n, int owns)
{
    dtf_storage *s = malloc(sizeof *s);
    if (!s) {
        dtf_seterr("storage: out of memory");
        return NULL;
    }
    s->data = data;
    s->size = n;
    s->refs = 1;
    s->owns = owns ? 1 : 0;
    return s;
}

void dtf_storage_retain(dtf_storage *s)
{
    if (s)
        s->refs++;
}

void dtf_storage_release(dtf_storage *s)
{
    if (!s || --s->refs > 0)
        return;
    /* Inline data lives in the same block as the header. */
    if (s->owns && s->data != (float *)((char *)s + STORAGE_HDR))
        free(s->data);
    free(s);
}

/* ======================================================================
 * Headers
 * ==================================================================== */

static void set_contiguous_strides(dtf_tensor *t)
{
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        t->stride[d] = s;
        s *= t->shape[d];
    }
}

static int check_shape(int ndim, const int64_t *shape, int64_t *numel)
{
    if (ndim < 0 || ndim > DTF_MAXDIM) {
        dtf_seterr("tensor: %d dims (at most %d)", ndim, DTF_MAXDIM);
        return -1;
    }
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) {
            dtf_seterr("tensor: negative size %lld in dim %d", (long long)shape[d], d + 1);
            return -1;
        }
        if (shape[d] && n > INT64_MAX / 4 / shape[d]) {
            dtf_seterr("tensor: too many elements");
            return -1;
        }
        n *= shape[d];
    }
    *numel = n;
    return 0;
}

int dtf_tensor_set(dtf_tensor *t, dtf_storage *st, size_t off, int ndim,
                   const int64_t *shape)
{
    int64_t n;
    if (check_shape(ndim, shape, &n) < 0)
        return -1;
    t->st = st;
    t->off = off;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    set_contiguous_strides(t);
    return 0;
}

int dtf_tensor_init(dtf_tensor *t, int ndim, const int64_t *shape)
{
    int64_t n;
    t->st = NULL;
    if (check_shape(ndim, shape, &n) < 0)
        return -1;
    dtf_storage *st = dtf_storage_new((size_t)n);
    if (!st)
        return -1;
    return dtf_tensor_set(t, st, 0, ndim, shape);
}

void dtf_tensor_release(dtf_tensor *t)
{
    if (t->st) {
        dtf_storage *s = t->st;
        t->st = NULL;
        dtf_storage_release(s);
    }
}

int64_t dtf_numel(const dtf_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

int dtf_is_contiguous(const dtf_tensor *t)
{
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] == 0)
            return 1;
        if (t->shape[d] != 1 && t->stride[d] != s)
            return 0;
        s *= t->shape[d];
    }
    return 1;
}

int dtf_same_shape(const dtf_tensor *a, const dtf_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

const char *dtf_shape_str(const dtf_tensor *t, char *buf, size_t n)
{
    if (t->ndim == 0) {
        snprintf(buf, n, "scalar");
        return buf;
    }
    size_t k = 0;
    buf[0] = 0;
    for (int d = 0; d < t->ndim && k < n; d++) {
        int w = snprintf(buf + k, n - k, d ? "x%lld" : "%lld", (long long)t->shape[d]);
        if (w < 0)
            break;
        k += (size_t)w;
    }
    return buf;
}

int dtf_check_bounds(const dtf_tensor *t)
{
    if (!t->st) {
        dtf_seterr("tensor: released");
        return -1;
    }
    if (dtf_numel(t) == 0)
        return 0;
    uint64_t last = t->off;
    for (int d = 0; d < t->ndim; d++) {
        if (t->stride[d] < 0) {
            dtf_seterr("tensor: negative stride");
            return -1;
        }
        last += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->stride[d];
    }
    if (last >= t->st->size) {
        dtf_seterr("tensor: view reaches element %llu of a storage of %zu",
                   (unsigned long long)last, t->st->size);
        return -1;
    }
    return 0;
}

int dtf_view(dtf_tensor *out, const dtf_tensor *t, int ndim, const int64_t *shape)
{
    char b1[96];
    if (ndim < 0 || ndim > DTF_MAXDIM) {
        dtf_seterr("view: %d dims (at most %d)", ndim, DTF_MAXDIM);
        return -1;
    }
    int64_t n = dtf_numel(t), known = 1;
    int infer = -1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == -1) {
            if (infer >= 0) {
                dtf_seterr("view: only one size may be -1");
                return -1;
            }
            infer = d;
        } else if (shape[d] < 0) {
            dtf_seterr("view: negative size %lld", (long long)shape[d]);
            return -1;
        } else {
            known *= shape[d];
        }
    }
    int64_t s[DTF_MAXDIM];
    for (int d = 0; d < ndim; d++)
        s[d] = shape[d];
    if (infer >= 0) {
        if (known == 0 || n % known) {
            dtf_seterr("view: (%s) cannot be viewed with %d dims and a -1", sh(t, b1), ndim);
            return -1;
        }
        s[infer] = n / known;
        known *= s[infer];
    }
    if (known != n) {
        dtf_tensor tmp;
        tmp.ndim = ndim;
        for (int d = 0; d < ndim; d++)
            tmp.shape[d] = s[d];
        MISMATCH("view", t, &tmp);
        return -1;
    }
    if (!dtf_is_contiguous(t)) {
        dtf_seterr("view: tensor (%s) is not contiguous", sh(t, b1));
        return -1;
    }
    return dtf_tensor_set(out, t->st, t->off, ndim, s);
}

static int check_dim(const char *what, const dtf_tensor *t, int dim)
{
    if (dim < 0 || dim >= t->ndim) {
        char b[96];
        dtf_seterr("%s: dim %d out of range for (%s)", what, dim + 1, sh(t, b));
        return -1;
    }
    return 0;
}

int dtf_narrow(dtf_tensor *out, const dtf_tensor *t, int dim, int64_t start, int64_t len)
{
    if (check_dim("narrow", t, dim) < 0)
        return -1;
    if (start < 0 || len < 0 || start + len > t->shape[dim]) {
        char b[96];
        dtf_seterr("narrow: [%lld, %lld) out of range 1..%lld of dim %d of (%s)",
                   (long long)start + 1, (long long)(start + len) + 1,
                   (long long)t->shape[dim], dim + 1, sh(t, b));
        return -1;
    }
    if (out != t)
        *out = *t;
    out->off += (size_t)(start * t->stride[dim]);
    out->shape[dim] = len;
    return 0;
}

int dtf_select(dtf_tensor *out, const dtf_tensor *t, int dim, int64_t i)
{
    if (check_dim("select", t, dim) < 0)
        return -1;
    if (i < 0 || i >= t->shape[dim]) {
        char b[96];
        dtf_seterr("select: index %lld out of range 1..%lld of dim %d of (%s)",
                   (long long)i + 1, (long long)t->shape[dim], dim + 1, sh(t, b));
        return -1;
    }
    dtf_tensor r = *t;
    r.off += (size_t)(i * t->stride[dim]);
    for (int d = dim; d < t->ndim - 1; d++) {
        r.shape[d] = t->shape[d + 1];
        r.stride[d] = t->stride[d + 1];
    }
    r.ndim--;
    *out = r;
    return 0;
}

int dtf_transpose(dtf_tensor *out, const dtf_tensor *t, int d1, int d2)
{
    if (check_dim("transpose", t, d1) < 0 || check_dim("transpose", t, d2) < 0)
        return -1;
    dtf_tensor r = *t;
    r.shape[d1] = t->shape[d2];
    r.stride[d1] = t->stride[d2];
    r.shape[d2] = t->shape[d1];
    r.stride[d2] = t->stride[d1];
    *out = r;
    return 0;
}

int dtf_expand_row(dtf_tensor *out, const dtf_tensor *row, int ndim, const int64_t *shape)
{
    if (row->ndim != 1 || ndim < 1 || ndim > DTF_MAXDIM || shape[ndim - 1] != row->shape[0]) {
        char b[96];
        dtf_tensor tmp;
        tmp.ndim = ndim < 0 ? 0 : ndim > DTF_MAXDIM ? DTF_MAXDIM : ndim;
        for (int d = 0; d < tmp.ndim; d++)
            tmp.shape[d] = shape[d];
        dtf_seterr("expand: row (%s) does not match (%s)", sh(row, b),
                   dtf_shape_str(&tmp, (char[96]){0}, 96));
        return -1;
    }
    dtf_tensor r = *row;
    r.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        r.shape[d] = shape[d];
        r.stride[d] = 0;
    }
    r.stride[ndim - 1] = row->stride[0];
    *out = r;
    return 0;
}

float *dtf_at(const dtf_tensor *t, const int64_t *idx)
{
    size_t o = t->off;
    for (int d = 0; d < t->ndim; d++)
        o += (size_t)(idx[d] * t->stride[d]);
    return t->st->data + o;
}

/* ======================================================================
 * Iteration
 *
 * Up to three operands of one shape, each with its own strides. Size-1 dims
 * are dropped and dims that are contiguous for every operand are merged, so
 * contiguous operands become one row and a row-vector broadcast two dims.
 * The callback gets one row at a time (the innermost dim).
 * ==================================================================== */

typedef struct {
    int nd, nops;
    int64_t numel;
    int64_t shape[DTF_MAXDIM];
    int64_t st[3][DTF_MAXDIM];
} iter;

typedef void (*row_fn)(void *ctx, float *const *p, const int64_t *s, int64_t n);

static void iter_init(iter *it, int ndim, const int64_t *shape, int nops,
                      const int64_t *const *strides)
{
    it->nops = nops;
    it->nd = 0;
    it->numel = 1;
    for (int d = 0; d < ndim; d++) {
        it->numel *= shape[d];
        if (shape[d] == 1)
            continue;
        int n = it->nd;
        int merge = n > 0;
        for (int k = 0; k < nops && merge; k++)
            merge = it->st[k][n - 1] == strides[k][d] * shape[d];
        if (merge) {
            it->shape[n - 1] *= shape[d];
            for (int k = 0; k < nops; k++)
                it->st[k][n - 1] = strides[k][d];
        } else {
            it->shape[n] = shape[d];
            for (int k = 0; k < nops; k++)
                it->st[k][n] = strides[k][d];
            it->nd++;
        }
    }
    if (it->nd == 0) {
        it->nd = 1;
        it->shape[0] = 1;
        for (int k = 0; k < nops; k++)
            it->st[k][0] = 0;
    }
}

static void iter_run(const iter *it, float *const *base, row_fn fn, void *ctx)
{
    if (it->numel == 0)
        return;
    int nd = it->nd, nops = it->nops;
    int64_t n = it->shape[nd - 1];
    int64_t s[3] = {0, 0, 0};
    for (int k = 0; k < nops; k++)
        s[k] = it->st[k][nd - 1];
    float *p[3] = {NULL, NULL, NULL};
    for (int k = 0; k < nops; k++)
        p[k] = base[k];
    int64_t idx[DTF_MAXDIM] = {0};
    int64_t rows = it->numel / n;
    for (int64_t r = 0; r < rows; r++) {
        fn(ctx, p, s, n);
        for (int d = nd - 2; d >= 0; d--) {
            idx[d]++;
            for (int k = 0; k < nops; k++)
                p[k] += it->st[k][d];
            if (idx[d] < it->shape[d])
                break;
            for (int k = 0; k < nops; k++)
                p[k] -= it->st[k][d] * it->shape[d];
            idx[d] = 0;
        }
    }
}

/* A cursor over one tensor in logical order, for operands of different
 * shapes (copy). */
typedef struct {
    const dtf_tensor *t;
    int64_t idx[DTF_MAXDIM];
    size_t off;
} cursor;

static void cur_init(cursor *c, const dtf_tensor *t)
{
    c->t = t;
    memset(c->idx, 0, sizeof c->idx);
    c->off = t->off;
}

static void cur_next(cursor *c)
{
    const dtf_tensor *t = c->t;
    for (int d = t->ndim - 1; d >= 0; d--) {
        c->idx[d]++;
        c->off += (size_t)t->stride[d];
        if (c->idx[d] < t->shape[d])
            return;
        c->off -= (size_t)(t->stride[d] * t->shape[d]);
        c->idx[d] = 0;
    }
}

/* ======================================================================
 * Copy, fill, random fills, hash
 * ==================================================================== */

static void copy_row(void *ctx, float *const *p, const int64_t *s, int64_t n)
{
    (void)ctx;
    float *o = p[0];
    const float *a = p[1];
    if (s[0] == 1 && s[1] == 1)
        memmove(o, a, (size_t)n * sizeof(float));
    else
        for (int64_t i = 0; i < n; i++)
            o[i * s[0]] = a[i * s[1]];
}

int dtf_copy(dtf_tensor *dst, const dtf_tensor *src)
{
    int64_t n = dtf_numel(dst);
    if (n != dtf_numel(src)) {
        MISMATCH("copy", dst, src);
        return -1;
    }
    if (n == 0)
        return 0;
    if (dtf_is_contiguous(dst) && dtf_is_contiguous(src)) {
        memmove(dtf_data(dst), dtf_data(src), (size_t)n * sizeof(float));
        return 0;
    }
    if (dtf_same_shape(dst, src)) {
        iter it;
        const int64_t *st[2] = {dst->stride, src->stride};
        iter_init(&it, dst->ndim, dst->shape, 2, st);
        float *base[2] = {dtf_data(dst), dtf_data(src)};
        iter_run(&it, base, copy_row, NULL);
        return 0;
    }
    cursor cd, cs;
    cur_init(&cd, dst);
    cur_init(&cs, src);
    float *d = dst->st->data;
    const float *s = src->st->data;
    for (int64_t i = 0; i < n; i++) {
        d[cd.off] = s[cs.off];
        cur_next(&cd);
        cur_next(&cs);
    }
    return 0;
}

static void fill_row(void *ctx, float *const *p, const int64_t *s, int64_t n)
{
    float v = *(const float *)ctx;
    float *o = p[0];
    if (s[0] == 1)
        for (int64_t i = 0; i < n; i++)
            o[i] = v;
    else
        for (int64_t i = 0; i < n; i++)
            o[i * s[0]] = v;
}

static void for_each1(dtf_tensor *t, row_fn fn, void *ctx)
{
    iter it;
    const int64_t *st[1] = {t->stride};
    iter_init(&it, t->ndim, t->shape, 1, st);
    float *base[1] = {dtf_data(t)};
    iter_run(&it, base, fn, ctx);
}

void dtf_fill(dtf_tensor *t, float v)
{
    if (v == 0 && !signbit(v) && dtf_is_contiguous(t)) {
        memset(dtf_data(t), 0, (size_t)dtf_numel(t) * sizeof(float));
        return;
    }
    for_each1(t, fill_row, &v);
}

struct rngctx { dtf_rng *r; double a, b; int normal; };

static void rand_row(void *ctx, float *const *p, const int64_t *s, int64_t n)
{
    struct rngctx *c = ctx;
    float *o = p[0];
    for (int64_t i = 0; i < n; i++) {
        double u = c->normal ? dtf_rng_normal(c->r) : dtf_rng_uniform(c->r);
        o[i * s[0]] = (float)(c->a + c->b * u);
    }
}

void dtf_fill_normal(dtf_tensor *t, dtf_rng *r, float mean, float std)
{
    struct rngctx c = {r, mean, std, 1};
    for_each1(t, rand_row, &c);
}

void dtf_fill_uniform(dtf_tensor *t, dtf_rng *r, float lo, float hi)
{
    struct rngctx c = {r, lo, (double)hi - lo, 0};
    for_each1(t, rand_row, &c);
}

uint64_t dtf_tensor_hash(const dtf_tensor *t, uint64_t seed)
{
    int64_t n = dtf_numel(t);
    if (n == 0)
        return seed;
    if (dtf_is_contiguous(t))
        return dtf_fnv1a(seed, dtf_data(t), (size_t)n * sizeof(float));
    cursor c;
    cur_init(&c, t);
    for (int64_t i = 0; i < n; i++) {
        seed = dtf_fnv1a(seed, t->st->data + c.off, sizeof(float));
        cur_next(&c);
    }
    return seed;
}

/* ======================================================================
 * matmul
 * ==================================================================== */

/* How sgemm (row-major) can read t (r,c) in place: NoTrans with element
 * (i,j) at i*ld + j, or Trans with element (i,j) at i + j*ld. */
static int gemm_layout(const dtf_tensor *t, CBLAS_TRANSPOSE *tr, int64_t *ld)
{
    int64_t r = t->shape[0], c = t->shape[1];
    int64_t s0 = t->stride[0], s1 = t->stride[1];
    int64_t cmax = c > 1 ? c : 1, rmax = r > 1 ? r : 1;
    if ((c <= 1 || s1 == 1) && (r <= 1 || s0 >= cmax)) {
        *tr = CblasNoTrans;
        *ld = r <= 1 ? cmax : s0;
        return 1;
    }
    if ((r <= 1 || s0 == 1) && (c <= 1 || s1 >= rmax)) {
        *tr = CblasTrans;
        *ld = c <= 1 ? rmax : s1;
        return 1;
    }
    return 0;
}

static CBLAS_TRANSPOSE flip(CBLAS_TRANSPOSE t)
{
    return t == CblasNoTrans ? CblasTrans : CblasNoTrans;
}

/* A contiguous copy of t into *tmp (which the caller releases). */
static int contiguous_copy(dtf_tensor *tmp, const dtf_tensor *t)
{
    if (dtf_tensor_init(tmp, t->ndim, t->shape) < 0)
        return -1;
    return dtf_copy(tmp, t);
}

int dtf_matmul(dtf_tensor *c, const dtf_tensor *a, const dtf_tensor *b,
               float alpha, float beta)
{
    if (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[0]) {
        MISMATCH("matmul", a, b);
        return -1;
    }
    int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (c->ndim != 2 || c->shape[0] != M || c->shape[1] != N) {
        char b1[96], b2[96], b3[96];
        dtf_seterr("matmul: output (%s) does not match (%s) @ (%s)", sh(c, b1), sh(a, b2), sh(b, b3));
        return -1;
    }
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) {
        dtf_seterr("matmul: dims too large for BLAS");
        return -1;
    }
    if (M == 0 || N == 0)
        return 0;
    if (K == 0) {
        if (beta == 0)
            dtf_fill(c, 0);
        else
            dtf_binary_scalar(c, c, beta, DTF_MUL);
        return 0;
    }

    dtf_tensor ta, tb, tc; /* copies, only where an operand fits no layout */
    ta.st = tb.st = tc.st = NULL;
    const dtf_tensor *A = a, *B = b;
    dtf_tensor *C = c;
    CBLAS_TRANSPOSE tra, trb, trc;
    int64_t lda, ldb, ldc;
    int rc = -1;
    if (!gemm_layout(A, &tra, &lda)) {
        if (contiguous_copy(&ta, a) < 0)
            goto done;
        A = &ta;
        gemm_layout(A, &tra, &lda);
    }
    if (!gemm_layout(B, &trb, &ldb)) {
        if (contiguous_copy(&tb, b) < 0)
            goto done;
        B = &tb;
        gemm_layout(B, &trb, &ldb);
    }
    if (!gemm_layout(C, &trc, &ldc)) {
        if (beta != 0 ? contiguous_copy(&tc, c) < 0 : dtf_tensor_init(&tc, 2, c->shape) < 0)
            goto done;
        C = &tc;
        gemm_layout(C, &trc, &ldc);
    }
    if (trc == CblasNoTrans)
        dtf_sgemm(tra == CblasTrans, trb == CblasTrans, (int)M, (int)N, (int)K, alpha,
                  dtf_data(A), (int)lda, dtf_data(B), (int)ldb, beta, dtf_data(C), (int)ldc);
    else /* C column-major: C^T = op(B)^T op(A)^T, row-major */
        dtf_sgemm(flip(trb) == CblasTrans, flip(tra) == CblasTrans, (int)N, (int)M, (int)K, alpha,
                  dtf_data(B), (int)ldb, dtf_data(A), (int)lda, beta, dtf_data(C), (int)ldc);
    if (C != &tc && A == a && B == b)
        return 0; /* the common case: nothing was copied */
    if (C == &tc)
        dtf_copy(c, &tc);
    rc = 0;
done:
    dtf_tensor_release(&ta);
    dtf_tensor_release(&tb);
    dtf_tensor_release(&tc);
    return rc;
}

/* ======================================================================
 * Linear layers: one call each way
 * ==================================================================== */

/* x (N,in), w (out,in), y (N,out) contiguous, b (out) or NULL. */
static int check_linear(const char *what, const dtf_tensor *y, const dtf_tensor *x,
                        const dtf_tensor *w, const dtf_tensor *b)
{
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1]) {
        /* the weight is (out, in): say which side is which */
        shapes2 s = sh2(x, w);
        dtf_seterr("%s: input (%s) and weight (%s, out x in) do not match", what, s.a, s.b);
        return -1;
    }
    if (y->ndim != 2 || y->shape[0] != x->shape[0] || y->shape[1] != w->shape[0]
        || !dtf_is_contiguous(y)) {
        char b1[96], b2[96], b3[96];
        dtf_seterr("%s: (%s) must be a contiguous (%lldx%lld) for (%s) and (%s)", what,
                   sh(y, b1), (long long)x->shape[0], (long long)w->shape[0], sh(x, b2),
                   sh(w, b3));
        return -1;
    }
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
        MISMATCH(what, b, w);
        return -1;
    }
    return 0;
}

int dtf_linear(dtf_tensor *y, const dtf_tensor *x, const dtf_tensor *w, const dtf_tensor *b,
               int relu)
{
    if (check_linear("linear", y, x, w, b) < 0)
        return -1;
    dtf_tensor wt;
    dtf_transpose(&wt, w, 0, 1);
    if (dtf_matmul(y, x, &wt, 1.0f, 0.0f) < 0)
        return -1;
    /* bias and ReLU in one pass over the product, while it is in cache */
    int64_t N = y->shape[0], D = y->shape[1];
    if (b && b->stride[0] != 1 && D > 1) {
        for (int64_t r = 0; r < N; r++)
            for (int64_t j = 0; j < D; j++)
                dtf_data(y)[r * D + j] += dtf_data(b)[j * b->stride[0]];
        b = NULL;
    }
    dtf_bias_relu_rows(dtf_data(y), N, D, b ? dtf_data(b) : NULL, relu);
    return 0;
}

/* dym = dy masked by y > 0 (y NULL: no mask; dym NULL: not stored) and db
 * += its column sums, in one pass over dy. */
static void mask_and_sum(float *dym, float *db, int64_t sdb, const dtf_tensor *dy,
                         const float *y)
{
    int64_t N = dy->shape[0], D = dy->shape[1], s0 = dy->stride[0], s1 = dy->stride[1];
    if (s1 == 1 && (sdb == 1 || !db)) {
        dtf_mask_sum_rows(dym, db, dtf_data(dy), s0, y, N, D);
        return;
    }
    for (int64_t r = 0; r < N; r++) {
        const float *g = dtf_data(dy) + r * s0;
        const float *yr = y ? y + r * D : NULL;
        float *o = dym ? dym + r * D : NULL;
        for (int64_t j = 0; j < D; j++) {
            float v = yr && !(yr[j] > 0) ? 0.0f : g[j * s1];
            if (o)
                o[j] = v;
            if (db)
                db[j * sdb] += v;
        }
    }
}

int dtf_linear_backward(dtf_tensor *dx, dtf_tensor *dw, dtf_tensor *db, const dtf_tensor *dy,
                        const dtf_tensor *x, const dtf_tensor *w, const dtf_tensor *y,
                        dtf_tensor *dym)
{
    const char *what = "linear_backward";
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1]) {
        MISMATCH(what, x, w);
        return -1;
    }
    if (dy->ndim != 2 || dy->shape[0] != x->shape[0] || dy->shape[1] != w->shape[0]) {
        MISMATCH(what, dy, x);
        return -1;
    }
    if (y && (!dtf_same_shape(y, dy) || !dtf_is_contiguous(y))) {
        MISMATCH(what, y, dy);
        return -1;
    }
    if (dw && !dtf_same_shape(dw, w)) {
        MISMATCH(what, dw, w);
        return -1;
    }
    if (db && (db->ndim != 1 || db->shape[0] != w->shape[0])) {
        MISMATCH(what, db, w);
        return -1;
    }
    /* The gradient of the product: dy, or dy masked by the ReLU output y
     * into dym (contiguous, dy's shape). */
    const dtf_tensor *g = dy;
    if (y) {
        if (!dym || !dtf_same_shape(dym, dy) || !dtf_is_contiguous(dym)) {
            char b1[96];
            dtf_seterr("%s: needs a contiguous (%s) workspace for the masked gradient", what,
                       sh(dy, b1));
            return -1;
        }
        g = dym;
    }
    if (y || db)
        mask_and_sum(y ? dtf_data(dym) : NULL, db ? dtf_data(db) : NULL, db ? db->stride[0] : 0,
                     dy, y ? dtf_data(y) : NULL);
    if (dw) {
        dtf_tensor gt;
        dtf_transpose(&gt, g, 0, 1);
        if (dtf_matmul(dw, &gt, x, 1.0f, 1.0f) < 0)
            return -1;
    }
    if (dx && dtf_matmul(dx, g, w, 1.0f, 0.0f) < 0)
        return -1;
    return 0;
}

/* ======================================================================
 * sgemm, and its recorder (the matmul-only bound of a training step)
 * ==================================================================== */

static struct {
    dtf_gemm_call *calls; /* NULL: not recording */
    size_t n, cap;
} rec;

void dtf_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (rec.calls) {
        if (rec.n < rec.cap)
            rec.calls[rec.n] = (dtf_gemm_call){ta, tb, M, N, K, lda, ldb, ldc, beta};
        rec.n++;
    }
}

void dtf_gemm_record(dtf_gemm_call *calls, size_t cap)
{
    rec.calls = calls;
    rec.cap = calls ? cap : 0;
    if (calls)
        rec.n = 0;
}

size_t dtf_gemm_recorded(void)
{
    return rec.n;
}

/* Floats each operand of a call spans (row-major, leading dimensions). */
static void call_sizes(const dtf_gemm_call *c, size_t *a, size_t *b, size_t *cc)
{
    *a = (size_t)(c->ta ? c->k : c->m) * (size_t)c->lda;
    *b = (size_t)(c->tb ? c->n : c->k) * (size_t)c->ldb;
    *cc = (size_t)c->m * (size_t)c->ldc;
}

size_t dtf_gemm_replay_scratch(const dtf_gemm_call *calls, size_t n)
{
    size_t a = 0, b = 0, c = 0;
    for (size_t i = 0; i < n; i++) {
        size_t x, y, z;
        call_sizes(&calls[i], &x, &y, &z);
        a = x > a ? x : a;
        b = y > b ? y : b;
        c = z > c ? z : c;
    }
    return a + b + c;
}

int dtf_gemm_replay(const dtf_gemm_call *calls, size_t n, float *scratch, size_t scratch_n)
{
    size_t need = dtf_gemm_replay_scratch(calls, n), amax = 0, bmax = 0;
    if (scratch_n < need) {
        dtf_seterr("gemm replay: scratch of %zu floats, %zu needed", scratch_n, need);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        size_t x, y, z;
        call_sizes(&calls[i], &x, &y, &z);
        amax = x > amax ? x : amax;
        bmax = y > bmax ? y : bmax;
    }
    for (size_t i = 0; i < n; i++) {
        const dtf_gemm_call *c = &calls[i];
        cblas_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans,
                    c->tb ? CblasTrans : CblasNoTrans, c->m, c->n, c->k, 1.0f, scratch, c->lda,
                    scratch + amax, c->ldb, c->beta, scratch + amax + bmax, c->ldc);
    }
    return 0;
}

void dtf_set_num_threads(int n)
{
    openblas_set_num_threads(n);
}

/* ======================================================================
 * Elementwise
 * ==================================================================== */

struct binctx { dtf_binop op; float alpha; };

/* One row of o = a OP b with fast loops for contiguous rows and a scalar
 * (stride 0) b. */
#define BIN_LOOPS(EXPR)                                                    \
    do {                                                                   \
        if (so == 1 && sa == 1 && sb == 1) {                               \
            for (int64_t i = 0; i < n; i++) {                              \
                float x = a[i], y = b[i];                                  \
                o[i] = (EXPR);                                             \
            }                                                              \
        } else if (so == 1 && sa == 1 && sb == 0) {                        \
            float y = b[0];                                                \
            for (int64_t i = 0; i < n; i++) {                              \
                float x = a[i];                                            \
                o[i] = (EXPR);                                             \
            }                                                              \
        } else {                                                           \
            for (int64_t i = 0; i < n; i++) {                              \
                float x = a[i * sa], y = b[i * sb];                        \
                o[i * so] = (EXPR);                                        \
            }                                                              \
        }                                                                  \
    } while (0)

static void bin_row(void *ctx, float *const *p, const int64_t *s, int64_t n)
{
    const struct binctx *c = ctx;
    float *o = p[0];
    const float *a = p[1], *b = p[2];
    int64_t so = s[0], sa = s[1], sb = s[2];
    float al = c->alpha;
    switch (c->op) {
    case DTF_ADD:
        if (al == 1)
            BIN_LOOPS(x + y);
        else
            BIN_LOOPS(x + al * y);
        break;
    case DTF_SUB:
        if (al == 1)
            BIN_LOOPS(x - y);
        else
            BIN_LOOPS(x - al * y);
        break;
    case DTF_MUL: BIN_LOOPS(x * y); break;
    case DTF_DIV: BIN_LOOPS(x / y); break;
    case DTF_RSUB: BIN_LOOPS(y - x); break;
    case DTF_RDIV: BIN_LOOPS(y / x); break;
    }
}

static int is_row_of(const dtf_tensor *row, const dtf_tensor *full)
{
    return row->ndim == 1 && full->ndim > 1
        && row->shape[0] == full->shape[full->ndim - 1];
}

int dtf_binary(dtf_tensor *out, const dtf_tensor *a, const dtf_tensor *b,
               dtf_binop op, float alpha)
{
    static const char *names[] = {"add", "sub", "mul", "div", "rsub", "rdiv"};
    if ((unsigned)op > DTF_DIV) {
        dtf_seterr("binary: bad op %d", (int)op);
        return -1;
    }
    dtf_tensor ea, eb;
    const dtf_tensor *full;
    if (dtf_same_shape(a, b)) {
        full = a;
        ea = *a;
        eb = *b;
    } else if (is_row_of(b, a)) {
        full = a;
        ea = *a;
        dtf_expand_row(&eb, b, a->ndim, a->shape);
    } else if (is_row_of(a, b)) {
        full = b;
        eb = *b;
        dtf_expand_row(&ea, a, b->ndim, b->shape);
    } else {
        MISMATCH(names[op], a, b);
        return -1;
    }
    if (!dtf_same_shape(out, full)) {
        char b1[96];
        shapes2 s = sh2(a, b);
        dtf_seterr("%s: output (%s) does not match (%s) and (%s)", names[op], sh(out, b1), s.a, s.b);
        return -1;
    }
    struct binctx c = {op, alpha};
    iter it;
    const int64_t *st[3] = {out->stride, ea.stride, eb.stride};
    iter_init(&it, out->ndim, out->shape, 3, st);
    float *base[3] = {dtf_data(out), dtf_data(&ea), dtf_data(&eb)};
    iter_run(&it, base, bin_row, &c);
    return 0;
}

int dtf_binary_scalar(dtf_tensor *out, const dtf_tensor *a, float s, dtf_binop op)
{
    if ((unsigned)op > DTF_RDIV) {
        dtf_seterr("binary: bad op %d", (int)op);
        return -1;
    }
    if (!dtf_same_shape(out, a)) {
        MISMATCH("scalar op", out, a);
        return -1;
    }
    struct binctx c = {op, 1.0f};
    int64_t zero[DTF_MAXDIM] = {0};
    iter it;
    const int64_t *st[3] = {out->stride, a->stride, zero};
    iter_init(&it, out->ndim, out->shape, 3, st);
    float *base[3] = {dtf_data(out), dtf_data(a), &s};
    iter_run(&it, base, bin_row, &c);
    return 0;
}

/* ======================================================================
 * Reductions
 * ==================================================================== */

struct redctx { double acc; double max; int64_t arg, pos; };

static void sum_row(void *ctx, float *const *p, const int64_t *s, int64_t n)
{
    struct redctx *c = ctx;
    const float *a = p[0];
    /* Partial sums in float lanes, folded into double per row. */
    double acc = 0;
    if (s[0] == 1) {
        float part[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++)
                part[k] += a[i + k];
        for (int k = 0; k < 8; k++)
            acc += part[k];
        for (; i < n; i++)
            acc += a[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            acc += a[i * s[0]];
    }
    c->acc += acc;
}

double dtf_sum_all(const dtf_tensor *t)
{
    struct redctx c = {0, 0, 0, 0};
    for_each1((dtf_tensor *)t, sum_row, &c);
    return c.acc;
}

static void max_row(void *ctx, float *const *p, const int64_t *s, int64_t n)
{
    struct redctx *c = ctx;
    const float *a = p[0];
    for (int64_t i = 0; i < n; i++) {
        float v = a[i * s[0]];
        if (v > c->max) {
            c->max = v;
            c->arg = c->pos + i;
        }
    }
    c->pos += n;
}

double dtf_max_all(const dtf_tensor *t)
{
    struct redctx c = {0, -INFINITY, -1, 0};
    for_each1((dtf_tensor *)t, max_row, &c);
    return c.max;
}

int64_t dtf_argmax_all(const dtf_tensor *t)
{
    if (dtf_numel(t) == 0)
        return -1;
    /* The position must follow logical order, so iterate without merging
     * dims in another order: iter keeps dim order, which is logical. */
    struct redctx c = {0, -INFINITY, 0, 0};
    for_each1((dtf_tensor *)t, max_row, &c);
    return c.arg;
}

/* The output of a reduction along dim seen with t's shape minus dim: out may
 * have that shape (or {1} for a 1-D t) or t's shape with dim kept as 1. */
static int reduced_view(const char *what, dtf_tensor *rv, const dtf_tensor *out,
                        const dtf_tensor *t, int dim)
{
    if (check_dim(what, t, dim) < 0)
        return -1;
    dtf_tensor r;
    r.st = out->st;
    r.off = out->off;
    r.ndim = t->ndim - 1;
    int ok = 0;
    if (out->ndim == t->ndim) { /* keepdim */
        ok = out->shape[dim] == 1;
        for (int d = 0, k = 0; d < t->ndim && ok; d++) {
            if (d == dim)
                continue;
            ok = out->shape[d] == t->shape[d];
            r.shape[k] = out->shape[d];
            r.stride[k++] = out->stride[d];
        }
    } else if (out->ndim == t->ndim - 1) {
        ok = 1;
        for (int d = 0, k = 0; d < t->ndim && ok; d++) {
            if (d == dim)
                continue;
            ok = out->shape[k] == t->shape[d];
            r.shape[k] = out->shape[k];
            r.stride[k] = out->stride[k];
            k++;
        }
    }
    if (!ok) {
        char b1[96], b2[96];
        dtf_seterr("%s: output (%s) does not match (%s) reduced along dim %d",
                   what, sh(out, b1), sh(t, b2), dim + 1);
        return -1;
    }
    *rv = r;
    return 0;
}

/* The input seen as (rest..., R) with the reduced dim moved last. */
static void moved_last(dtf_tensor *m, const dtf_tensor *t, int dim)
{
    *m = *t;
    for (int d = dim, k = dim; d < t->ndim; d++) {
        if (d == dim)
            continue;
        m->shape[k] = t->shape[d];
        m->stride[k++] = t->stride[d];
    }
    m->shape[t->ndim - 1] = t->shape[dim];
    m->stride[t->ndim - 1] = t->stride[dim];
}

enum { RED_SUM, RED_MEAN, RED_MAX };

/* Generic reduction: for each output element scan the reduced dim. */
static int reduce_dim(dtf_tensor *vals, dtf_tensor *idx, const dtf_tensor *t, int dim,
                      int kind, const char *what)
{
    dtf_tensor rv, ri, m;
    if (vals && reduced_view(what, &rv, vals, t, dim) < 0)
        return -1;
    if (idx && reduced_view(what, &ri, idx, t, dim) < 0)
        return -1;
    moved_last(&m, t, dim);
    int64_t R = t->shape[dim], sR = t->stride[dim];
    int64_t rest = R ? dtf_numel(t) / R : 0;
    if (R == 0) {
        /* empty reduction: sum 0, mean NaN, max -inf, argmax -1 */
        if (vals)
            dtf_fill(&rv, kind == RED_MAX ? -INFINITY : kind == RED_MEAN ? NAN : 0);
        if (idx)
            dtf_fill(&ri, -1);
        return 0;
    }
    /* Fast path: contiguous t and output, reduction not along the last dim:
     * accumulate whole inner rows (vectorizes). */
    if (kind != RED_MAX && dim < t->ndim - 1 && dtf_is_contiguous(t) && dtf_is_contiguous(&rv)) {
        int64_t inner = 1;
        for (int d = dim + 1; d < t->ndim; d++)
            inner *= t->shape[d];
        int64_t outer = inner ? rest / inner : 0;
        const float *src = dtf_data(t);
        float *dst = dtf_data(&rv);
        float scale = kind == RED_MEAN ? 1.0f / (float)R : 1.0f;
        for (int64_t o = 0; o < outer; o++) {
            float *d = dst + o * inner;
            const float *s0 = src + o * R * inner;
            memcpy(d, s0, (size_t)inner * sizeof(float));
            for (int64_t r = 1; r < R; r++) {
                const float *sr = s0 + r * inner;
                for (int64_t i = 0; i < inner; i++)
                    d[i] += sr[i];
            }
            if (scale != 1.0f)
                for (int64_t i = 0; i < inner; i++)
                    d[i] *= scale;
        }
        return 0;
    }
    cursor cm, cv, ci;
    dtf_tensor lead = m;
    lead.ndim = t->ndim - 1; /* iterate over the kept dims */
    cur_init(&cm, &lead);
    if (vals)
        cur_init(&cv, &rv);
    if (idx)
        cur_init(&ci, &ri);
    const float *base = t->st->data;
    for (int64_t k = 0; k < rest; k++) {
        const float *p = base + cm.off;
        if (kind == RED_MAX) {
            float best = p[0];
            int64_t arg = 0;
            for (int64_t r = 1; r < R; r++)
                if (p[r * sR] > best) {
                    best = p[r * sR];
                    arg = r;
                }
            if (vals)
                vals->st->data[cv.off] = best;
            if (idx)
                idx->st->data[ci.off] = (float)arg;
        } else {
            double acc = 0;
            for (int64_t r = 0; r < R; r++)
                acc += p[r * sR];
            vals->st->data[cv.off] = (float)(kind == RED_MEAN ? acc / (double)R : acc);
        }
        cur_next(&cm);
        if (vals)
            cur_next(&cv);
        if (idx)
            cur_next(&ci);
    }
    return 0;
}

int dtf_sum_dim(dtf_tensor *out, const dtf_tensor *t, int dim)
{
    return reduce_dim(out, NULL, t, dim, RED_SUM, "sum");
}

int dtf_mean_dim(dtf_tensor *out, const dtf_tensor *t, int dim)
{
    return reduce_dim(out, NULL, t, dim, RED_MEAN, "mean");
}

int dtf_max_dim(dtf_tensor *vals, dtf_tensor *idx, const dtf_tensor *t, int dim)
{
    return reduce_dim(vals, idx, t, dim, RED_MAX, "max");
}

/* ======================================================================
 * Activations
 * ==================================================================== */

/* Four lanes with GCC/Clang vector extensions (SSE on x86-64, NEON on
 * arm64): -O2 leaves loops with a scalar tail or possible aliasing
 * unvectorized, and relu is a real share of a CNN step. Loads and stores go
 * through memcpy, so no alignment is assumed. */
#if defined(__GNUC__) || defined(__clang__)
#define HAVE_V4 1
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void v4_store(float *p, v4f v)
{
    memcpy(p, &v, sizeof v);
}

/* x > 0 ? y : 0, lane-wise (NaN x gives 0, as the scalar code does) */
static inline v4f v4_pos_select(v4f x, v4f y)
{
    v4f zero = {0, 0, 0, 0};
    return (v4f)((v4i)(x > zero) & (v4i)y);
}
#endif

static void relu_row(void *ctx, float *const *p, const int64_t *s, int64_t n)
{
    (void)ctx;
    float *o = p[0];
    const float *x = p[1];
    if (s[0] == 1 && s[1] == 1) {
        int64_t i = 0;
#ifdef HAVE_V4
        for (; i + 4 <= n; i += 4) {
            v4f v = v4_load(x + i);
            v4_store(o + i, v4_pos_select(v, v));
        }
#endif
        for (; i < n; i++)
            o[i] = x[i] > 0 ? x[i] : 0;
    } else
        for (int64_t i = 0; i < n; i++)
            o[i * s[0]] = x[i * s[1]] > 0 ? x[i * s[1]] : 0;
}

int dtf_relu(dtf_tensor *out, const dtf_tensor *x)
{
    if (!dtf_same_shape(out, x)) {
        MISMATCH("relu", out, x);
        return -1;
    }
    iter it;
    const int64_t *st[2] = {out->stride, x->stride};
    iter_init(&it, x->ndim, x->shape, 2, st);
    float *base[2] = {dtf_data(out), dtf_data(x)};
    iter_run(&it, base, relu_row, NULL);
    return 0;
}

static void relu_bw_row(void *ctx, float *const *p, const int64_t *s, int64_t n)
{
    (void)ctx;
    float *dx = p[0];
    const float *dy = p[1], *x = p[2];
    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
        int64_t i = 0;
#ifdef HAVE_V4
        for (; i + 4 <= n; i += 4)
            v4_store(dx + i, v4_pos_select(v4_load(x + i), v4_load(dy + i)));
#endif
        for (; i < n; i++)
            dx[i] = x[i] > 0 ? dy[i] : 0;
    } else
        for (int64_t i = 0; i < n; i++)
            dx[i * s[0]] = x[i * s[2]] > 0 ? dy[i * s[1]] : 0;
}

int dtf_relu_backward(dtf_tensor *dx, const dtf_tensor *dy, const dtf_tensor *x)
{
    if (!dtf_same_shape(dy, x)) {
        MISMATCH("relu_backward", dy, x);
        return -1;
    }
    if (!dtf_same_shape(dx, x)) {
        MISMATCH("relu_backward", dx, x);
        return -1;
    }
    iter it;
    const int64_t *st[3] = {dx->stride, dy->stride, x->stride};
    iter_init(&it, x->ndim, x->shape, 3, st);
    float *base[3] = {dtf_data(dx), dtf_data(dy), dtf_data(x)};
    iter_run(&it, base, relu_bw_row, NULL);
    return 0;
}

/* Offset of row r (a multi-index over all dims but the last). */
static size_t row_off(const dtf_tensor *t, int64_t r)
{
    size_t o = t->off;
    if (t->ndim == 2)
        return o + (size_t)(r * t->stride[0]);
    for (int d = t->ndim - 2; d >= 0; d--) {
        int64_t i = r % t->shape[d];
        r /= t->shape[d];
        o += (size_t)(i * t->stride[d]);
    }
    return o;
}

static int softmax_impl(dtf_tensor *out, const dtf_tensor *x, int logmode)
{
    const char *what = logmode ? "log_softmax" : "softmax";
    if (x->ndim < 1) {
        char b[96];
        dtf_seterr("%s: (%s) has no dims", what, sh(x, b));
        return -1;
    }
    if (!dtf_same_shape(out, x)) {
        MISMATCH(what, out, x);
        return -1;
    }
    int64_t C = x->shape[x->ndim - 1];
    if (C == 0)
        return 0;
    int64_t rows = dtf_numel(x) / C;
    int64_t sx = x->stride[x->ndim - 1], so = out->stride[out->ndim - 1];
    for (int64_t r = 0; r < rows; r++) {
        const float *a = x->st->data + row_off(x, r);
        float *o = out->st->data + row_off(out, r);
        float mx = -INFINITY;
        for (int64_t j = 0; j < C; j++)
            if (a[j * sx] > mx)
                mx = a[j * sx];
        if (mx == -INFINITY)
            mx = 0;
        double sum = 0;
        if (logmode) {
            for (int64_t j = 0; j < C; j++)
                sum += expf(a[j * sx] - mx);
            float lse = mx + (float)log(sum);
            for (int64_t j = 0; j < C; j++)
                o[j * so] = a[j * sx] - lse;
        } else {
            for (int64_t j = 0; j < C; j++) {
                float e = expf(a[j * sx] - mx);
                o[j * so] = e;
                sum += e;
            }
            float inv = (float)(1.0 / sum);
            for (int64_t j = 0; j < C; j++)
                o[j * so] *= inv;
        }
    }
    return 0;
}

int dtf_softmax(dtf_tensor *out, const dtf_tensor *x)
{
    return softmax_impl(out, x, 0);
}

int dtf_log_softmax(dtf_tensor *out, const dtf_tensor *x)
{
    return softmax_impl(out, x, 1);
}

/* ======================================================================
 * Loss, accuracy, bias gradient
 * ==================================================================== */

static int check_labels(const char *what, const dtf_tensor *logits, const dtf_tensor *labels)
{
    if (logits->ndim != 2 || labels->ndim != 1 || labels->shape[0] != logits->shape[0]) {
        MISMATCH(what, logits, labels);
        return -1;
    }
    int64_t C = logits->shape[1];
    for (int64_t i = 0; i < labels->shape[0]; i++) {
        float v = dtf_data(labels)[i * labels->stride[0]];
        if (!(v >= 0 && v < (float)C && v == floorf(v))) {
            dtf_seterr("%s: label %g at row %lld is not a class in 0..%lld",
                       what, (double)v, (long long)i + 1, (long long)C - 1);
            return -1;
        }
    }
    return 0;
}

int dtf_cross_entropy(const dtf_tensor *logits, const dtf_tensor *labels,
                      dtf_tensor *dlogits, double *loss)
{
    if (check_labels("cross_entropy", logits, labels) < 0)
        return -1;
    if (dlogits && !dtf_same_shape(dlogits, logits)) {
        MISMATCH("cross_entropy", dlogits, logits);
        return -1;
    }
    int64_t N = logits->shape[0], C = logits->shape[1];
    int64_t s0 = logits->stride[0], s1 = logits->stride[1];
    double total = 0;
    float invn = N ? 1.0f / (float)N : 0;
    for (int64_t i = 0; i < N; i++) {
        const float *a = dtf_data(logits) + i * s0;
        int64_t y = (int64_t)dtf_data(labels)[i * labels->stride[0]];
        float mx = -INFINITY;
        for (int64_t j = 0; j < C; j++)
            if (a[j * s1] > mx)
                mx = a[j * s1];
        double sum = 0;
        for (int64_t j = 0; j < C; j++)
            sum += expf(a[j * s1] - mx);
        double lse = mx + log(sum);
        total += lse - a[y * s1];
        if (dlogits) {
            float *d = dtf_data(dlogits) + i * dlogits->stride[0];
            int64_t d1 = dlogits->stride[1];
            float flse = (float)lse;
            for (int64_t j = 0; j < C; j++)
                d[j * d1] = expf(a[j * s1] - flse) * invn;
            d[y * d1] -= invn;
        }
    }
    *loss = N ? total / (double)N : 0;
    return 0;
}

int dtf_accuracy(const dtf_tensor *logits, const dtf_tensor *labels, int64_t *count)
{
    if (logits->ndim != 2 || labels->ndim != 1 || labels->shape[0] != logits->shape[0]) {
        MISMATCH("accuracy", logits, labels);
        return -1;
    }
    int64_t N = logits->shape[0], C = logits->shape[1], n = 0;
    for (int64_t i = 0; i < N; i++) {
        const float *a = dtf_data(logits) + i * logits->stride[0];
        int64_t best = 0;
        for (int64_t j = 1; j < C; j++)
            if (a[j * logits->stride[1]] > a[best * logits->stride[1]])
                best = j;
        if (C > 0 && (float)best == dtf_data(labels)[i * labels->stride[0]])
            n++;
    }
    *count = n;
    return 0;
}

int dtf_bias_backward(dtf_tensor *db, const dtf_tensor *dy)
{
    if (db->ndim != 1 || dy->ndim < 1 || dy->shape[dy->ndim - 1] != db->shape[0]) {
        MISMATCH("bias_backward", db, dy);
        return -1;
    }
    int64_t D = db->shape[0];
    if (D == 0)
        return 0;
    int64_t rows = dtf_numel(dy) / D;
    float *o = dtf_data(db);
    int64_t so = db->stride[0], sy = dy->stride[dy->ndim - 1];
    if (so == 1 && sy == 1) {
        for (int64_t r = 0; r < rows; r++) {
            const float *a = dy->st->data + row_off(dy, r);
            for (int64_t j = 0; j < D; j++)
                o[j] += a[j];
        }
    } else {
        for (int64_t r = 0; r < rows; r++) {
            const float *a = dy->st->data + row_off(dy, r);
            for (int64_t j = 0; j < D; j++)
                o[j * so] += a[j * sy];
        }
    }
    return 0;
}
