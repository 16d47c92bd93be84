/* ltensor: module dtf.tensor, the Lua face of tensor.c and tensor_conv.c.
 *
 * A tensor is a full userdata holding a dtf_tensor header by value and one
 * reference to its storage; views are new userdata over the same storage.
 * __gc and __close release the reference and leave the header inert, so
 * either may run twice. Indices are 1-based here and 0-based in the core.
 *
 * Kernel functions take their output first (nil allocates it) and return
 * it, so a training loop can keep its buffers and allocate nothing. Every
 * argument is checked before anything is allocated, and nothing is raised
 * while C memory is held outside a userdata. */
#include "ltensor.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "blas.h"
#include "cpu.h"
#include "lmodules.h"
#include "lopt.h"
#include "optim.h"

#define RNG_MT "dtf.Rng"

/* ======================================================================
 * Userdata
 * ==================================================================== */

static dtf_tensor *push_inert(lua_State *L)
{
    /* Other bindings (dtf.data, dtf.ckpt, dtf.ps) make tensors too, maybe
     * before any script required dtf.tensor: load it so the metatable and
     * its methods exist. */
    if (luaL_getmetatable(L, LTENSOR_MT) == LUA_TNIL) {
        luaL_requiref(L, "dtf.tensor", luaopen_dtf_tensor, 0);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    dtf_tensor *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, LTENSOR_MT);
    return t;
}

dtf_tensor *ltensor_test(lua_State *L, int idx)
{
    dtf_tensor *t = luaL_testudata(L, idx, LTENSOR_MT);
    return t && t->st ? t : NULL;
}

dtf_tensor *ltensor_check(lua_State *L, int idx)
{
    dtf_tensor *t = luaL_checkudata(L, idx, LTENSOR_MT);
    if (!t->st)
        luaL_argerror(L, idx, "tensor was released (closed)");
    return t;
}

/* A tensor or nil (-> NULL) at idx. */
static dtf_tensor *opt_tensor(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? NULL : ltensor_check(L, idx);
}

static void raise_core(lua_State *L)
{
    luaL_error(L, "%s", dtf_error());
}

dtf_tensor *ltensor_push_new(lua_State *L, int ndim, const int64_t *shape)
{
    dtf_tensor *t = push_inert(L);
    if (dtf_tensor_init(t, ndim, shape) < 0)
        raise_core(L);
    return t;
}

static dtf_tensor *push_view(lua_State *L, const dtf_tensor *src)
{
    dtf_tensor *t = push_inert(L);
    *t = *src;
    dtf_storage_retain(t->st);
    return t;
}

void ltensor_push_view(lua_State *L, const dtf_tensor *t)
{
    push_view(L, t);
}

static dtf_tensor *push_like(lua_State *L, const dtf_tensor *t)
{
    return ltensor_push_new(L, t->ndim, t->shape);
}

/* The output at idx, or a new tensor of shape (ndim, shape) pushed and put
 * at idx when it is nil. */
static dtf_tensor *out_or_new(lua_State *L, int idx, int ndim, const int64_t *shape)
{
    if (!lua_isnoneornil(L, idx))
        return ltensor_check(L, idx);
    if (lua_gettop(L) < idx)
        lua_settop(L, idx);
    dtf_tensor *t = ltensor_push_new(L, ndim, shape);
    lua_replace(L, idx);
    return t;
}

static int t_gc(lua_State *L)
{
    dtf_tensor *t = luaL_checkudata(L, 1, LTENSOR_MT);
    dtf_tensor_release(t);
    return 0;
}

/* ======================================================================
 * Arguments
 * ==================================================================== */

/* A 1-based dim (negative counts from the end) -> 0-based. */
static int check_dimarg(lua_State *L, int arg, const dtf_tensor *t)
{
    lua_Integer d = luaL_checkinteger(L, arg);
    if (d < 0)
        d += t->ndim + 1;
    if (d < 1 || d > t->ndim)
        luaL_argerror(L, arg, lua_pushfstring(L, "dim %d out of range 1..%d", (int)d, t->ndim));
    return (int)d - 1;
}

/* A shape given as varargs from `first` or as one table there. */
static int get_shape(lua_State *L, int first, int64_t *shape, int allow_infer)
{
    int n;
    if (lua_istable(L, first)) {
        n = (int)luaL_len(L, first);
        if (n > DTF_MAXDIM)
            luaL_argerror(L, first, "too many dims");
        for (int i = 0; i < n; i++) {
            lua_geti(L, first, i + 1);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            lua_pop(L, 1);
            if (!ok || v < (allow_infer ? -1 : 0))
                luaL_argerror(L, first, "sizes must be non-negative integers");
            shape[i] = v;
        }
        return n;
    }
    n = lua_gettop(L) - first + 1;
    if (n < 0)
        n = 0;
    if (n > DTF_MAXDIM)
        luaL_argerror(L, first + DTF_MAXDIM, "too many dims");
    for (int i = 0; i < n; i++) {
        lua_Integer v = luaL_checkinteger(L, first + i);
        if (v < (allow_infer ? -1 : 0))
            luaL_argerror(L, first + i, "sizes must be non-negative integers");
        shape[i] = v;
    }
    return n;
}

static const char *shape_of(const dtf_tensor *t, char *buf)
{
    return dtf_shape_str(t, buf, 96);
}

/* ======================================================================
 * Constructors
 * ==================================================================== */

static int l_zeros(lua_State *L)
{
    int64_t s[DTF_MAXDIM];
    int n = get_shape(L, 1, s, 0);
    ltensor_push_new(L, n, s);
    return 1;
}

static int l_ones(lua_State *L)
{
    int64_t s[DTF_MAXDIM];
    int n = get_shape(L, 1, s, 0);
    dtf_fill(ltensor_push_new(L, n, s), 1);
    return 1;
}

