/* ldata: module dtf.data, the Lua face of data.c.
 *
 *   data.load(images, labels)      -> dataset | nil, err
 *   data.mnist([dir [, split]])    -> dataset | nil, err
 *       split "train" (default) or "test"; dir defaults to
 *       /usr/share/datasets/fashion-mnist; finds
 *       {train,t10k}-{images-idx3,labels-idx1}-ubyte, plain or .gz
 *   ds:count()  #ds  ds:shape() -> rows, cols  ds:label(i) (1-based)
 *   ds:example(i) -> x (rows, cols), label    one example, 1-based
 *   ds:paths() -> images, labels
 *   ds:loader{batchsize=64, seed=1, shard=0, shards=1, shuffle=true,
 *             drop_last=true} -> loader
 *   loader:next([x [, y]]) -> n, x, y
 *       fills x (any contiguous tensor of batchsize*rows*cols floats) and
 *       y (batchsize floats, class values) with the next batch; nil
 *       allocates x (batchsize, rows*cols) / y (batchsize). n is the rows
 *       filled (< batchsize only for a last partial batch without
 *       drop_last; rows past n are zeroed). Epochs roll over by themselves.
 *   loader:epoch()  loader:position()  loader:batches_per_epoch()
 *   loader:shard_size()  loader:batchsize()  loader:seek(epoch, batch)
 *   for x, y, n in ds:batches(bs) do ... end
 *       the whole set in order; x (n, rows*cols), y (n); the same two
 *       buffers are refilled each step (a shorter view for the last batch).
 *
 * shard is 0-based like a task index. The dataset and its loaders keep the
 * uint8 bytes only; floats exist one batch at a time. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "lmodules.h"
#include "lopt.h"
#include "ltensor.h"

#define DATASET_MT "dtf.Dataset"
#define LOADER_MT "dtf.Loader"
#define DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

typedef struct { dtf_dataset *ds; } dsbox;
typedef struct { dtf_loader *l; } ldbox;

/* ---- datasets ------------------------------------------------------------ */

static dtf_dataset *check_ds(lua_State *L, int idx)
{
    dsbox *b = luaL_checkudata(L, idx, DATASET_MT);
    if (!b->ds)
        luaL_argerror(L, idx, "dataset was released");
    return b->ds;
}

static int ds_gc(lua_State *L)
{
    dsbox *b = luaL_checkudata(L, 1, DATASET_MT);
    dtf_dataset_free(b->ds);
    b->ds = NULL;
    return 0;
}

/* Pushes a dataset, or nil and the message. The box exists before the
 * load, so nothing can raise while the C dataset is unowned. */
static int push_loaded(lua_State *L, const char *images, const char *labels)
{
    dsbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->ds = NULL;
    luaL_setmetatable(L, DATASET_MT);
    b->ds = dtf_dataset_load(images, labels);
    if (!b->ds) {
        luaL_pushfail(L);
        lua_pushstring(L, dtf_error());
        return 2;
    }
    return 1;
}

/* data.load(images [, labels]): without labels, the images alone */
static int d_load(lua_State *L)
{
    const char *images = luaL_checkstring(L, 1);
    const char *labels = luaL_optstring(L, 2, NULL);
    return push_loaded(L, images, labels);
}

/* dir/name if it exists, else dir/name.gz if it exists, else NULL. */
static const char *find_file(lua_State *L, const char *dir, const char *name)
{
    const char *p = lua_pushfstring(L, "%s/%s", dir, name);
    if (access(p, F_OK) == 0)
        return p;
    lua_pop(L, 1);
    p = lua_pushfstring(L, "%s/%s.gz", dir, name);
    if (access(p, F_OK) == 0)
        return p;
    lua_pop(L, 1);
    return NULL;
}

/* The image and label files of a split of dir (pushed), or a message
 * saying which one is missing and how to get them (pushed); 0 or -1. */
static int mnist_files(lua_State *L, const char *dir, int split, const char **images,
                       const char **labels)
{
    const char *prefix = split == 0 ? "train" : "t10k";
    char iname[64], lname[64];
    snprintf(iname, sizeof iname, "%s-images-idx3-ubyte", prefix);
    snprintf(lname, sizeof lname, "%s-labels-idx1-ubyte", prefix);
    *images = find_file(L, dir, iname);
    *labels = *images ? find_file(L, dir, lname) : NULL;
    if (*images && *labels)
        return 0;
    lua_pushfstring(L, "%s: no %s or %s.gz (the %s split of MNIST / Fashion-MNIST; "
                    "`apt-get install dataset-fashion-mnist` puts it in %s, or set datadir=DIR)",
                    dir, *images ? lname : iname, *images ? lname : iname,
                    split == 0 ? "train" : "test", DEFAULT_DIR);
    return -1;
}

