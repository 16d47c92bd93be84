/* lps: module dtf.ps, the Lua face of ps.c and the net_*.c files (net.h).
 *
 *   ps.shard_range(P, n, i)          -> offset (0-based), count of shard i of n
 *   ps.serve{...}                    -> stats | nil, err   (runs the ps)
 *   ps.connect{...}                  -> client | nil, err
 *   client:pull(params [, min_step]) -> global_step | nil, err
 *   client:push(grads, step)         -> global_step | nil, err
 *   client:push_pull(grads, params, step) -> global_step | nil, err
 *   client:global_step()             -> global_step | nil, err
 *   client:done([step])              -> true | nil, err
 *   client:stats()                   -> { stats of ps 0, stats of ps 1, ... } | nil, err
 *   client:ranges()                  -> { {offset=, count=}, ... } (0-based)
 *   client:is_sync()                 -> boolean
 *   client:close()                   (also __gc and __close)
 *
 * Both serve and connect take keepalive = seconds (default 25): a peer that
 * vanished without closing (node down, cable pulled) is dropped after about
 * that long, by TCP keepalive and TCP_USER_TIMEOUT.
 *
 * A stats table holds the "key=value" lines of dtf_server_stats as numbers
 * or strings (step, mode, offset, count, gradients, updates, stale,
 * duplicates, pulls, workers, workers_done, bytes_in, bytes_out,
 * connections, bad_peers, backpressure_pauses, queued_bytes,
 * queued_peak, reason, ...), and
 * worker[i + 1] = {index=i, step=, pushes=, stale=, duplicates=, done=}.
 * Log functions get (level, msg) with level "debug", "info", "warning" or
 * "error", as dtf.util.log takes them.
 *
 * Misuse (a wrong option type, a tensor of the wrong size) raises; network
 * failures return nil and a message naming the ps. C resources live in
 * userdata with __gc, so a raise never leaks them. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "lmodules.h"
#include "log.h"
#include "ltensor.h"
#include "net.h"
#include "ps.h"
#include "util.h"
#include "wire.h"

#define CLIENT_MT "dtf.ps.Client"
#define SERVE_MT "dtf.ps.Serve"

/* ======================================================================
 * Logging through a Lua function
 * ==================================================================== */

/* A log function(level, msg) held in the registry; level is "debug",
 * "info", "warning" or "error" (what dtf.util.log takes). Called from C
 * callbacks inside the event loop, so always under pcall. */
typedef struct lsink {
    lua_State *L;  /* the thread running the current call */
    int ref;       /* LUA_NOREF: dtf_log_cb */
} lsink;

static const char *level_lower(int level)
{
    if (level >= DTF_LOG_ERROR) return "error";
    if (level >= DTF_LOG_WARNING) return "warning";
    if (level >= DTF_LOG_INFO) return "info";
    return "debug";
}

static void sink_log(void *ud, int level, const char *msg)
{
    lsink *s = ud;
    lua_State *L = s->L;
    if (s->ref == LUA_NOREF || !L || !lua_checkstack(L, 4)) {
        dtf_log_cb(NULL, level, msg);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
    lua_pushstring(L, level_lower(level));
    lua_pushstring(L, msg);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        const char *e = lua_tostring(L, -1);
        char buf[512];
        snprintf(buf, sizeof buf, "log function failed: %s", e ? e : "(not a string)");
        lua_pop(L, 1);
        dtf_log_cb(NULL, DTF_LOG_WARNING, buf);
        dtf_log_cb(NULL, level, msg);
    }
}

static void sink_init(lua_State *L, lsink *s, int t)
{
    s->L = L;
    s->ref = LUA_NOREF;
    lua_getfield(L, t, "log");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_isfunction(L, -1) && !luaL_getmetafield(L, -1, "__call"))
        luaL_error(L, "option 'log' must be a function(level, msg) or nil");
    else if (!lua_isfunction(L, -1))
        lua_pop(L, 1); /* the __call metafield; keep the callable */
    s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void sink_free(lua_State *L, lsink *s)
{
    if (s->ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
        s->ref = LUA_NOREF;
    }
}

/* ======================================================================
 * Options
 * ==================================================================== */

/* Raises on keys the function does not know: a typo must not be silently
 * ignored (idle_timout = 5). known is NULL-terminated. */
static void check_keys(lua_State *L, int t, const char *fn, const char *const *known)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            luaL_error(L, "%s: option keys must be strings", fn);
        }
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (const char *const *p = known; *p && !ok; p++)
            ok = strcmp(*p, k) == 0;
        if (!ok)
            luaL_error(L, "%s: unknown option '%s'", fn, k);
    }
}