static int l_full(lua_State *L)
{
    int64_t s[DTF_MAXDIM];
    luaL_checktype(L, 1, LUA_TTABLE);
    float v = (float)luaL_checknumber(L, 2);
    int n = get_shape(L, 1, s, 0);
    dtf_fill(ltensor_push_new(L, n, s), v);
    return 1;
}

/* Fills t from the nested table at the top, checking that it is
 * rectangular with t's shape. */
static void from_fill(lua_State *L, dtf_tensor *t, int d, size_t off)
{
    if (d == t->ndim) {
        int ok;
        lua_Number v = lua_tonumberx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "from: expected a number at depth %d, got %s", d + 1, luaL_typename(L, -1));
        t->st->data[off] = (float)v;
        return;
    }
    if (!lua_istable(L, -1) || (int64_t)luaL_len(L, -1) != t->shape[d])
        luaL_error(L, "from: the table is not rectangular (dim %d should have %d entries)",
                   d + 1, (int)t->shape[d]);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        lua_geti(L, -1, i + 1);
        from_fill(L, t, d + 1, off + (size_t)(i * t->stride[d]));
        lua_pop(L, 1);
    }
}

static int l_from(lua_State *L)
{
    dtf_tensor *src = ltensor_test(L, 1);
    if (src) {
        dtf_copy(push_like(L, src), src);
        return 1;
    }
    if (lua_type(L, 1) == LUA_TNUMBER) {
        dtf_fill(ltensor_push_new(L, 0, NULL), (float)lua_tonumber(L, 1));
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t s[DTF_MAXDIM];
    int n = 0;
    lua_pushvalue(L, 1);
    while (lua_istable(L, -1)) {
        if (n == DTF_MAXDIM)
            luaL_argerror(L, 1, "too many dims");
        s[n++] = (int64_t)luaL_len(L, -1);
        lua_geti(L, -1, 1);
    }
    lua_settop(L, 1);
    dtf_tensor *t = ltensor_push_new(L, n, s);
    lua_pushvalue(L, 1);
    if (dtf_numel(t) > 0)
        from_fill(L, t, 0, 0);
    lua_pop(L, 1);
    return 1;
}

/* ======================================================================
 * Random generator
 * ==================================================================== */

static int l_rng(lua_State *L)
{
    lua_Integer seed = luaL_optinteger(L, 1, 0);
    dtf_rng *r = lua_newuserdatauv(L, sizeof *r, 0);
    dtf_rng_seed(r, (uint64_t)seed);
    luaL_setmetatable(L, RNG_MT);
    return 1;
}

static int rng_uniform(lua_State *L)
{
    lua_pushnumber(L, dtf_rng_uniform(luaL_checkudata(L, 1, RNG_MT)));
    return 1;
}

static int rng_normal(lua_State *L)
{
    lua_pushnumber(L, dtf_rng_normal(luaL_checkudata(L, 1, RNG_MT)));
    return 1;
}

static int rng_below(lua_State *L)
{
    dtf_rng *r = luaL_checkudata(L, 1, RNG_MT);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n > 0, 2, "must be positive");
    lua_pushinteger(L, (lua_Integer)dtf_rng_below(r, (uint64_t)n));
    return 1;
}

static int rng_tostring(lua_State *L)
{
    lua_pushfstring(L, "dtf.Rng: %p", lua_touserdata(L, 1));
    return 1;
}

/* The generator at arg (a dtf.Rng, or an integer seed for a fresh one in
 * *local). */
static dtf_rng *rng_arg(lua_State *L, int arg, dtf_rng *local)
{
    dtf_rng *r = luaL_testudata(L, arg, RNG_MT);
    if (r)
        return r;
    if (!lua_isinteger(L, arg) && !lua_isnumber(L, arg))
        luaL_typeerror(L, arg, "dtf.Rng or integer seed");
    dtf_rng_seed(local, (uint64_t)luaL_checkinteger(L, arg));
    return local;
}

static int t_normal_(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    dtf_rng local, *r = rng_arg(L, 2, &local);
    dtf_fill_normal(t, r, (float)luaL_optnumber(L, 3, 0), (float)luaL_optnumber(L, 4, 1));
    lua_settop(L, 1);
    return 1;
}

static int t_uniform_(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    dtf_rng local, *r = rng_arg(L, 2, &local);
    dtf_fill_uniform(t, r, (float)luaL_optnumber(L, 3, 0), (float)luaL_optnumber(L, 4, 1));
    lua_settop(L, 1);
    return 1;
}

/* ======================================================================
 * Basic methods
 * ==================================================================== */

static int t_fill(lua_State *L)
{
    dtf_fill(ltensor_check(L, 1), (float)luaL_checknumber(L, 2));
    lua_settop(L, 1);
    return 1;
}

static int t_zero(lua_State *L)
{
    dtf_fill(ltensor_check(L, 1), 0);
    lua_settop(L, 1);
    return 1;
}

static int t_copy(lua_State *L)
{
    if (dtf_copy(ltensor_check(L, 1), ltensor_check(L, 2)) < 0)
        raise_core(L);
    lua_settop(L, 1);
    return 1;
}

static int t_dim(lua_State *L)
{
    lua_pushinteger(L, ltensor_check(L, 1)->ndim);
    return 1;
}