static int d_mnist(lua_State *L)
{
    const char *dir = luaL_optstring(L, 1, DEFAULT_DIR);
    static const char *const splits[] = {"train", "test", NULL};
    int split = luaL_checkoption(L, 2, "train", splits);
    const char *images, *labels;
    if (mnist_files(L, dir, split, &images, &labels) < 0) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    return push_loaded(L, images, labels);
}

/* data.mnist_count(dir, split) -> examples | nil, err: reads the labels
 * alone (a ps needs the training's length, not its images). */
static int d_mnist_count(lua_State *L)
{
    const char *dir = luaL_optstring(L, 1, DEFAULT_DIR);
    static const char *const splits[] = {"train", "test", NULL};
    int split = luaL_checkoption(L, 2, "train", splits);
    const char *images, *labels;
    if (mnist_files(L, dir, split, &images, &labels) < 0) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    uint8_t *buf;
    dtf_idx idx;
    if (dtf_idx_read(labels, DTF_IDX_LABELS, &buf, &idx) < 0)
        return lopt_fail(L);
    free(buf);
    lua_pushinteger(L, idx.n);
    return 1;
}

static int ds_count(lua_State *L)
{
    lua_pushinteger(L, dtf_dataset_count(check_ds(L, 1)));
    return 1;
}

static int ds_shape(lua_State *L)
{
    dtf_dataset *ds = check_ds(L, 1);
    lua_pushinteger(L, dtf_dataset_rows(ds));
    lua_pushinteger(L, dtf_dataset_cols(ds));
    return 2;
}

static uint32_t check_index(lua_State *L, dtf_dataset *ds, int arg)
{
    lua_Integer i = luaL_checkinteger(L, arg);
    uint32_t n = dtf_dataset_count(ds);
    luaL_argcheck(L, i >= 1 && i <= (lua_Integer)n, arg,
                  lua_pushfstring(L, "example %I out of range 1..%d", (LUAI_UACINT)i, (int)n));
    return (uint32_t)(i - 1);
}

static int ds_label(lua_State *L)
{
    dtf_dataset *ds = check_ds(L, 1);
    uint32_t i = check_index(L, ds, 2);
    if (!dtf_dataset_labels(ds))
        luaL_pushfail(L); /* loaded without labels */
    else
        lua_pushinteger(L, dtf_dataset_labels(ds)[i]);
    return 1;
}

static int ds_example(lua_State *L)
{
    dtf_dataset *ds = check_ds(L, 1);
    uint32_t i = check_index(L, ds, 2);
    int64_t shape[2] = {dtf_dataset_rows(ds), dtf_dataset_cols(ds)};
    dtf_tensor *x = ltensor_push_new(L, 2, shape);
    float y;
    if (dtf_dataset_batch(ds, &i, 1, dtf_data(x), &y) < 0)
        return luaL_error(L, "%s", dtf_error());
    lua_pushinteger(L, (lua_Integer)y);
    return 2;
}

static int ds_paths(lua_State *L)
{
    dtf_dataset *ds = check_ds(L, 1);
    lua_pushstring(L, dtf_dataset_images_path(ds));
    lua_pushstring(L, dtf_dataset_labels_path(ds));
    return 2;
}

static int ds_tostring(lua_State *L)
{
    dsbox *b = luaL_checkudata(L, 1, DATASET_MT);
    if (!b->ds)
        lua_pushliteral(L, "dtf.Dataset (released)");
    else
        lua_pushfstring(L, "dtf.Dataset(%d examples of %dx%d, %s)", (int)dtf_dataset_count(b->ds),
                        (int)dtf_dataset_rows(b->ds), (int)dtf_dataset_cols(b->ds),
                        dtf_dataset_images_path(b->ds));
    return 1;
}

/* ---- loader -------------------------------------------------------------- */

static dtf_loader *check_loader(lua_State *L, int idx)
{
    ldbox *b = luaL_checkudata(L, idx, LOADER_MT);
    if (!b->l)
        luaL_argerror(L, idx, "loader was released");
    return b->l;
}

static int ld_gc(lua_State *L)
{
    ldbox *b = luaL_checkudata(L, 1, LOADER_MT);
    dtf_loader_free(b->l);
    b->l = NULL;
    return 0;
}