static double opt_number(lua_State *L, int t, const char *k, double def)
{
    lua_getfield(L, t, k);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "option '%s' must be a number, got %s", k, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer def,
                           lua_Integer lo, lua_Integer hi)
{
    lua_getfield(L, t, k);
    lua_Integer v = def;
    if (!lua_isnil(L, -1)) {
        int isint = 0;
        v = lua_tointegerx(L, -1, &isint);
        if (!isint)
            luaL_error(L, "option '%s' must be an integer, got %s", k,
                       lua_isnumber(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    if (v < lo || v > hi)
        luaL_error(L, "option '%s' = %I out of range [%I, %I]", k, v, lo, hi);
    return v;
}

static int opt_bool(lua_State *L, int t, const char *k, int def)
{
    lua_getfield(L, t, k);
    int v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1))
            luaL_error(L, "option '%s' must be a boolean, got %s", k, luaL_typename(L, -1));
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* A string option, or def when nil. The string stays on the stack's table
 * (t holds it), so the pointer outlives the pop. */
static const char *opt_string(lua_State *L, int t, const char *k, const char *def, size_t *len)
{
    lua_getfield(L, t, k);
    const char *v = def;
    if (len)
        *len = def ? strlen(def) : 0;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "option '%s' must be a string, got %s", k, luaL_typename(L, -1));
        v = lua_tolstring(L, -1, len);
    }
    lua_pop(L, 1);
    return v;
}

/* wire_dtype: "fp32" (the default) or "bf16". */
static int opt_dtype(lua_State *L, int t, const char *fn)
{
    int d = dtf_wire_dtype_parse(opt_string(L, t, "wire_dtype", "fp32", NULL));
    if (d < 0)
        luaL_error(L, "%s: option %s", fn, dtf_error());
    return d;
}

/* layout_checksum: an integer, or a hex string ("0x" optional, at most 16
 * digits) as dtf.util.fnv1a returns. nil is 0. */
static uint64_t opt_checksum(lua_State *L, int t)
{
    uint64_t v = 0;
    lua_getfield(L, t, "layout_checksum");
    if (lua_type(L, -1) == LUA_TNUMBER) {
        int isint = 0;
        v = (uint64_t)lua_tointegerx(L, -1, &isint);
        if (!isint)
            luaL_error(L, "option 'layout_checksum' must be an integer or a hex string");
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
            s += 2;
        size_t n = strlen(s);
        if (n == 0 || n > 16 || strspn(s, "0123456789abcdefABCDEF") != n)
            luaL_error(L, "option 'layout_checksum' = '%s' is not a hex number",
                       lua_tostring(L, -1));
        v = strtoull(s, NULL, 16);
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "option 'layout_checksum' must be an integer or a hex string");
    }
    lua_pop(L, 1);
    return v;
}

/* token: nil or a string; "" means none. */
static const char *opt_token(lua_State *L, int t, size_t *len)
{
    const char *tok = opt_string(L, t, "token", NULL, len);
    if (tok && *len == 0)
        tok = NULL;
    if (tok && *len > DTF_WIRE_MAX_TOKEN)
        luaL_error(L, "option 'token' is %d bytes, at most %d", (int)*len, DTF_WIRE_MAX_TOKEN);
    return tok;
}

static int role_of(lua_State *L, const char *role)
{
    if (strcmp(role, "worker") == 0)
        return DTF_ROLE_WORKER;
    if (strcmp(role, "observer") == 0 || strcmp(role, "repl") == 0 ||
        strcmp(role, "evaluator") == 0)
        return DTF_ROLE_OBSERVER;
    return luaL_error(L, "option 'role' = '%s': expected worker, observer, repl or evaluator",
                      role);
}

/* A contiguous float tensor of exactly P elements at idx. */
static dtf_tensor *check_flat(lua_State *L, int idx, int64_t P, const char *what)
{
    dtf_tensor *t = ltensor_check(L, idx);
    int64_t n = dtf_numel(t);
    if (!dtf_is_contiguous(t))
        luaL_error(L, "%s must be contiguous", what);
    if (P >= 0 && n != P)
        luaL_error(L, "%s has %I elements, the model has P = %I", what, (lua_Integer)n,
                   (lua_Integer)P);
    return t;
}

/* Pushes a stats table made from "key=value\n" text: numbers where the
 * value is one; "worker.N.field" lines go to t.worker[N+1] = {index=N, ...}
 * (t.workers is the number of workers). */
static void push_stats(lua_State *L, const char *text)
{
    lua_newtable(L);
    int t = lua_gettop(L);
    lua_newtable(L);
    int wt = lua_gettop(L);
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        size_t kl = eq ? (size_t)(eq - p) : 0;
        char key[128], field[64];
        if (eq && kl > 0 && kl < sizeof key) {
            memcpy(key, p, kl);
            key[kl] = 0;
            lua_pushlstring(L, eq + 1, n - kl - 1);
            if (lua_stringtonumber(L, lua_tostring(L, -1)) != 0)
                lua_remove(L, -2);
            long w;
            int used = 0;
            if (sscanf(key, "worker.%ld.%63[a-z_]%n", &w, field, &used) == 2 &&
                (size_t)used == kl && w >= 0 && w < 1000000) {
                if (lua_rawgeti(L, wt, (lua_Integer)w + 1) != LUA_TTABLE) {
                    lua_pop(L, 1);
                    lua_newtable(L);
                    lua_pushinteger(L, w);
                    lua_setfield(L, -2, "index");
                    lua_pushvalue(L, -1);
                    lua_rawseti(L, wt, (lua_Integer)w + 1);
                }
                lua_insert(L, -2);           /* entry, value */
                lua_setfield(L, -2, field);  /* entry[field] = value */
                lua_pop(L, 1);
            } else {
                lua_setfield(L, t, key);
            }
        }
        p += n + (nl ? 1 : 0);
    }
    lua_setfield(L, t, "worker");
}