static int t_size(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        lua_pushinteger(L, t->shape[check_dimarg(L, 2, t)]);
        return 1;
    }
    lua_createtable(L, t->ndim, 0);
    for (int d = 0; d < t->ndim; d++) {
        lua_pushinteger(L, t->shape[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}

static int t_stride(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        lua_pushinteger(L, t->stride[check_dimarg(L, 2, t)]);
        return 1;
    }
    lua_createtable(L, t->ndim, 0);
    for (int d = 0; d < t->ndim; d++) {
        lua_pushinteger(L, t->stride[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}

static int t_numel(lua_State *L)
{
    lua_pushinteger(L, dtf_numel(ltensor_check(L, 1)));
    return 1;
}

static int t_len(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    lua_pushinteger(L, t->ndim ? t->shape[0] : 1);
    return 1;
}

static int t_is_contiguous(lua_State *L)
{
    lua_pushboolean(L, dtf_is_contiguous(ltensor_check(L, 1)));
    return 1;
}

static void totable_rec(lua_State *L, const dtf_tensor *t, int d, size_t off)
{
    if (d == t->ndim) {
        lua_pushnumber(L, t->st->data[off]);
        return;
    }
    luaL_checkstack(L, 4, "totable");
    lua_createtable(L, (int)t->shape[d], 0);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        totable_rec(L, t, d + 1, off + (size_t)(i * t->stride[d]));
        lua_rawseti(L, -2, i + 1);
    }
}

static int t_totable(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    totable_rec(L, t, 0, t->off);
    return 1;
}

/* The element at the 1-based indices in args first..first+ndim-1. */
static float *elem_args(lua_State *L, dtf_tensor *t, int first)
{
    int64_t idx[DTF_MAXDIM];
    for (int d = 0; d < t->ndim; d++) {
        lua_Integer i = luaL_checkinteger(L, first + d);
        if (i < 1 || i > t->shape[d])
            luaL_argerror(L, first + d, lua_pushfstring(L, "index %d out of range 1..%d of dim %d",
                                                       (int)i, (int)t->shape[d], d + 1));
        idx[d] = i - 1;
    }
    return dtf_at(t, idx);
}

static int t_get(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    if (lua_gettop(L) - 1 != t->ndim)
        return luaL_error(L, "get: %d indices for a %d-dim tensor", lua_gettop(L) - 1, t->ndim);
    lua_pushnumber(L, *elem_args(L, t, 2));
    return 1;
}

static int t_set(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    int n = lua_gettop(L);
    if (n - 2 != t->ndim)
        return luaL_error(L, "set: %d indices for a %d-dim tensor", n - 2, t->ndim);
    float v = (float)luaL_checknumber(L, n);
    *elem_args(L, t, 2) = v;
    lua_settop(L, 1);
    return 1;
}

/* ======================================================================
 * Views
 * ==================================================================== */

static int t_view(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    int64_t s[DTF_MAXDIM];
    int n = get_shape(L, 2, s, 1);
    dtf_tensor v;
    if (dtf_view(&v, t, n, s) < 0)
        raise_core(L);
    push_view(L, &v);
    return 1;
}

static int t_reshape(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    int64_t s[DTF_MAXDIM];
    int n = get_shape(L, 2, s, 1);
    dtf_tensor v;
    if (dtf_is_contiguous(t)) {
        if (dtf_view(&v, t, n, s) < 0)
            raise_core(L);
        push_view(L, &v);
        return 1;
    }
    /* check the shape on a contiguous header before copying */
    dtf_tensor probe = *t;
    probe.ndim = 1;
    probe.shape[0] = dtf_numel(t);
    probe.stride[0] = 1;
    if (dtf_view(&v, &probe, n, s) < 0)
        raise_core(L);
    dtf_tensor *c = push_like(L, t);
    dtf_copy(c, t);
    dtf_view(&v, c, n, s);
    *c = v; /* same storage and reference, new shape */
    return 1;
}

static int t_narrow(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    int d = check_dimarg(L, 2, t);
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    dtf_tensor v;
    if (dtf_narrow(&v, t, d, start - 1, len) < 0)
        raise_core(L);
    push_view(L, &v);
    return 1;
}

static int t_select(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    int d = check_dimarg(L, 2, t);
    dtf_tensor v;
    if (dtf_select(&v, t, d, luaL_checkinteger(L, 3) - 1) < 0)
        raise_core(L);
    push_view(L, &v);
    return 1;
}

static int t_transpose(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    int d1 = check_dimarg(L, 2, t), d2 = check_dimarg(L, 3, t);
    dtf_tensor v;
    dtf_transpose(&v, t, d1, d2);
    push_view(L, &v);
    return 1;
}

static int t_t(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    if (t->ndim != 2) {
        char b[96];
        return luaL_error(L, "t: (%s) is not 2-D", shape_of(t, b));
    }
    dtf_tensor v;
    dtf_transpose(&v, t, 0, 1);
    push_view(L, &v);
    return 1;
}

static int t_contiguous(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    if (dtf_is_contiguous(t)) {
        lua_settop(L, 1);
        return 1;
    }
    dtf_copy(push_like(L, t), t);
    return 1;
}

static int t_clone(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    dtf_copy(push_like(L, t), t);
    return 1;
}

/* t[i]: a number for a 1-D tensor, a select view otherwise; other keys
 * are methods (upvalue 1). */
static int t_index(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TNUMBER) {
        dtf_tensor *t = ltensor_check(L, 1);
        int ok;
        lua_Integer i = lua_tointegerx(L, 2, &ok);
        if (!ok || t->ndim == 0 || i < 1 || i > t->shape[0]) {
            char b[96];
            return luaL_error(L, "index %s out of range 1..%d of (%s)", lua_tostring(L, 2),
                              t->ndim ? (int)t->shape[0] : 0, shape_of(t, b));
        }
        if (t->ndim == 1) {
            lua_pushnumber(L, dtf_data(t)[(i - 1) * t->stride[0]]);
        } else {
            dtf_tensor v;
            dtf_select(&v, t, 0, i - 1);
            push_view(L, &v);
        }
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

/* t[i] = v: sets an element of a 1-D tensor; for more dims fills row i
 * with a number or copies a tensor into it. */
static int t_newindex(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    int ok;
    lua_Integer i = lua_tointegerx(L, 2, &ok);
    if (!ok)
        return luaL_error(L, "tensors take only integer keys (got %s)", luaL_typename(L, 2));
    if (t->ndim == 0 || i < 1 || i > t->shape[0]) {
        char b[96];
        return luaL_error(L, "index %d out of range 1..%d of (%s)", (int)i,
                          t->ndim ? (int)t->shape[0] : 0, shape_of(t, b));
    }
    if (t->ndim == 1) {
        dtf_data(t)[(i - 1) * t->stride[0]] = (float)luaL_checknumber(L, 3);
        return 0;
    }
    dtf_tensor v;
    dtf_select(&v, t, 0, i - 1);
    dtf_tensor *src = ltensor_test(L, 3);
    if (src) {
        if (dtf_copy(&v, src) < 0)
            raise_core(L);
    } else {
        dtf_fill(&v, (float)luaL_checknumber(L, 3));
    }
    return 0;
}

/* ======================================================================
 * Arithmetic
 * ==================================================================== */

/* The shape a OP b produces (a's, or b's when a is b's row vector). */
static const dtf_tensor *full_of(const dtf_tensor *a, const dtf_tensor *b)
{
    if (a->ndim == 1 && b->ndim > 1 && a->shape[0] == b->shape[b->ndim - 1])
        return b;
    return a;
}

/* self OP x [alpha], in place or into a new tensor. */
static int arith(lua_State *L, dtf_binop op, int inplace)
{
    dtf_tensor *a = ltensor_check(L, 1);
    float alpha = (float)luaL_optnumber(L, 3, 1);
    dtf_tensor *out;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        float s = (float)lua_tonumber(L, 2);
        if (op == DTF_ADD || op == DTF_SUB)
            s *= alpha;
        out = inplace ? a : push_like(L, a);
        dtf_binary_scalar(out, a, s, op);
    } else {
        dtf_tensor *b = luaL_testudata(L, 2, LTENSOR_MT);
        if (!b)
            return luaL_typeerror(L, 2, "dtf.Tensor or number");
        b = ltensor_check(L, 2);
        /* a shape error is raised by dtf_binary, naming both operands */
        out = inplace ? a : push_like(L, full_of(a, b));
        if (dtf_binary(out, a, b, op, alpha) < 0)
            raise_core(L);
    }
    if (inplace)
        lua_settop(L, 1);
    return 1;
}

static int t_add(lua_State *L) { return arith(L, DTF_ADD, 0); }
static int t_sub(lua_State *L) { return arith(L, DTF_SUB, 0); }
static int t_mul(lua_State *L) { return arith(L, DTF_MUL, 0); }
static int t_div(lua_State *L) { return arith(L, DTF_DIV, 0); }
static int t_add_(lua_State *L) { return arith(L, DTF_ADD, 1); }
static int t_sub_(lua_State *L) { return arith(L, DTF_SUB, 1); }
static int t_mul_(lua_State *L) { return arith(L, DTF_MUL, 1); }
static int t_div_(lua_State *L) { return arith(L, DTF_DIV, 1); }

/* Operators: either side may be a number. */
static int operator(lua_State *L, dtf_binop op, dtf_binop rop)
{
    if (lua_type(L, 1) == LUA_TNUMBER) {
        dtf_tensor *b = ltensor_check(L, 2);
        dtf_binary_scalar(push_like(L, b), b, (float)lua_tonumber(L, 1), rop);
        return 1;
    }
    lua_settop(L, 2);
    return arith(L, op, 0);
}

static int m_add(lua_State *L) { return operator(L, DTF_ADD, DTF_ADD); }
static int m_sub(lua_State *L) { return operator(L, DTF_SUB, DTF_RSUB); }
static int m_mul(lua_State *L) { return operator(L, DTF_MUL, DTF_MUL); }
static int m_div(lua_State *L) { return operator(L, DTF_DIV, DTF_RDIV); }

static int m_unm(lua_State *L)
{
    dtf_tensor *a = ltensor_check(L, 1);
    dtf_binary_scalar(push_like(L, a), a, -1.0f, DTF_MUL);
    return 1;
}

/* ======================================================================
 * Reductions
 * ==================================================================== */

/* Pushes a new tensor with t's shape less dim ({1} for a 1-D t). */
static dtf_tensor *push_reduced(lua_State *L, const dtf_tensor *t, int dim)
{
    int64_t s[DTF_MAXDIM];
    int n = 0;
    for (int d = 0; d < t->ndim; d++)
        if (d != dim)
            s[n++] = t->shape[d];
    if (n == 0)
        s[n++] = 1;
    return ltensor_push_new(L, n, s);
}

static int t_sum(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lua_pushnumber(L, dtf_sum_all(t));
        return 1;
    }
    int d = check_dimarg(L, 2, t);
    if (dtf_sum_dim(push_reduced(L, t, d), t, d) < 0)
        raise_core(L);
    return 1;
}

static int t_mean(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    if (lua_isnoneornil(L, 2)) {
        int64_t n = dtf_numel(t);
        lua_pushnumber(L, n ? dtf_sum_all(t) / (double)n : NAN);
        return 1;
    }
    int d = check_dimarg(L, 2, t);
    if (dtf_mean_dim(push_reduced(L, t, d), t, d) < 0)
        raise_core(L);
    return 1;
}

/* 0-based float indices -> 1-based. */
static void one_based(dtf_tensor *idx)
{
    dtf_binary_scalar(idx, idx, 1.0f, DTF_ADD);
}

static int t_max(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lua_pushnumber(L, dtf_max_all(t));
        return 1;
    }
    int d = check_dimarg(L, 2, t);
    dtf_tensor *v = push_reduced(L, t, d);
    dtf_tensor *i = push_reduced(L, t, d);
    if (dtf_max_dim(v, i, t, d) < 0)
        raise_core(L);
    one_based(i);
    return 2;
}

static int t_argmax(lua_State *L)
{
    dtf_tensor *t = ltensor_check(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lua_pushinteger(L, dtf_argmax_all(t) + 1);
        return 1;
    }
    int d = check_dimarg(L, 2, t);
    dtf_tensor *i = push_reduced(L, t, d);
    if (dtf_max_dim(NULL, i, t, d) < 0)
        raise_core(L);
    one_based(i);
    return 1;
}

/* ======================================================================
 * Kernels (output first; nil allocates)
 * ==================================================================== */

static int l_matmul(lua_State *L)
{
    dtf_tensor *a = ltensor_check(L, 2), *b = ltensor_check(L, 3);
    float alpha = (float)luaL_optnumber(L, 4, 1), beta = (float)luaL_optnumber(L, 5, 0);
    dtf_tensor dummy = {0}, *c;
    if (lua_isnoneornil(L, 1) && (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[0]))
        c = &dummy; /* dtf_matmul fails on a and b first */
    else {
        int64_t s[2] = {a->ndim == 2 ? a->shape[0] : 0, b->ndim == 2 ? b->shape[1] : 0};
        c = out_or_new(L, 1, 2, s);
    }
    if (dtf_matmul(c, a, b, alpha, beta) < 0)
        raise_core(L);
    lua_settop(L, 1);
    return 1;
}

static int l_relu(lua_State *L)
{
    dtf_tensor *x = ltensor_check(L, 2);
    dtf_tensor *o = out_or_new(L, 1, x->ndim, x->shape);
    if (dtf_relu(o, x) < 0)
        raise_core(L);
    lua_settop(L, 1);
    return 1;
}

static int l_relu_backward(lua_State *L)
{
    dtf_tensor *dy = ltensor_check(L, 2), *x = ltensor_check(L, 3);
    if (!dtf_same_shape(dy, x)) {
        dtf_relu_backward(x, dy, x);
        raise_core(L);
    }
    dtf_tensor *dx = out_or_new(L, 1, x->ndim, x->shape);
    if (dtf_relu_backward(dx, dy, x) < 0)
        raise_core(L);
    lua_settop(L, 1);
    return 1;
}

static int softmax_common(lua_State *L, int logmode)
{
    dtf_tensor *x = ltensor_check(L, 2);
    dtf_tensor *o = out_or_new(L, 1, x->ndim, x->shape);
    if ((logmode ? dtf_log_softmax(o, x) : dtf_softmax(o, x)) < 0)
        raise_core(L);
    lua_settop(L, 1);
    return 1;
}

static int l_softmax(lua_State *L) { return softmax_common(L, 0); }
static int l_log_softmax(lua_State *L) { return softmax_common(L, 1); }

static int l_cross_entropy(lua_State *L)
{
    dtf_tensor *x = ltensor_check(L, 1), *y = ltensor_check(L, 2);
    dtf_tensor *d = opt_tensor(L, 3);
    double loss;
    if (dtf_cross_entropy(x, y, d, &loss) < 0)
        raise_core(L);
    lua_pushnumber(L, loss);
    return 1;
}

static int l_accuracy(lua_State *L)
{
    dtf_tensor *x = ltensor_check(L, 1), *y = ltensor_check(L, 2);
    int64_t n;
    if (dtf_accuracy(x, y, &n) < 0)
        raise_core(L);
    lua_pushinteger(L, n);
    return 1;
}

static int l_bias_backward(lua_State *L)
{
    dtf_tensor *dy = ltensor_check(L, 2);
    int64_t D = dy->ndim ? dy->shape[dy->ndim - 1] : 1;
    dtf_tensor *db = out_or_new(L, 1, 1, &D);
    if (dtf_bias_backward(db, dy) < 0)
        raise_core(L);
    lua_settop(L, 1);
    return 1;
}

/* The conv workspace: the tensor at arg if given (numel >= need), else the
 * module's cached one (upvalue 1, a table holding it at [1]), grown as
 * needed, so steady-state calls allocate nothing. */
static float *workspace(lua_State *L, int arg, size_t need, size_t *have)
{
    dtf_tensor *w = opt_tensor(L, arg);
    if (w) {
        if (!dtf_is_contiguous(w) || (size_t)dtf_numel(w) < need)
            luaL_argerror(L, arg, lua_pushfstring(L, "workspace needs %d contiguous floats",
                                                  (int)need));
        *have = (size_t)dtf_numel(w);
        return dtf_data(w);
    }
    if (need == 0) {
        *have = 0;
        return NULL;
    }
    lua_rawgeti(L, lua_upvalueindex(1), 1);
    w = ltensor_test(L, -1);
    lua_pop(L, 1); /* still referenced by the cache table */
    if (!w || (size_t)dtf_numel(w) < need) {
        int64_t n = (int64_t)need;
        w = ltensor_push_new(L, 1, &n);
        lua_rawseti(L, lua_upvalueindex(1), 1);
    }
    *have = (size_t)dtf_numel(w);
    return dtf_data(w);
}

static int conv_int(lua_State *L, int arg, int lo)
{
    lua_Integer v = luaL_checkinteger(L, arg);
    luaL_argcheck(L, v >= lo && v <= 1 << 20, arg, lo ? "must be >= 1" : "must be >= 0");
    return (int)v;
}

static int l_conv2d(lua_State *L)
{
    dtf_tensor *x = ltensor_check(L, 2), *w = ltensor_check(L, 3);
    dtf_tensor *b = opt_tensor(L, 4);
    int stride = conv_int(L, 5, 1), pad = conv_int(L, 6, 0);
    size_t need = dtf_conv2d_workspace(x, w, stride, pad);
    dtf_tensor dummy = {0}, *y = &dummy;
    if (x->ndim == 4 && w->ndim == 4 && x->shape[1] == w->shape[1]
        && x->shape[2] + 2 * pad >= w->shape[2] && x->shape[3] + 2 * pad >= w->shape[3]) {
        int64_t s[4] = {x->shape[0], w->shape[0], (x->shape[2] + 2 * pad - w->shape[2]) / stride + 1,
                        (x->shape[3] + 2 * pad - w->shape[3]) / stride + 1};
        y = out_or_new(L, 1, 4, s);
    }
    size_t have = 0;
    float *ws = y == &dummy ? NULL : workspace(L, 7, need, &have);
    if (dtf_conv2d(y, x, w, b, stride, pad, ws, have) < 0)
        raise_core(L);
    lua_settop(L, 1);
    return 1;
}

/* A convolution's dw (argument 2) and db (3): nil allocates them (shaped
 * like w, and w's output channels), false skips them, else the tensor. */
static void conv_param_grads(lua_State *L, const dtf_tensor *w, dtf_tensor **dw, dtf_tensor **db)
{
    *dw = *db = NULL;
    if (lua_isnoneornil(L, 2))
        *dw = out_or_new(L, 2, w->ndim, w->shape);
    else if (lua_toboolean(L, 2))
        *dw = ltensor_check(L, 2);
    if (lua_isnoneornil(L, 3)) {
        int64_t o = w->ndim ? w->shape[0] : 0;
        *db = out_or_new(L, 3, 1, &o);
    } else if (lua_toboolean(L, 3)) {
        *db = ltensor_check(L, 3);
    }
}

static int l_conv2d_backward(lua_State *L)
{
    dtf_tensor *dy = ltensor_check(L, 4), *x = ltensor_check(L, 5), *w = ltensor_check(L, 6);
    int stride = conv_int(L, 7, 1), pad = conv_int(L, 8, 0);
    dtf_tensor *dx = lua_toboolean(L, 1) ? ltensor_check(L, 1) : NULL;
    size_t need = dtf_conv2d_workspace(x, w, stride, pad);
    dtf_tensor *dw, *db;
    conv_param_grads(L, w, &dw, &db);
    size_t have = 0;
    float *ws = workspace(L, 9, need, &have);
    if (dtf_conv2d_backward(dx, dw, db, dy, x, w, stride, pad, ws, have) < 0)
        raise_core(L);
    lua_settop(L, 3);
    return 3;
}

/* linear(y, x, w, b [, relu]) -> y: y = x w^T + b (ReLU'd if relu); y nil
 * allocates it. */
static int l_linear(lua_State *L)
{
    dtf_tensor *x = ltensor_check(L, 2), *w = ltensor_check(L, 3), *b = opt_tensor(L, 4);
    int relu = lua_toboolean(L, 5);
    int64_t s[2] = {x->ndim == 2 ? x->shape[0] : 0, w->ndim == 2 ? w->shape[0] : 0};
    dtf_tensor *y = out_or_new(L, 1, 2, s);
    if (dtf_linear(y, x, w, b, relu) < 0)
        raise_core(L);
    lua_settop(L, 1);
    return 1;
}

/* linear_backward(dx, dw, db, dy, x, w [, y, dym]) -> dx: dx, dw, db nil or
 * false skip them; y (the ReLU output) and dym (its masked gradient's
 * workspace) for a linear layer with ReLU. */
static int l_linear_backward(lua_State *L)
{
    dtf_tensor *dx = lua_toboolean(L, 1) ? ltensor_check(L, 1) : NULL;
    dtf_tensor *dw = lua_toboolean(L, 2) ? ltensor_check(L, 2) : NULL;
    dtf_tensor *db = lua_toboolean(L, 3) ? ltensor_check(L, 3) : NULL;
    dtf_tensor *dy = ltensor_check(L, 4), *x = ltensor_check(L, 5), *w = ltensor_check(L, 6);
    dtf_tensor *y = opt_tensor(L, 7), *dym = opt_tensor(L, 8);
    if (dtf_linear_backward(dx, dw, db, dy, x, w, y, dym) < 0)
        raise_core(L);
    lua_settop(L, 1);
    return 1;
}

/* conv2d_relu_pool(y, x, w, b, stride, pad [, idx [, ws]]) -> y, idx: the
 * fused block; idx nil computes no indices (inference). */
static int l_conv2d_relu_pool(lua_State *L)
{
    dtf_tensor *x = ltensor_check(L, 2), *w = ltensor_check(L, 3);
    dtf_tensor *b = opt_tensor(L, 4), *idx = opt_tensor(L, 7);
    int stride = conv_int(L, 5, 1), pad = conv_int(L, 6, 0);
    size_t need = dtf_conv2d_workspace(x, w, stride, pad);
    dtf_tensor dummy = {0}, *y = &dummy;
    if (x->ndim == 4 && w->ndim == 4 && x->shape[1] == w->shape[1]
        && x->shape[2] + 2 * pad >= w->shape[2] && x->shape[3] + 2 * pad >= w->shape[3]) {
        int64_t s[4] = {x->shape[0], w->shape[0],
                        ((x->shape[2] + 2 * pad - w->shape[2]) / stride + 1) / 2,
                        ((x->shape[3] + 2 * pad - w->shape[3]) / stride + 1) / 2};
        y = out_or_new(L, 1, 4, s);
    }
    size_t have = 0;
    float *ws = y == &dummy ? NULL : workspace(L, 8, need, &have);
    if (dtf_conv2d_relu_pool(y, idx, x, w, b, stride, pad, ws, have) < 0)
        raise_core(L);
    lua_settop(L, 7); /* y and idx (nil when not asked for) */
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 7);
    return 2;
}

