/* lckpt: module dtf.ckpt, the Lua face of ckpt.c (safetensors checkpoints).
 *
 *   ckpt.save(path, tensors [, metadata]) -> true | nil, err
 *       tensors: a list { {name=, tensor=}, ... } (written in that order)
 *       or a map { name = tensor } (written sorted by name); metadata: a
 *       table of string keys to strings, numbers or booleans (stored as
 *       strings, sorted by key). Written atomically (tmp, fsync, rename).
 *   ckpt.load(path) -> tensors, metadata, names | nil, err
 *       tensors: name -> new tensor; metadata: key -> string; names: the
 *       tensor names in file order.
 *   ckpt.name(step, shard, nps) -> "ckpt-00001200-ps0-of-2.safetensors"
 *   ckpt.parse_name(name_or_path) -> step, shard, nps | nil (nps 0: an
 *       older name without it)
 *   ckpt.list(dir [, shard]) -> { path, ... } oldest first (by step, then
 *       shard); a missing dir gives {}; nil, err on other errors
 *   ckpt.latest(dir, shard) -> path, step | nil (none) | nil, err
 *   ckpt.prune(dir, shard, keep) -> number deleted | nil, err
 *
 * Misuse (a non-tensor, a bad name) raises; I/O and format problems return
 * nil, err with a message naming the file. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "lmodules.h"
#include "lopt.h"
#include "ltensor.h"

#define BOX_MT "dtf.CkptBox"
#define LIST_MT "dtf.CkptList"

/* ---- save ---------------------------------------------------------------- */

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const dtf_kv *)a)->key, ((const dtf_kv *)b)->key);
}

static int in_cmp(const void *a, const void *b)
{
    return strcmp(((const dtf_ckpt_in *)a)->name, ((const dtf_ckpt_in *)b)->name);
}

/* Fills e from tensor t named name. A strided tensor is copied into a new
 * contiguous one, left on the stack (the caller's anchor). */
static void fill_in(lua_State *L, dtf_ckpt_in *e, const char *name, dtf_tensor *t)
{
    if (!dtf_is_contiguous(t)) {
        luaL_checkstack(L, 2, "too many tensors");
        dtf_tensor *c = ltensor_push_new(L, t->ndim, t->shape);
        if (dtf_copy(c, t) < 0)
            luaL_error(L, "ckpt.save: tensor '%s': %s", name, dtf_error());
        t = c;
    }
    e->name = name;
    e->ndim = t->ndim;
    e->shape = t->shape;
    e->data = dtf_numel(t) ? dtf_data(t) : NULL;
    e->count = (size_t)dtf_numel(t);
}

/* Counts a table's entries (a list's, or every key's). */
static size_t count_entries(lua_State *L, int t, int is_list)
{
    if (is_list)
        return lua_rawlen(L, t);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        n++;
    }
    return n;
}

/* The list form {{name=, tensor=}, ...} at 2 into in[0..nt); anchors the
 * strings and copies in the table at 6. */
static void tensors_from_list(lua_State *L, dtf_ckpt_in *in, size_t nt, int *anchors)
{
    for (size_t i = 0; i < nt; i++) {
        if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TTABLE)
            luaL_error(L, "ckpt.save: tensors[%d] is not a {name=, tensor=} table", (int)i + 1);
        int e = lua_gettop(L);
        if (lua_getfield(L, e, "name") != LUA_TSTRING)
            luaL_error(L, "ckpt.save: tensors[%d].name is not a string", (int)i + 1);
        const char *name = lua_tostring(L, -1);
        lua_getfield(L, e, "tensor");
        dtf_tensor *t = ltensor_test(L, -1);
        if (!t)
            luaL_error(L, "ckpt.save: tensors[%d].tensor ('%s') is not a tensor", (int)i + 1, name);
        /* keep the entry table (it anchors name and tensor) */
        lua_rawseti(L, 6, ++*anchors);      /* tensor */
        lua_rawseti(L, 6, ++*anchors);      /* name */
        lua_rawseti(L, 6, ++*anchors);      /* entry */
        int top = lua_gettop(L);
        fill_in(L, &in[i], name, t);
        if (lua_gettop(L) > top)
            lua_rawseti(L, 6, ++*anchors);  /* the contiguous copy */
    }
}