/* ======================================================================
 * ps.serve
 * ==================================================================== */

/* Everything serve allocates, freed by __gc if a raise or an error
 * interrupts it (and by serve itself otherwise). */
typedef struct serve_box {
    dtf_shard *shard;
    dtf_server *server;
    lsink sink;
    /* checkpoints (dtf.checkpoint), when dir is set */
    const char *dir;        /* held by the options table */
    double secs;            /* save when this long has passed since the last */
    int64_t steps;          /* ... or this many steps */
    double last_time;
    int64_t last_step;
    int layout_ref;         /* the layout table (for layout_json), or LUA_NOREF */
    char checksum[17];      /* the layout checksum as 16 hex digits */
} serve_box;

static int serve_gc(lua_State *L)
{
    serve_box *b = luaL_checkudata(L, 1, SERVE_MT);
    dtf_server_free(b->server);
    b->server = NULL;
    dtf_shard_free(b->shard);
    b->shard = NULL;
    sink_free(L, &b->sink);
    if (b->layout_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, b->layout_ref);
        b->layout_ref = LUA_NOREF;
    }
    return 0;
}

/* ---- checkpoints --------------------------------------------------------------
 * The files are dtf.checkpoint's (lua/dtf/checkpoint.lua): the shard's
 * params and optimizer slots with its metadata. Both functions below run
 * under pcall with the box as a light userdata, so they may raise. */

static void push_checkpoint_fn(lua_State *L, const char *name)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "dtf.checkpoint");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* A new tensor holding a copy of n floats. */
static void push_copy(lua_State *L, const float *src, uint64_t n)
{
    int64_t shape[1] = {(int64_t)n};
    dtf_tensor *t = ltensor_push_new(L, 1, shape);
    if (n)
        memcpy(dtf_data(t), src, (size_t)n * sizeof(float));
}

/* Pushes the workers' latest async pushes (checkpoint metadata "pushes"). */
static void push_pushes(lua_State *L, const dtf_shard *sh)
{
    char *str = dtf_shard_format_pushes(sh);
    if (!str)
        luaL_error(L, "out of memory");
    lua_pushstring(L, str);
    free(str);
}

/* checkpoint.save(dir, state) -> path */
static int save_shard(lua_State *L)
{
    serve_box *b = lua_touserdata(L, 1);
    dtf_shard *sh = b->shard;
    push_checkpoint_fn(L, "save");
    lua_pushstring(L, b->dir);
    lua_createtable(L, 0, 14);
    /* copies: the shard keeps changing, and a tensor must not outlive it */
    push_copy(L, sh->params, sh->count);
    lua_setfield(L, -2, "params");
    if (sh->slot0) {
        push_copy(L, sh->slot0, sh->count);
        lua_setfield(L, -2, "slot0");
    }
    if (sh->slot1) {
        push_copy(L, sh->slot1, sh->count);
        lua_setfield(L, -2, "slot1");
    }
    lua_pushinteger(L, sh->step);
    lua_setfield(L, -2, "step");
    lua_pushinteger(L, sh->cfg.index);
    lua_setfield(L, -2, "shard");
    lua_pushinteger(L, sh->cfg.nps);
    lua_setfield(L, -2, "nps");
    lua_pushinteger(L, (lua_Integer)sh->offset);
    lua_setfield(L, -2, "offset");
    lua_pushinteger(L, (lua_Integer)sh->count);
    lua_setfield(L, -2, "count");
    lua_pushinteger(L, (lua_Integer)sh->cfg.P);
    lua_setfield(L, -2, "P");
    lua_pushstring(L, b->checksum);
    lua_setfield(L, -2, "layout");
    lua_pushstring(L, dtf_optim_kind_name(sh->cfg.optim.kind));
    lua_setfield(L, -2, "optimizer");
    push_pushes(L, sh);
    lua_setfield(L, -2, "pushes");
    if (b->layout_ref != LUA_NOREF) {
        push_checkpoint_fn(L, "layout_json");
        lua_rawgeti(L, LUA_REGISTRYINDEX, b->layout_ref);
        lua_call(L, 1, 1);
        lua_setfield(L, -2, "layout_json");
    }
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2))
        return luaL_error(L, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "failed");
    lua_pop(L, 1);
    return 1;
}

/* One float tensor field of the state table at idx with n elements, or
 * NULL when absent. */