/* conv2d_relu_pool_backward(dx, dw, db, dy, y, idx, x, w, stride, pad [, ws])
 * -> dx, dw, db; dx nil or false skips it, dw and db false skip them. */
static int l_conv2d_relu_pool_backward(lua_State *L)
{
    dtf_tensor *dy = ltensor_check(L, 4), *y = ltensor_check(L, 5), *idx = ltensor_check(L, 6);
    dtf_tensor *x = ltensor_check(L, 7), *w = ltensor_check(L, 8);
    int stride = conv_int(L, 9, 1), pad = conv_int(L, 10, 0);
    dtf_tensor *dx = lua_toboolean(L, 1) ? ltensor_check(L, 1) : NULL;
    dtf_tensor *dw, *db;
    conv_param_grads(L, w, &dw, &db);
    size_t have = 0;
    float *ws = workspace(L, 11, dtf_conv2d_workspace(x, w, stride, pad), &have);
    if (dtf_conv2d_relu_pool_backward(dx, dw, db, dy, y, idx, x, w, stride, pad, ws, have) < 0)
        raise_core(L);
    lua_settop(L, 3);
    return 3;
}

static int l_maxpool2d(lua_State *L)
{
    dtf_tensor *x = ltensor_check(L, 2);
    if (x->ndim != 4) {
        char b[96];
        return luaL_error(L, "maxpool2d: x (%s) must be (N,C,H,W)", shape_of(x, b));
    }
    int64_t s[4] = {x->shape[0], x->shape[1], x->shape[2] / 2, x->shape[3] / 2};
    dtf_tensor *y = out_or_new(L, 1, 4, s);
    dtf_tensor *idx = out_or_new(L, 3, 4, s);
    if (dtf_maxpool2d(y, idx, x) < 0)
        raise_core(L);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 3);
    return 2;
}