static int ds_loader(lua_State *L)
{
    dtf_dataset *ds = check_ds(L, 1);
    if (lua_isnoneornil(L, 2))
        lua_newtable(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    /* A misspelt option (batch_size) is an error, not a silent default. */
    static const char *const known[] = {"batchsize", "seed", "shard", "shards", "shuffle",
                                        "drop_last", "limit", NULL};
    lopt_check_keys(L, 2, "loader", known);
    dtf_loader_opts o;
    o.batchsize = (uint32_t)lopt_int(L, 2, "loader", "batchsize", 64, 1, 1 << 24);
    o.seed = (uint64_t)lopt_int(L, 2, "loader", "seed", 1, LUA_MININTEGER, LUA_MAXINTEGER);
    o.shards = (uint32_t)lopt_int(L, 2, "loader", "shards", 1, 1, 1 << 24);
    o.shard = (uint32_t)lopt_int(L, 2, "loader", "shard", 0, 0, (lua_Integer)o.shards - 1);
    o.shuffle = lopt_bool(L, 2, "loader", "shuffle", 1);
    o.drop_last = lopt_bool(L, 2, "loader", "drop_last", 1);
    o.limit = (uint32_t)lopt_int(L, 2, "loader", "limit", 0, 0, dtf_dataset_count(ds));

    ldbox *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->l = NULL;
    luaL_setmetatable(L, LOADER_MT);
    lua_pushvalue(L, 1);            /* the loader keeps its dataset alive */
    lua_setiuservalue(L, -2, 1);
    b->l = dtf_loader_new(ds, &o);
    if (!b->l)
        return luaL_error(L, "loader: %s", dtf_error());
    return 1;
}

/* The dataset a loader at idx reads (kept alive as its user value). */
static dtf_dataset *dataset_of(lua_State *L, int idx)
{
    lua_getiuservalue(L, idx, 1);
    dtf_dataset *ds = check_ds(L, -1);
    lua_pop(L, 1);
    return ds;
}

/* A contiguous tensor at arg holding exactly `want` floats, or nil: then a
 * new tensor (ndim, shape) replaces the nil. */
static dtf_tensor *batch_tensor(lua_State *L, int arg, const char *what, int64_t want,
                                int ndim, const int64_t *shape)
{
    if (lua_isnoneornil(L, arg)) {
        dtf_tensor *t = ltensor_push_new(L, ndim, shape);
        lua_replace(L, arg);
        return t;
    }
    dtf_tensor *t = ltensor_check(L, arg);
    char buf[96];
    if (dtf_numel(t) != want)
        luaL_error(L, "loader:next: %s has %I elements (%s), the batch needs %I", what,
                   (LUAI_UACINT)dtf_numel(t), dtf_shape_str(t, buf, sizeof buf), (LUAI_UACINT)want);
    if (!dtf_is_contiguous(t))
        luaL_error(L, "loader:next: %s (%s) is not contiguous", what,
                   dtf_shape_str(t, buf, sizeof buf));
    return t;
}

static int ld_next(lua_State *L)
{
    dtf_loader *l = check_loader(L, 1);
    dtf_dataset *ds = dataset_of(L, 1);
    lua_settop(L, 3);
    int64_t B = dtf_loader_batchsize(l), P = (int64_t)dtf_dataset_rows(ds) * dtf_dataset_cols(ds);
    int64_t xs[2] = {B, P};
    dtf_tensor *x = batch_tensor(L, 2, "x", B * P, 2, xs);
    dtf_tensor *y = batch_tensor(L, 3, "y", B, 1, &B);
    int n = dtf_loader_next(l, dtf_data(x), dtf_data(y));
    if (n < 0)
        return luaL_error(L, "loader:next: %s", dtf_error());
    lua_pushinteger(L, n);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    return 3;
}

static int ld_epoch(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)dtf_loader_epoch(check_loader(L, 1)));
    return 1;
}

static int ld_position(lua_State *L)
{
    lua_pushinteger(L, dtf_loader_position(check_loader(L, 1)));
    return 1;
}

static int ld_batches_per_epoch(lua_State *L)
{
    lua_pushinteger(L, dtf_loader_batches_per_epoch(check_loader(L, 1)));
    return 1;
}

static int ld_shard_size(lua_State *L)
{
    lua_pushinteger(L, dtf_loader_shard_size(check_loader(L, 1)));
    return 1;
}

static int ld_batchsize(lua_State *L)
{
    lua_pushinteger(L, dtf_loader_batchsize(check_loader(L, 1)));
    return 1;
}

static int ld_seek(lua_State *L)
{
    dtf_loader *l = check_loader(L, 1);
    lua_Integer e = luaL_checkinteger(L, 2), b = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, e >= 1, 2, "epochs count from 1");
    luaL_argcheck(L, b >= 0 && b <= (lua_Integer)dtf_loader_batches_per_epoch(l), 3,
                  "batch out of range");
    if (dtf_loader_seek(l, (uint64_t)e, (uint32_t)b) < 0)
        return luaL_error(L, "loader:seek: %s", dtf_error());
    return 0;
}