static const float *state_tensor(lua_State *L, int idx, const char *k, uint64_t n)
{
    lua_getfield(L, idx, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    dtf_tensor *t = ltensor_check(L, -1);
    if (!dtf_is_contiguous(t) || dtf_numel(t) != (int64_t)n)
        luaL_error(L, "checkpoint tensor %s has %I elements, the shard %I", k,
                   (lua_Integer)dtf_numel(t), (lua_Integer)n);
    lua_pop(L, 1); /* the state table still holds it */
    return dtf_data(t);
}

/* checkpoint.restore(dir, shard, expect) -> nil (none) | path, step; logs
 * the newer checkpoints it had to skip because they cannot be read. */
static int restore_shard(lua_State *L)
{
    serve_box *b = lua_touserdata(L, 1);
    dtf_shard *sh = b->shard;
    push_checkpoint_fn(L, "restore");
    lua_pushstring(L, b->dir);
    lua_pushinteger(L, sh->cfg.index);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, b->checksum);
    lua_setfield(L, -2, "layout");
    lua_pushinteger(L, sh->cfg.nps);
    lua_setfield(L, -2, "nps");
    lua_pushinteger(L, sh->cfg.index);
    lua_setfield(L, -2, "shard");
    lua_pushstring(L, dtf_optim_kind_name(sh->cfg.optim.kind));
    lua_setfield(L, -2, "optimizer");
    lua_call(L, 3, 2);
    if (lua_istable(L, -1)) { /* the skipped ones */
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            char msg[1200];
            lua_rawgeti(L, -1, i);
            lua_getfield(L, -1, "err");
            snprintf(msg, sizeof msg, "ps %d: skipping a checkpoint that cannot be read: %s",
                     sh->cfg.index, lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
            lua_pop(L, 2);
            sink_log(&b->sink, DTF_LOG_WARNING, msg);
        }
    }
    lua_pop(L, 1);
    if (lua_isnil(L, -1))
        return 0;
    int st = lua_gettop(L);
    lua_getfield(L, st, "offset");
    lua_getfield(L, st, "count");
    lua_getfield(L, st, "P");
    if (lua_tointeger(L, -3) != (lua_Integer)sh->offset ||
        lua_tointeger(L, -2) != (lua_Integer)sh->count ||
        lua_tointeger(L, -1) != (lua_Integer)sh->cfg.P)
        return luaL_error(L, "checkpoint holds [%I, +%I) of %I parameters, this shard is "
                          "[%I, +%I) of %I", lua_tointeger(L, -3), lua_tointeger(L, -2),
                          lua_tointeger(L, -1), (lua_Integer)sh->offset,
                          (lua_Integer)sh->count, (lua_Integer)sh->cfg.P);
    lua_pop(L, 3);
    const float *p = state_tensor(L, st, "params", sh->count);
    if (!p)
        return luaL_error(L, "checkpoint has no params");
    const float *s0 = sh->slot0 ? state_tensor(L, st, "slot0", sh->count) : NULL;
    const float *s1 = sh->slot1 ? state_tensor(L, st, "slot1", sh->count) : NULL;
    lua_getfield(L, st, "step");
    int64_t step = lua_tointeger(L, -1);
    lua_pop(L, 1);
    dtf_shard_restore(sh, p, s0, s1, step);
    lua_getfield(L, st, "pushes"); /* absent in older checkpoints */
    if (lua_type(L, -1) == LUA_TSTRING && dtf_shard_parse_pushes(sh, lua_tostring(L, -1)) < 0)
        return luaL_error(L, "%s", dtf_error());
    lua_pop(L, 1);
    lua_getfield(L, st, "path");
    lua_pushinteger(L, step);
    return 2;
}

/* mkdir -p; 0, or -1 with dtf_error(). */
static int make_dirs(const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) {
        dtf_seterr("bad directory name");
        return -1;
    }
    memcpy(path, dir, n + 1);
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(path, 0755) != 0 && errno != EEXIST) {
                dtf_seterr("cannot create %s: %s", path, strerror(errno));
                return -1;
            }
            *p = c;
            if (!c)
                return 0;
        }
    }
}

/* Removes the temporary files (DIR/.ckpt-STEP-psI.safetensors.tmp.PID,
 * dtf.ckpt's names) that a ps of this shard killed while it wrote a
 * checkpoint left behind. Called before this ps writes any: one ps serves
 * a shard, so none of them is still being written (the PID may be this
 * process's own, in a container restarted with a fresh PID namespace).
 * Returns how many went; their names go to names (comma-separated,
 * truncated to n). */
static int remove_stale_temps(const char *dir, int shard, char *names, size_t n)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char suffix[64], path[4352];
    snprintf(suffix, sizeof suffix, "-ps%d.safetensors.tmp.", shard);
    int removed = 0;
    size_t len = 0;
    names[0] = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strncmp(name, ".ckpt-", 6) != 0)
            continue;
        size_t digits = strspn(name + 6, "0123456789");
        if (digits == 0 || strncmp(name + 6 + digits, suffix, strlen(suffix)) != 0)
            continue;
        const char *p = name + 6 + digits;
        const char *pid = p + strlen(suffix);
        size_t pl = strlen(pid);
        if (pl == 0 || strspn(pid, "0123456789") != pl)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (unlink(path) == 0) {
            removed++;
            if (len < n)
                len += (size_t)snprintf(names + len, n - len, "%s%s", len ? ", " : "", name);
        }
    }
    closedir(d);
    return removed;
}