static int l_maxpool2d_backward(lua_State *L)
{
    dtf_tensor *dy = ltensor_check(L, 2), *idx = ltensor_check(L, 3);
    if (dy->ndim != 4) {
        char b[96];
        return luaL_error(L, "maxpool2d_backward: dy (%s) must be (N,C,OH,OW)", shape_of(dy, b));
    }
    int64_t s[4] = {dy->shape[0], dy->shape[1], dy->shape[2] * 2, dy->shape[3] * 2};
    dtf_tensor *dx = out_or_new(L, 1, 4, s);
    if (dtf_maxpool2d_backward(dx, dy, idx) < 0)
        raise_core(L);
    lua_settop(L, 1);
    return 1;
}

/* ======================================================================
 * Optimizer step, misc
 * ==================================================================== */

static dtf_tensor *flat_arg(lua_State *L, int arg, const char *name, int64_t n)
{
    dtf_tensor *t = ltensor_check(L, arg);
    char b1[96], b2[96];
    if (!dtf_is_contiguous(t))
        luaL_error(L, "optim_step: %s (%s) must be contiguous", name, shape_of(t, b1));
    if (dtf_numel(t) != n) {
        dtf_tensor *p = ltensor_check(L, 2);
        luaL_error(L, "optim_step: param (%s) and %s (%s) do not match", shape_of(p, b1), name,
                   shape_of(t, b2));
    }
    return t;
}