static int ld_tostring(lua_State *L)
{
    ldbox *b = luaL_checkudata(L, 1, LOADER_MT);
    if (!b->l)
        lua_pushliteral(L, "dtf.Loader (released)");
    else
        lua_pushfstring(L, "dtf.Loader(batch %d, %d batches per epoch, epoch %d)",
                        (int)dtf_loader_batchsize(b->l), (int)dtf_loader_batches_per_epoch(b->l),
                        (int)dtf_loader_epoch(b->l));
    return 1;
}

/* ---- evaluation batches -------------------------------------------------- */

/* upvalues: 1 dataset, 2 x (bs, P), 3 y (bs), 4 index buffer, 5 next 0-based,
 * 6 end (0-based, exclusive) */
static int batches_iter(lua_State *L)
{
    dtf_dataset *ds = check_ds(L, lua_upvalueindex(1));
    dtf_tensor *x = ltensor_check(L, lua_upvalueindex(2));
    dtf_tensor *y = ltensor_check(L, lua_upvalueindex(3));
    uint32_t *idx = lua_touserdata(L, lua_upvalueindex(4));
    lua_Integer at = lua_tointeger(L, lua_upvalueindex(5));
    lua_Integer n = lua_tointeger(L, lua_upvalueindex(6)), bs = x->shape[0];
    if (at >= n)
        return 0;
    lua_Integer m = n - at < bs ? n - at : bs;
    for (lua_Integer i = 0; i < m; i++)
        idx[i] = (uint32_t)(at + i);
    if (dtf_dataset_batch(ds, idx, (size_t)m, dtf_data(x), dtf_data(y)) < 0)
        return luaL_error(L, "%s", dtf_error());
    lua_pushinteger(L, at + m);
    lua_replace(L, lua_upvalueindex(5));
    if (m == bs) {
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_pushvalue(L, lua_upvalueindex(3));
    } else {
        dtf_tensor vx = *x, vy = *y;
        vx.shape[0] = m;
        vy.shape[0] = m;
        ltensor_push_view(L, &vx);
        ltensor_push_view(L, &vy);
    }
    lua_pushinteger(L, m);
    return 3;
}

/* ds:batches([bs [, first [, count]]]): examples first .. first+count-1
 * (1-based; default all) in order, bs at a time. */
static int ds_batches(lua_State *L)
{
    dtf_dataset *ds = check_ds(L, 1);
    lua_Integer bs = luaL_optinteger(L, 2, 1000);
    luaL_argcheck(L, bs >= 1 && bs <= (1 << 24), 2, "batch size out of range 1..2^24");
    lua_Integer total = dtf_dataset_count(ds);
    lua_Integer first = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, first >= 1 && first <= total + 1, 3, "first example out of range");
    lua_Integer count = luaL_optinteger(L, 4, total - first + 1);
    luaL_argcheck(L, count >= 0 && count <= total - first + 1, 4, "count out of range");
    if (bs > count)
        bs = count > 0 ? count : 1;
    int64_t xs[2] = {bs, (int64_t)dtf_dataset_rows(ds) * dtf_dataset_cols(ds)}, ys = bs;
    lua_settop(L, 1);
    ltensor_push_new(L, 2, xs);
    ltensor_push_new(L, 1, &ys);
    lua_newuserdatauv(L, (size_t)bs * sizeof(uint32_t), 0);
    lua_pushinteger(L, first - 1);
    lua_pushinteger(L, first - 1 + count);
    lua_pushcclosure(L, batches_iter, 6);
    return 1;
}

/* ---- registration -------------------------------------------------------- */

static const luaL_Reg ds_methods[] = {
    {"count", ds_count},     {"shape", ds_shape},     {"label", ds_label},
    {"example", ds_example}, {"paths", ds_paths},     {"loader", ds_loader},
    {"batches", ds_batches}, {NULL, NULL},
};

static const luaL_Reg ds_meta[] = {
    {"__gc", ds_gc}, {"__len", ds_count}, {"__tostring", ds_tostring}, {NULL, NULL},
};

static const luaL_Reg ld_methods[] = {
    {"next", ld_next},
    {"epoch", ld_epoch},
    {"position", ld_position},
    {"batches_per_epoch", ld_batches_per_epoch},
    {"shard_size", ld_shard_size},
    {"batchsize", ld_batchsize},
    {"seek", ld_seek},
    {NULL, NULL},
};

static const luaL_Reg ld_meta[] = {
    {"__gc", ld_gc}, {"__tostring", ld_tostring}, {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"load", d_load}, {"mnist", d_mnist}, {"mnist_count", d_mnist_count}, {NULL, NULL},
};

int luaopen_dtf_data(lua_State *L)
{
    lopt_newclass(L, DATASET_MT, ds_meta, ds_methods);
    lopt_newclass(L, LOADER_MT, ld_meta, ld_methods);
    luaL_newlib(L, funcs);
    lua_pushliteral(L, DEFAULT_DIR);
    lua_setfield(L, -2, "default_dir");
    return 1;
}