/* Runs fn(box) under pcall; 0, or -1 with the message on the stack. */
static int call_boxed(lua_State *L, lua_CFunction fn, serve_box *b, int nres)
{
    lua_checkstack(L, 8);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, b);
    return lua_pcall(L, 1, nres, 0) == LUA_OK ? 0 : -1;
}

static void checkpoint_now(serve_box *b)
{
    lua_State *L = b->sink.L;
    dtf_shard *sh = b->shard;
    char msg[1200];
    b->last_time = dtf_now();
    b->last_step = sh->step;
    if (call_boxed(L, save_shard, b, 1) < 0) {
        snprintf(msg, sizeof msg, "ps %d: checkpoint at step %lld failed: %s", sh->cfg.index,
                 (long long)sh->step, lua_tostring(L, -1));
        sink_log(&b->sink, DTF_LOG_WARNING, msg);
    } else {
        snprintf(msg, sizeof msg, "ps %d: checkpoint at step %lld: %s", sh->cfg.index,
                 (long long)sh->step, lua_tostring(L, -1));
        sink_log(&b->sink, DTF_LOG_INFO, msg);
    }
    lua_pop(L, 1);
}

/* The server's on_step hook: a checkpoint every `steps` steps or `secs`
 * seconds, whichever comes first. */
static void on_step(void *ud, dtf_shard *sh)
{
    serve_box *b = ud;
    if (!b->dir)
        return;
    if ((b->steps > 0 && sh->step - b->last_step >= b->steps) ||
        (b->secs > 0 && dtf_now() - b->last_time >= b->secs))
        checkpoint_now(b);
}

static void parse_optimizer(lua_State *L, int t, dtf_optim *o)
{
    lua_getfield(L, t, "optimizer");
    int ot = lua_gettop(L);
    if (lua_isnil(L, ot)) {
        dtf_optim_defaults(o, DTF_ADAM);
        lua_pop(L, 1);
        return;
    }
    if (lua_isstring(L, ot)) { /* optimizer = "sgd" */
        int kind = dtf_optim_kind_from_name(lua_tostring(L, ot));
        if (kind < 0)
            luaL_error(L, "ps.serve: %s", dtf_error());
        dtf_optim_defaults(o, (dtf_optim_kind)kind);
        lua_pop(L, 1);
        return;
    }
    luaL_argexpected(L, lua_istable(L, ot), 1, "optimizer table");
    static const char *const keys[] = {"kind", "lr", "momentum", "nesterov", "beta1", "beta2",
                                       "eps", "weight_decay", NULL};
    check_keys(L, ot, "ps.serve optimizer", keys);
    const char *name = opt_string(L, ot, "kind", "adam", NULL);
    int kind = dtf_optim_kind_from_name(name);
    if (kind < 0)
        luaL_error(L, "ps.serve: %s", dtf_error());
    dtf_optim_defaults(o, (dtf_optim_kind)kind);
    o->lr = (float)opt_number(L, ot, "lr", o->lr);
    o->momentum = (float)opt_number(L, ot, "momentum", o->momentum);
    o->nesterov = opt_bool(L, ot, "nesterov", o->nesterov);
    o->beta1 = (float)opt_number(L, ot, "beta1", o->beta1);
    o->beta2 = (float)opt_number(L, ot, "beta2", o->beta2);
    o->eps = (float)opt_number(L, ot, "eps", o->eps);
    o->weight_decay = (float)opt_number(L, ot, "weight_decay", o->weight_decay);
    lua_pop(L, 1);
}