static int l_optim_step(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int kind = dtf_optim_kind_from_name(name);
    if (kind < 0)
        return luaL_argerror(L, 1, dtf_error());
    dtf_tensor *p = ltensor_check(L, 2);
    if (!dtf_is_contiguous(p)) {
        char b[96];
        return luaL_error(L, "optim_step: param (%s) must be contiguous", shape_of(p, b));
    }
    int64_t n = dtf_numel(p);
    dtf_tensor *g = flat_arg(L, 3, "grad", n);
    lua_Integer step = luaL_checkinteger(L, 6);
    if (!lua_isnoneornil(L, 7))
        luaL_checktype(L, 7, LUA_TTABLE);
    dtf_optim o;
    lopt_optim(L, 7, "optim_step", (dtf_optim_kind)kind, &o, NULL);
    if (o.kind != (dtf_optim_kind)kind)
        return luaL_error(L, "optim_step: the settings are for %s, the step for %s",
                          dtf_optim_kind_name(o.kind), name);
    int ns = dtf_optim_nslots(&o);
    float *s0 = ns > 0 ? dtf_data(flat_arg(L, 4, "slot0", n)) : NULL;
    float *s1 = ns > 1 ? dtf_data(flat_arg(L, 5, "slot1", n)) : NULL;
    if (ns > 1 && s0 == s1)
        return luaL_error(L, "optim_step: %s needs two distinct slots", name);
    if (lua_toboolean(L, 8)) /* zero_grad: grad cleared in the same pass */
        dtf_optim_apply_zero(&o, dtf_data(p), dtf_data(g), s0, s1, (size_t)n, (int64_t)step);
    else
        dtf_optim_apply(&o, dtf_data(p), dtf_data(g), s0, s1, (size_t)n, (int64_t)step);
    lua_settop(L, 2);
    return 1;
}

