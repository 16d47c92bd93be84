/* ltensor_print: a tensor's __tostring, Torch7's layout: the values in one
 * format for every element (integers, fixed or exponent, by the largest
 * magnitude), matrices under "(i,j,.,.) =" headers for the leading dims,
 * long dims abbreviated to their first and last three entries, then the
 * shape: "[dtf.Tensor 2x3]". Indices in the headers are 1-based, as Lua's. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>

#include "ltensor.h"

typedef struct {
    luaL_Buffer *b;
    const dtf_tensor *t;
    int style; /* 0 integers, 1 fixed, 2 exponent */
    int width, abbrev;
} printer;

/* Along a dim of size n: how many entries are shown, and which index the
 * j-th one is (all, or the first 3, an ellipsis marked -1, the last 3). */
static int64_t nshown(int64_t n, int abbrev)
{
    return abbrev && n > 6 ? 7 : n;
}

static int64_t shown_at(int64_t n, int abbrev, int64_t j)
{
    if (!(abbrev && n > 6))
        return j;
    return j < 3 ? j : j == 3 ? -1 : n - (7 - j);
}

static void put_num(printer *p, float v)
{
    char s[64];
    if (!isfinite(v))
        snprintf(s, sizeof s, "%*s", p->width, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    else if (p->style == 0)
        snprintf(s, sizeof s, "%*.0f", p->width, (double)v);
    else if (p->style == 1)
        snprintf(s, sizeof s, "%*.4f", p->width, (double)v);
    else
        snprintf(s, sizeof s, "%*.4e", p->width, (double)v);
    luaL_addstring(p->b, s);
}

/* One row (the last dim) starting at off. */
static void put_row(printer *p, size_t off)
{
    const dtf_tensor *t = p->t;
    int64_t n = t->shape[t->ndim - 1], st = t->stride[t->ndim - 1];
    for (int64_t j = 0, k = nshown(n, p->abbrev); j < k; j++) {
        int64_t i = shown_at(n, p->abbrev, j);
        if (j)
            luaL_addchar(p->b, ' ');
        if (i < 0) {
            char s[64];
            snprintf(s, sizeof s, "%*s", p->width, "...");
            luaL_addstring(p->b, s);
        } else {
            put_num(p, t->st->data[off + (size_t)(i * st)]);
        }
    }
    luaL_addchar(p->b, '\n');
}

/* The dims above the last two as "(i,j,.,.) =" headers, then matrices. */
static void put_slices(printer *p, int d, size_t off, int64_t *prefix)
{
    const dtf_tensor *t = p->t;
    if (d < t->ndim - 2) {
        int64_t n = t->shape[d];
        for (int64_t j = 0, k = nshown(n, p->abbrev); j < k; j++) {
            int64_t i = shown_at(n, p->abbrev, j);
            if (i < 0) {
                luaL_addstring(p->b, "...\n\n");
                continue;
            }
            prefix[d] = i;
            put_slices(p, d + 1, off + (size_t)(i * t->stride[d]), prefix);
        }
        return;
    }
    if (t->ndim == 1) {
        put_row(p, off);
        return;
    }
    if (t->ndim > 2) {
        luaL_addchar(p->b, '(');
        for (int k = 0; k < t->ndim - 2; k++) {
            char s[32];
            snprintf(s, sizeof s, "%lld,", (long long)prefix[k] + 1);
            luaL_addstring(p->b, s);
        }
        luaL_addstring(p->b, ".,.) =\n");
    }
    int64_t R = t->shape[t->ndim - 2];
    for (int64_t j = 0, k = nshown(R, p->abbrev); j < k; j++) {
        int64_t i = shown_at(R, p->abbrev, j);
        if (i < 0)
            luaL_addstring(p->b, "...\n");
        else
            put_row(p, off + (size_t)(i * t->stride[t->ndim - 2]));
    }
    if (t->ndim > 2)
        luaL_addchar(p->b, '\n');
}

int ltensor_tostring(lua_State *L)
{
    dtf_tensor *t = luaL_checkudata(L, 1, LTENSOR_MT);
    char sb[96];
    if (!t->st) {
        lua_pushliteral(L, "[dtf.Tensor released]");
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int64_t n = dtf_numel(t);
    if (t->ndim == 0) {
        char s[64];
        snprintf(s, sizeof s, "%g\n", (double)dtf_data(t)[0]);
        luaL_addstring(&b, s);
    } else if (n > 0) {
        /* one format for every element: integers, fixed or exponent */
        double amax = 0, amin = INFINITY;
        int integral = 1, finite = 1;
        for (int64_t i = 0; i < n && i < 100000; i++) {
            int64_t idx[DTF_MAXDIM], k = i;
            for (int d = t->ndim - 1; d >= 0; d--) {
                idx[d] = k % t->shape[d];
                k /= t->shape[d];
            }
            double v = *dtf_at(t, idx);
            if (!isfinite(v)) {
                finite = 0;
                continue;
            }
            double a = fabs(v);
            if (a > amax) amax = a;
            if (a > 0 && a < amin) amin = a;
            if (v != floor(v)) integral = 0;
        }
        printer p = {&b, t, 1, 0, n > 1000};
        if (integral && amax < 1e9) {
            p.style = 0;
            p.width = (int)(amax >= 1 ? floor(log10(amax)) + 1 : 1) + 1;
        } else if (amax >= 1e5 || (amax > 0 && amax < 1e-3)) {
            p.style = 2;
            p.width = 11;
        } else {
            p.width = (int)(amax >= 1 ? floor(log10(amax)) + 1 : 1) + 6;
        }
        if (!finite && p.width < 4)
            p.width = 4;
        int64_t prefix[DTF_MAXDIM] = {0};
        put_slices(&p, 0, t->off, prefix);
    }
    luaL_addstring(&b, "[dtf.Tensor ");
    luaL_addstring(&b, dtf_shape_str(t, sb, sizeof sb));
    luaL_addstring(&b, "]");
    luaL_pushresult(&b);
    return 1;
}