static int l_serve(lua_State *L)
{
    static const char *const keys[] = {
        "port", "host", "index", "params", "nps", "workers", "optimizer", "sync",
        "replicas_to_aggregate", "layout_checksum", "token", "log", "idle_timeout",
        "hello_timeout", "sync_timeout", "done_timeout", "max_connections", "max_frame", "handle_signals",
        "checkpoint_dir", "checkpoint_secs", "checkpoint_steps", "layout", "keepalive",
        "wire_dtype", NULL,
    };
    luaL_checktype(L, 1, LUA_TTABLE);
    check_keys(L, 1, "ps.serve", keys);

    dtf_shard_config sc;
    memset(&sc, 0, sizeof sc);
    lua_getfield(L, 1, "params");
    if (lua_isnil(L, -1))
        luaL_error(L, "ps.serve: option 'params' (the whole flat parameter tensor) is required");
    dtf_tensor *params = check_flat(L, -1, -1, "ps.serve: params");
    lua_pop(L, 1); /* params stays referenced by the options table */
    sc.P = (uint64_t)dtf_numel(params);
    sc.nps = (int)opt_int(L, 1, "nps", 1, 1, 65536);
    sc.index = (int)opt_int(L, 1, "index", 0, 0, sc.nps - 1);
    sc.workers = (int)opt_int(L, 1, "workers", 1, 1, 65536);
    sc.sync = opt_bool(L, 1, "sync", 0);
    sc.replicas = (int)opt_int(L, 1, "replicas_to_aggregate", 0, 0, sc.workers);
    parse_optimizer(L, 1, &sc.optim);

    dtf_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.host = opt_string(L, 1, "host", NULL, NULL);
    cfg.port = (int)opt_int(L, 1, "port", 8000, 0, 65535);
    cfg.checksum = opt_checksum(L, 1);
    cfg.token = opt_token(L, 1, &cfg.token_len);
    cfg.idle_timeout = opt_number(L, 1, "idle_timeout", 0);
    cfg.hello_timeout = opt_number(L, 1, "hello_timeout", 10);
    cfg.sync_timeout = opt_number(L, 1, "sync_timeout", 0);
    cfg.done_timeout = opt_number(L, 1, "done_timeout", 0);
    cfg.keepalive = opt_number(L, 1, "keepalive", 0);
    cfg.max_connections = (int)opt_int(L, 1, "max_connections", 256, 1, 1 << 20);
    cfg.max_payload = (size_t)opt_int(L, 1, "max_frame", DTF_WIRE_MAX_PAYLOAD, 1024,
                                      (lua_Integer)UINT32_MAX);
    cfg.handle_signals = opt_bool(L, 1, "handle_signals", 1);
    cfg.wire_dtype = opt_dtype(L, 1, "ps.serve");
    const char *dir = opt_string(L, 1, "checkpoint_dir", NULL, NULL);
    if (dir && !*dir)
        dir = NULL;
    double secs = opt_number(L, 1, "checkpoint_secs", 30);
    int64_t steps = opt_int(L, 1, "checkpoint_steps", 0, 0, INT64_MAX);
    lua_getfield(L, 1, "layout");
    luaL_argexpected(L, lua_isnil(L, -1) || lua_istable(L, -1), 1, "layout table or nil");

    serve_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    b->sink.ref = LUA_NOREF;
    b->layout_ref = LUA_NOREF;
    luaL_setmetatable(L, SERVE_MT);
    int box = lua_gettop(L);
    lua_pushvalue(L, box - 1); /* the layout */
    if (lua_isnil(L, -1))
        lua_pop(L, 1);
    else
        b->layout_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    sink_init(L, &b->sink, 1);
    cfg.log = sink_log;
    cfg.log_ud = &b->sink;
    cfg.on_step = on_step;
    cfg.on_step_ud = b;
    b->dir = dir;
    b->secs = secs;
    b->steps = steps;
    snprintf(b->checksum, sizeof b->checksum, "%016" PRIx64, cfg.checksum);

    b->shard = dtf_shard_new(&sc, dtf_data(params));
    if (!b->shard)
        return luaL_error(L, "ps.serve: %s", dtf_error());
    if (dir) {
        /* Resume from the newest checkpoint of this shard, if there is one;
         * one from another model or sharding stops the ps. */
        char msg[1200];
        if (make_dirs(dir) < 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "ps %d: checkpoint_dir: %s", sc.index, dtf_error());
            return 2;
        }
        char names[600];
        int stale = remove_stale_temps(dir, sc.index, names, sizeof names);
        if (stale > 0) {
            snprintf(msg, sizeof msg, "ps %d: removed %d unfinished checkpoint file%s that a "
                     "killed ps left in %s: %s", sc.index, stale, stale > 1 ? "s" : "", dir,
                     names);
            sink_log(&b->sink, DTF_LOG_INFO, msg);
        }
        if (call_boxed(L, restore_shard, b, 2) < 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "ps %d: cannot restore from %s: %s", sc.index, dir,
                            lua_tostring(L, -2));
            return 2;
        }
        if (lua_isnil(L, -2))
            snprintf(msg, sizeof msg, "ps %d: no checkpoint in %s yet; starting from the "
                     "initial parameters", sc.index, dir);
        else
            snprintf(msg, sizeof msg, "ps %d: restored step %lld from %s", sc.index,
                     (long long)lua_tointeger(L, -1), lua_tostring(L, -2));
        lua_pop(L, 2);
        sink_log(&b->sink, DTF_LOG_INFO, msg);
        b->last_step = b->shard->step;
        b->last_time = dtf_now();
    }
    b->server = dtf_server_new(&cfg, b->shard);
    if (!b->server) {
        lua_pushnil(L);
        lua_pushfstring(L, "ps %d: %s", sc.index, dtf_error());
        return 2;
    }
    b->sink.L = L;
    int rc = dtf_server_run(b->server);
    b->sink.L = L;
    if (b->dir && b->shard->step != b->last_step)
        checkpoint_now(b); /* the last state, whether done or stopped by a signal */
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "ps %d: %s", sc.index, dtf_error());
        return 2;
    }
    size_t n = dtf_server_stats(b->server, NULL, 0) + 1;
    char *text = lua_newuserdatauv(L, n, 0); /* collected, never leaked */
    dtf_server_stats(b->server, text, n);
    push_stats(L, text);
    lua_remove(L, -2);
    /* Free the sockets now rather than at the next collection. */
    lua_pushcfunction(L, serve_gc);
    lua_pushvalue(L, box);
    lua_call(L, 1, 0);
    return 1;
}

/* ======================================================================
 * ps.connect and the client
 * ==================================================================== */