static int l_checksum(lua_State *L)
{
    uint64_t h = dtf_tensor_hash(ltensor_check(L, 1), DTF_FNV_SEED);
    char s[17];
    snprintf(s, sizeof s, "%016llx", (unsigned long long)h);
    lua_pushstring(L, s);
    return 1;
}

static int l_set_num_threads(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 1024, 1, "must be in 1..1024");
    dtf_set_num_threads((int)n);
    return 0;
}

/* A recorded run of sgemm calls (bench/step.lua's matmul-only bound). */
typedef struct gemm_trace {
    size_t n;
    dtf_gemm_call calls[];
} gemm_trace;

#define TRACE_CAP 65536
#define TRACE_MT "dtf.GemmTrace"

/* gemm_trace(fn, ...) -> trace, n: runs fn(...) and records every sgemm
 * the kernels call meanwhile; gemm_replay(trace) runs those alone. */
static int l_gemm_trace(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 1;
    gemm_trace *t = lua_newuserdatauv(L, sizeof *t + TRACE_CAP * sizeof t->calls[0], 1);
    t->n = 0;
    luaL_newmetatable(L, TRACE_MT);
    lua_setmetatable(L, -2);
    lua_insert(L, 1); /* trace below fn and its arguments */
    dtf_gemm_record(t->calls, TRACE_CAP);
    int rc = lua_pcall(L, nargs, 0, 0);
    t->n = dtf_gemm_recorded();
    dtf_gemm_record(NULL, 0);
    if (rc != LUA_OK)
        return lua_error(L);
    if (t->n > TRACE_CAP)
        return luaL_error(L, "gemm_trace: %d sgemm calls, more than %d", (int)t->n, TRACE_CAP);
    lua_pushinteger(L, (lua_Integer)t->n);
    return 2;
}