/* The map form {name = tensor} at 2, sorted by name. */
static void tensors_from_map(lua_State *L, dtf_ckpt_in *in, size_t nt, int *anchors)
{
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "ckpt.save: tensor keys must be names (strings), got %s",
                       luaL_typename(L, -2));
        dtf_tensor *t = ltensor_test(L, -1);
        if (!t)
            luaL_error(L, "ckpt.save: tensors.%s is not a tensor", lua_tostring(L, -2));
        int top = lua_gettop(L);
        fill_in(L, &in[i++], lua_tostring(L, -2), t);  /* the key is anchored by the table */
        if (lua_gettop(L) > top)
            lua_rawseti(L, 6, ++*anchors);
        lua_pop(L, 1);
    }
    qsort(in, nt, sizeof *in, in_cmp);
}

/* The metadata table at 3 into kv[0..nm), sorted by key; values become
 * strings anchored in the table at 6. */
static void metadata_from_table(lua_State *L, dtf_kv *kv, size_t nm, int *anchors)
{
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "ckpt.save: metadata keys must be strings, got %s", luaL_typename(L, -2));
        int ty = lua_type(L, -1);
        if (ty != LUA_TSTRING && ty != LUA_TNUMBER && ty != LUA_TBOOLEAN)
            luaL_error(L, "ckpt.save: metadata.%s must be a string, number or boolean, got %s",
                       lua_tostring(L, -2), luaL_typename(L, -1));
        kv[i].key = lua_tostring(L, -2);
        kv[i].value = luaL_tolstring(L, -1, NULL);     /* a new string: anchor it */
        lua_rawseti(L, 6, ++*anchors);
        lua_pop(L, 1);
        i++;
    }
    qsort(kv, nm, sizeof *kv, kv_cmp);
}

static int ckpt_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    /* Count first, so the arrays can live in userdata (freed by the GC if
     * anything below raises). */
    int is_list = lua_rawlen(L, 2) > 0;
    size_t nt = count_entries(L, 2, is_list);
    size_t nm = lua_isnil(L, 3) ? 0 : count_entries(L, 3, 0);
    dtf_ckpt_in *in = lua_newuserdatauv(L, (nt ? nt : 1) * sizeof *in, 0);   /* 4 */
    dtf_kv *kv = lua_newuserdatauv(L, (nm ? nm : 1) * sizeof *kv, 0);       /* 5 */
    lua_newtable(L);        /* 6: anchors for converted strings */
    int anchors = 0;
    if (is_list)
        tensors_from_list(L, in, nt, &anchors);
    else
        tensors_from_map(L, in, nt, &anchors);
    if (nm)
        metadata_from_table(L, kv, nm, &anchors);
    if (dtf_ckpt_save(path, in, nt, kv, nm) < 0)
        return lopt_fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- load ---------------------------------------------------------------- */

typedef struct { dtf_ckpt *c; } ckbox;

static int box_gc(lua_State *L)
{
    ckbox *b = luaL_checkudata(L, 1, BOX_MT);
    dtf_ckpt_free(b->c);
    b->c = NULL;
    return 0;
}

static int ckpt_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    ckbox *b = lua_newuserdatauv(L, sizeof *b, 0);     /* 2 */
    b->c = NULL;
    luaL_setmetatable(L, BOX_MT);
    b->c = dtf_ckpt_load(path);
    if (!b->c)
        return lopt_fail(L);
    dtf_ckpt *c = b->c;
    for (size_t i = 0; i < c->nt; i++)
        if (c->t[i].ndim > DTF_MAXDIM) {
            luaL_pushfail(L);
            lua_pushfstring(L, "%s: tensor '%s' has %d dimensions, dtf tensors at most %d",
                            path, c->t[i].name, c->t[i].ndim, DTF_MAXDIM);
            return 2;
        }
    lua_createtable(L, 0, (int)c->nt);        /* 3: tensors */
    lua_createtable(L, 0, (int)c->nmeta);     /* 4: metadata */
    lua_createtable(L, (int)c->nt, 0);        /* 5: names */
    for (size_t i = 0; i < c->nt; i++) {
        const dtf_ckpt_tensor *ct = &c->t[i];
        dtf_tensor *t = ltensor_push_new(L, ct->ndim, ct->shape);
        if (ct->count)
            memcpy(dtf_data(t), ct->data, ct->count * sizeof(float));
        lua_setfield(L, 3, ct->name);
        lua_pushstring(L, ct->name);
        lua_rawseti(L, 5, (lua_Integer)i + 1);
    }
    for (size_t i = 0; i < c->nmeta; i++) {
        lua_pushstring(L, c->meta[i].value);
        lua_setfield(L, 4, c->meta[i].key);
    }
    dtf_ckpt_free(c);
    b->c = NULL;
    return 3;
}