typedef struct lclient {
    dtf_client *c;
    lsink sink;
    int64_t P;
    int64_t last_step;  /* the step passed to the latest push, for done() */
} lclient;

static lclient *check_client(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (!c->c)
        luaL_error(L, "ps client is closed");
    c->sink.L = L;
    return c;
}

static int fail(lua_State *L)
{
    lua_pushnil(L);
    lua_pushstring(L, dtf_error());
    return 2;
}

static int c_gc(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    c->sink.L = L;
    dtf_client_free(c->c);
    c->c = NULL;
    sink_free(L, &c->sink);
    return 0;
}

static int c_pull(lua_State *L)
{
    lclient *c = check_client(L);
    dtf_tensor *p = check_flat(L, 2, c->P, "pull: params");
    lua_Integer min_step = luaL_optinteger(L, 3, 0);
    int64_t gs;
    if (dtf_client_pull(c->c, dtf_data(p), min_step, &gs) < 0)
        return fail(L);
    lua_pushinteger(L, gs);
    return 1;
}

static int c_push(lua_State *L)
{
    lclient *c = check_client(L);
    dtf_tensor *g = check_flat(L, 2, c->P, "push: grads");
    lua_Integer step = luaL_checkinteger(L, 3);
    int64_t gs;
    c->last_step = step;
    if (dtf_client_push(c->c, dtf_data(g), g->st, step, &gs) < 0)
        return fail(L);
    lua_pushinteger(L, gs);
    return 1;
}

static int c_push_pull(lua_State *L)
{
    lclient *c = check_client(L);
    dtf_tensor *g = check_flat(L, 2, c->P, "push_pull: grads");
    dtf_tensor *p = check_flat(L, 3, c->P, "push_pull: params");
    lua_Integer step = luaL_checkinteger(L, 4);
    float *gd = dtf_data(g), *pd = dtf_data(p);
    if (gd < pd + c->P && pd < gd + c->P)
        luaL_error(L, "push_pull: grads and params overlap");
    int64_t gs;
    c->last_step = step;
    if (dtf_client_push_pull(c->c, gd, g->st, pd, step, &gs) < 0)
        return fail(L);
    lua_pushinteger(L, gs);
    return 1;
}

static int c_global_step(lua_State *L)
{
    lclient *c = check_client(L);
    int64_t gs;
    if (dtf_client_get_step(c->c, &gs) < 0)
        return fail(L);
    lua_pushinteger(L, gs);
    return 1;
}

static int c_done(lua_State *L)
{
    lclient *c = check_client(L);
    lua_Integer step = luaL_optinteger(L, 2, c->last_step);
    if (dtf_client_done(c->c, step) < 0)
        return fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

static int c_stats(lua_State *L)
{
    lclient *c = check_client(L);
    int n = dtf_client_nps(c->c);
    /* The texts go into userdata first so a raise cannot leak them. */
    char **texts = lua_newuserdatauv(L, sizeof(char *) * (size_t)n, 0);
    memset(texts, 0, sizeof(char *) * (size_t)n);
    if (dtf_client_stats(c->c, texts) < 0)
        return fail(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        /* Copy into a Lua string, free the C text, then parse. */
        lua_pushstring(L, texts[i] ? texts[i] : "");
        free(texts[i]);
        texts[i] = NULL;
    }
    for (int i = 0; i < n; i++) {
        push_stats(L, lua_tostring(L, -n + i));
        lua_rawseti(L, -(n + 2), i + 1);
    }
    lua_pop(L, n);
    return 1;
}

static int c_ranges(lua_State *L)
{
    lclient *c = check_client(L);
    int n = dtf_client_nps(c->c);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        uint64_t off, count;
        dtf_client_range(c->c, i, &off, &count);
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, (lua_Integer)off);
        lua_setfield(L, -2, "offset");
        lua_pushinteger(L, (lua_Integer)count);
        lua_setfield(L, -2, "count");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int c_is_sync(lua_State *L)
{
    lclient *c = check_client(L);
    lua_pushboolean(L, dtf_client_sync(c->c));
    return 1;
}

static int c_close(lua_State *L)
{
    return c_gc(L);
}

static int c_tostring(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (!c->c)
        lua_pushstring(L, "ps client (closed)");
    else
        lua_pushfstring(L, "ps client (%d ps, P = %I)", dtf_client_nps(c->c),
                        (lua_Integer)c->P);
    return 1;
}

/* Addresses: a list of "host:port" strings, or one comma-separated string. */
static int get_addrs(lua_State *L, int t, const char ***out)
{
    lua_getfield(L, t, "addrs");
    int a = lua_gettop(L);
    if (lua_type(L, a) == LUA_TSTRING) {
        /* split on commas into a new table that replaces the string */
        const char *s = lua_tostring(L, a);
        lua_newtable(L);
        int k = 0;
        while (*s) {
            const char *e = strchr(s, ',');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            if (n) {
                lua_pushlstring(L, s, n);
                lua_rawseti(L, -2, ++k);
            }
            s += n + (e ? 1 : 0);
        }
        lua_replace(L, a);
    }
    if (!lua_istable(L, a))
        luaL_error(L, "ps.connect: option 'addrs' must be a list of \"host:port\" strings");
    int n = (int)luaL_len(L, a);
    if (n < 1)
        luaL_error(L, "ps.connect: option 'addrs' is empty");
    /* The strings stay referenced by the table, kept at stack slot a. */
    const char **addrs = lua_newuserdatauv(L, sizeof(char *) * (size_t)n, 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, a, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "ps.connect: addrs[%d] must be a string", i + 1);
        addrs[i] = lua_tostring(L, -1);
        const char *colon = strrchr(addrs[i], ':');
        size_t pl = colon ? strlen(colon + 1) : 0;
        if (!colon || colon == addrs[i] || pl == 0 || pl > 5 ||
            strspn(colon + 1, "0123456789") != pl)
            luaL_error(L, "ps.connect: addrs[%d] = '%s' is not host:port", i + 1, addrs[i]);
        lua_pop(L, 1);
    }
    *out = addrs;
    return n;
}