static int l_gemm_replay(lua_State *L)
{
    gemm_trace *t = luaL_checkudata(L, 1, TRACE_MT);
    lua_getiuservalue(L, 1, 1);
    dtf_tensor *scratch = ltensor_test(L, -1);
    if (!scratch) { /* first replay: its operands, kept with the trace */
        int64_t n = (int64_t)dtf_gemm_replay_scratch(t->calls, t->n) + 1;
        scratch = ltensor_push_new(L, 1, &n);
        dtf_fill_uniform(scratch, &(dtf_rng){{1, 2, 3, 4}}, -1, 1);
        lua_setiuservalue(L, 1, 1);
    }
    if (dtf_gemm_replay(t->calls, t->n, dtf_data(scratch), (size_t)dtf_numel(scratch)) < 0)
        raise_core(L);
    return 0;
}

/* "OpenBLAS 0.3.21, core SkylakeX (OpenBLAS picked Prescott)" and the core. */
static int l_blas_info(lua_State *L)
{
    lua_pushstring(L, dtf_blas_info());
    lua_pushstring(L, dtf_blas_core());
    return 2;
}

/* denormals(['flush'|'keep']) sets this thread's mode when given; returns
 * the mode in force ('flush' or 'keep'). */
static int l_denormals(lua_State *L)
{
    static const char *const modes[] = {"keep", "flush", NULL};
    if (!lua_isnoneornil(L, 1)) {
        int on = luaL_checkoption(L, 1, NULL, modes);
        if (dtf_fp_flush_denormals(on) < 0)
            return luaL_error(L, "denormals: %s", dtf_error());
    }
    lua_pushstring(L, modes[dtf_fp_flushing()]);
    return 1;
}

/* The cores this process may keep busy (affinity mask, cgroup quota). */
static int l_usable_cores(lua_State *L)
{
    lua_pushinteger(L, dtf_cpu_usable());
    return 1;
}

static int l_is_tensor(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, LTENSOR_MT) != NULL);
    return 1;
}

/* ======================================================================
 * Registration
 * ==================================================================== */

static const luaL_Reg methods[] = {
    {"normal_", t_normal_}, {"uniform_", t_uniform_}, {"fill", t_fill}, {"zero", t_zero},
    {"copy", t_copy}, {"dim", t_dim}, {"size", t_size}, {"numel", t_numel},
    {"stride", t_stride}, {"is_contiguous", t_is_contiguous}, {"totable", t_totable},
    {"get", t_get}, {"set", t_set}, {"view", t_view}, {"reshape", t_reshape},
    {"narrow", t_narrow}, {"select", t_select}, {"transpose", t_transpose}, {"t", t_t},
    {"contiguous", t_contiguous}, {"clone", t_clone},
    {"add", t_add}, {"sub", t_sub}, {"mul", t_mul}, {"div", t_div},
    {"add_", t_add_}, {"sub_", t_sub_}, {"mul_", t_mul_}, {"div_", t_div_},
    {"sum", t_sum}, {"mean", t_mean}, {"max", t_max}, {"argmax", t_argmax},
    {"checksum", l_checksum},
    {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", t_gc}, {"__close", t_gc}, {"__tostring", ltensor_tostring}, {"__len", t_len},
    {"__newindex", t_newindex}, {"__add", m_add}, {"__sub", m_sub}, {"__mul", m_mul},
    {"__div", m_div}, {"__unm", m_unm},
    {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full}, {"from", l_from}, {"rng", l_rng},
    {"matmul", l_matmul}, {"relu", l_relu}, {"relu_backward", l_relu_backward},
    {"softmax", l_softmax}, {"log_softmax", l_log_softmax},
    {"cross_entropy", l_cross_entropy}, {"accuracy", l_accuracy},
    {"bias_backward", l_bias_backward},
    {"maxpool2d", l_maxpool2d}, {"maxpool2d_backward", l_maxpool2d_backward},
    {"optim_step", l_optim_step}, {"checksum", l_checksum},
    {"set_num_threads", l_set_num_threads}, {"is_tensor", l_is_tensor},
    {"linear", l_linear}, {"linear_backward", l_linear_backward},
    {"gemm_trace", l_gemm_trace}, {"gemm_replay", l_gemm_replay},
    {"blas_info", l_blas_info}, {"denormals", l_denormals}, {"usable_cores", l_usable_cores},
    {NULL, NULL}};

static const luaL_Reg rng_methods[] = {
    {"uniform", rng_uniform}, {"normal", rng_normal}, {"below", rng_below}, {NULL, NULL}};

int luaopen_dtf_tensor(lua_State *L)
{
    static const luaL_Reg rng_meta[] = {{"__tostring", rng_tostring}, {NULL, NULL}};
    lopt_newclass(L, RNG_MT, rng_meta, rng_methods);

    /* dtf.Tensor: __index looks numbers up itself and methods in upvalue 1 */
    luaL_newmetatable(L, LTENSOR_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "methods");
    lua_pushcclosure(L, t_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newlib(L, functions);
    /* conv2d and its backward share the cached workspace */
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_conv2d, 1);
    lua_setfield(L, -3, "conv2d");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_conv2d_backward, 1);
    lua_setfield(L, -3, "conv2d_backward");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_conv2d_relu_pool, 1);
    lua_setfield(L, -3, "conv2d_relu_pool");
    lua_pushcclosure(L, l_conv2d_relu_pool_backward, 1);
    lua_setfield(L, -2, "conv2d_relu_pool_backward");
    /* the methods, so Lua code can extend them */
    luaL_getmetatable(L, LTENSOR_MT);
    lua_getfield(L, -1, "methods");
    lua_setfield(L, -3, "Tensor");
    lua_pop(L, 1);
    return 1;
}