/* ---- names and listing --------------------------------------------------- */

static unsigned check_shard(lua_State *L, int arg)
{
    lua_Integer s = luaL_checkinteger(L, arg);
    luaL_argcheck(L, s >= 0 && s <= 0xffffff, arg, "shard out of range 0..2^24");
    return (unsigned)s;
}

static int ckpt_name(lua_State *L)
{
    lua_Integer step = luaL_checkinteger(L, 1);
    luaL_argcheck(L, step >= 0, 1, "step must be >= 0");
    unsigned shard = check_shard(L, 2);
    lua_Integer nps = luaL_checkinteger(L, 3);
    luaL_argcheck(L, nps > (lua_Integer)shard && nps <= 0xffffff, 3, "nps must be > shard");
    char buf[96];
    dtf_ckpt_name(buf, sizeof buf, (uint64_t)step, shard, (unsigned)nps);
    lua_pushstring(L, buf);
    return 1;
}

static int ckpt_parse_name(lua_State *L)
{
    const char *p = luaL_checkstring(L, 1);
    const char *slash = strrchr(p, '/');
    uint64_t step;
    unsigned shard, nps;
    if (dtf_ckpt_parse_name(slash ? slash + 1 : p, &step, &shard, &nps) < 0 ||
        step > LUA_MAXINTEGER) {
        luaL_pushfail(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)step);
    lua_pushinteger(L, shard);
    lua_pushinteger(L, nps);
    return 3;
}

/* A list of files in a userdata box so that raising frees it. */
typedef struct { dtf_ckpt_file *f; size_t n; } listbox;

static int list_gc(lua_State *L)
{
    listbox *b = lua_touserdata(L, 1);
    dtf_ckpt_list_free(b->f, b->n);
    b->f = NULL;
    b->n = 0;
    return 0;
}

static listbox *list_files(lua_State *L, const char *dir, int shard)
{
    listbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->f = NULL;
    b->n = 0;
    luaL_setmetatable(L, LIST_MT);
    if (dtf_ckpt_list(dir, shard, &b->f, &b->n) < 0)
        return NULL;
    return b;
}

static int ckpt_list(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    int shard = lua_isnoneornil(L, 2) ? -1 : (int)check_shard(L, 2);
    listbox *b = list_files(L, dir, shard);
    if (!b)
        return lopt_fail(L);
    lua_createtable(L, (int)b->n, 0);
    for (size_t i = 0; i < b->n; i++) {
        lua_pushstring(L, b->f[i].path);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int ckpt_latest(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    unsigned shard = check_shard(L, 2);
    listbox *b = list_files(L, dir, (int)shard);
    if (!b)
        return lopt_fail(L);
    if (b->n == 0) {
        luaL_pushfail(L);
        return 1;
    }
    lua_pushstring(L, b->f[b->n - 1].path);
    lua_pushinteger(L, (lua_Integer)b->f[b->n - 1].step);
    return 2;
}

static int ckpt_prune(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    unsigned shard = check_shard(L, 2);
    lua_Integer keep = luaL_checkinteger(L, 3);
    luaL_argcheck(L, keep >= 0, 3, "keep must be >= 0");
    int n = dtf_ckpt_prune(dir, shard, (size_t)keep);
    if (n < 0)
        return lopt_fail(L);
    lua_pushinteger(L, n);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"save", ckpt_save}, {"load", ckpt_load}, {"name", ckpt_name},
    {"parse_name", ckpt_parse_name}, {"list", ckpt_list}, {"latest", ckpt_latest},
    {"prune", ckpt_prune}, {NULL, NULL},
};

int luaopen_dtf_ckpt(lua_State *L)
{
    static const luaL_Reg box_meta[] = {{"__gc", box_gc}, {NULL, NULL}};
    static const luaL_Reg list_meta[] = {{"__gc", list_gc}, {NULL, NULL}};
    lopt_newclass(L, BOX_MT, box_meta, NULL);
    lopt_newclass(L, LIST_MT, list_meta, NULL);
    luaL_newlib(L, funcs);
    return 1;
}