static int l_connect(lua_State *L)
{
    static const char *const keys[] = {
        "addrs", "role", "index", "P", "layout_checksum", "token", "connect_timeout",
        "timeout", "wait_timeout", "reconnect_timeout", "max_frame", "copy_sends", "log",
        "keepalive", "wire_dtype", NULL,
    };
    luaL_checktype(L, 1, LUA_TTABLE);
    check_keys(L, 1, "ps.connect", keys);
    dtf_client_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const char **addrs;
    cfg.naddrs = get_addrs(L, 1, &addrs); /* leaves the table and the array on the stack */
    cfg.addrs = addrs;
    cfg.role = role_of(L, opt_string(L, 1, "role", "worker", NULL));
    cfg.index = (int)opt_int(L, 1, "index", 0, 0, INT32_MAX);
    cfg.P = (uint64_t)opt_int(L, 1, "P", -1, -1, INT64_MAX);
    if ((int64_t)cfg.P < 1)
        luaL_error(L, "ps.connect: option 'P' (the number of parameters) is required");
    cfg.checksum = opt_checksum(L, 1);
    cfg.token = opt_token(L, 1, &cfg.token_len);
    cfg.connect_timeout = opt_number(L, 1, "connect_timeout", 60);
    cfg.timeout = opt_number(L, 1, "timeout", 30);
    cfg.wait_timeout = opt_number(L, 1, "wait_timeout", 600);
    cfg.reconnect_timeout = opt_number(L, 1, "reconnect_timeout", 30);
    cfg.keepalive = opt_number(L, 1, "keepalive", 0);
    cfg.max_payload = (size_t)opt_int(L, 1, "max_frame", DTF_WIRE_MAX_PAYLOAD, 1024,
                                      (lua_Integer)UINT32_MAX);
    cfg.copy_sends = opt_bool(L, 1, "copy_sends", 0);
    cfg.wire_dtype = opt_dtype(L, 1, "ps.connect");

    lclient *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->sink.ref = LUA_NOREF;
    c->P = (int64_t)cfg.P;
    luaL_setmetatable(L, CLIENT_MT);
    sink_init(L, &c->sink, 1);
    cfg.log = sink_log;
    cfg.log_ud = &c->sink; /* the userdata does not move */
    c->c = dtf_client_connect(&cfg);
    if (!c->c)
        return fail(L);
    return 1;
}

static int l_shard_range(lua_State *L)
{
    lua_Integer P = luaL_checkinteger(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    lua_Integer i = luaL_checkinteger(L, 3);
    luaL_argcheck(L, P >= 0, 1, "P must be >= 0");
    luaL_argcheck(L, n >= 1 && n <= INT32_MAX, 2, "n must be >= 1");
    luaL_argcheck(L, i >= 0 && i < n, 3, "i must be in [0, n) (0-based)");
    uint64_t off, count;
    dtf_shard_range((uint64_t)P, (int)n, (int)i, &off, &count);
    lua_pushinteger(L, (lua_Integer)off);
    lua_pushinteger(L, (lua_Integer)count);
    return 2;
}

static const luaL_Reg client_methods[] = {
    {"pull", c_pull},
    {"push", c_push},
    {"push_pull", c_push_pull},
    {"global_step", c_global_step},
    {"done", c_done},
    {"stats", c_stats},
    {"ranges", c_ranges},
    {"is_sync", c_is_sync},
    {"close", c_close},
    {NULL, NULL},
};

static const luaL_Reg client_meta[] = {
    {"__gc", c_gc},
    {"__close", c_gc},
    {"__tostring", c_tostring},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"serve", l_serve},
    {"connect", l_connect},
    {"shard_range", l_shard_range},
    {NULL, NULL},
};

int luaopen_dtf_ps(lua_State *L)
{
    if (luaL_newmetatable(L, CLIENT_MT)) {
        luaL_setfuncs(L, client_meta, 0);
        luaL_newlib(L, client_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, SERVE_MT)) {
        lua_pushcfunction(L, serve_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newlib(L, functions);
    return 1;
}
