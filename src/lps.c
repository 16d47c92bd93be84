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
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lmodules.h"
#include "log.h"
#include "lopt.h"
#include "ltensor.h"
#include "net.h"
#include "ps.h"
#include "ps_ckpt.h"
#include "pswatch.h"
#include "util.h"
#include "wire.h"

#define CLIENT_MT "dtf.ps.Client"
#define SERVE_MT "dtf.ps.Serve"
#define MERGED_MT "dtf.ps.Merged"
#define LOCAL_MT "dtf.ps.LocalShard"

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

/* wire_dtype: "fp32" (the default) or "bf16". */
static int opt_dtype(lua_State *L, int t, const char *fn)
{
    int d = dtf_wire_dtype_parse(lopt_string(L, t, fn, "wire_dtype", "fp32", NULL));
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
    const char *tok = lopt_string(L, t, "ps", "token", NULL, len);
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
    dtf_ps_ckpt *ckpt;      /* NULL: no checkpoint_dir */
    lsink sink;
} serve_box;

static int serve_gc(lua_State *L)
{
    serve_box *b = luaL_checkudata(L, 1, SERVE_MT);
    dtf_server_free(b->server);
    b->server = NULL;
    if (b->ckpt && b->shard)
        dtf_ps_ckpt_close(b->ckpt, b->shard);
    b->ckpt = NULL;
    dtf_shard_free(b->shard);
    b->shard = NULL;
    sink_free(L, &b->sink);
    return 0;
}

/* The server's on_step hook: a checkpoint when one is due (and its step
 * and time to the ps's metrics). */
static void on_step(void *ud, dtf_shard *sh)
{
    serve_box *b = ud;
    if (!b->ckpt)
        return;
    int64_t before = dtf_ps_ckpt_last_step(b->ckpt);
    dtf_ps_ckpt_on_step(b->ckpt, sh);
    if (dtf_ps_ckpt_last_step(b->ckpt) != before)
        dtf_pswatch_checkpoint(dtf_pswatch_current(), dtf_ps_ckpt_last_step(b->ckpt),
                               dtf_ps_ckpt_last_seconds(b->ckpt));
}

/* The shard's settings from the options table at 1. */
static dtf_tensor *shard_options(lua_State *L, dtf_shard_config *sc)
{
    memset(sc, 0, sizeof *sc);
    lua_getfield(L, 1, "params");
    if (lua_isnil(L, -1))
        luaL_error(L, "ps.serve: option 'params' (the whole flat parameter tensor) is required");
    dtf_tensor *params = check_flat(L, -1, -1, "ps.serve: params");
    lua_pop(L, 1); /* params stays referenced by the options table */
    sc->P = (uint64_t)dtf_numel(params);
    sc->nps = (int)lopt_int(L, 1, "ps.serve", "nps", 1, 1, 65536);
    sc->index = (int)lopt_int(L, 1, "ps.serve", "index", 0, 0, sc->nps - 1);
    sc->workers = (int)lopt_int(L, 1, "ps.serve", "workers", 1, 1, 65536);
    sc->sync = lopt_bool(L, 1, "ps.serve", "sync", 0);
    sc->replicas = (int)lopt_int(L, 1, "ps.serve", "replicas_to_aggregate", 0, 0, sc->workers);
    lua_getfield(L, 1, "optimizer");
    lopt_optim(L, -1, "ps.serve optimizer", DTF_ADAM, &sc->optim, &sc->sched);
    lua_pop(L, 1);
    return params;
}

/* The server's settings from the options table at 1. */
static void server_options(lua_State *L, dtf_server_config *cfg)
{
    static const char fn[] = "ps.serve";
    memset(cfg, 0, sizeof *cfg);
    cfg->host = lopt_string(L, 1, fn, "host", NULL, NULL);
    cfg->port = (int)lopt_int(L, 1, fn, "port", 8000, 0, 65535);
    cfg->checksum = opt_checksum(L, 1);
    cfg->token = opt_token(L, 1, &cfg->token_len);
    cfg->idle_timeout = lopt_number(L, 1, fn, "idle_timeout", 0, 0, HUGE_VAL);
    cfg->hello_timeout = lopt_number(L, 1, fn, "hello_timeout", 10, 0, HUGE_VAL);
    cfg->sync_timeout = lopt_number(L, 1, fn, "sync_timeout", DTF_DEFAULT_SYNC_TIMEOUT, 0, HUGE_VAL);
    cfg->done_timeout = lopt_number(L, 1, fn, "done_timeout", DTF_DEFAULT_DONE_TIMEOUT, 0, HUGE_VAL);
    cfg->keepalive = lopt_number(L, 1, fn, "keepalive", DTF_DEFAULT_KEEPALIVE, 0, HUGE_VAL);
    cfg->max_connections = (int)lopt_int(L, 1, fn, "max_connections", 256, 1, 1 << 20);
    cfg->max_payload = (size_t)lopt_int(L, 1, fn, "max_frame", DTF_WIRE_MAX_PAYLOAD, 1024,
                                        (lua_Integer)UINT32_MAX);
    cfg->handle_signals = lopt_bool(L, 1, fn, "handle_signals", 1);
    cfg->wire_dtype = opt_dtype(L, 1, fn);
}

/* The checkpointer's settings from the options table at 1; 0 when there is
 * no checkpoint_dir. */
static int ckpt_options(lua_State *L, dtf_ps_ckpt_config *k, uint64_t layout, const char *fn)
{
    memset(k, 0, sizeof *k);
    k->dir = lopt_string(L, 1, fn, "checkpoint_dir", NULL, NULL);
    k->secs = lopt_number(L, 1, fn, "checkpoint_secs", DTF_DEFAULT_CHECKPOINT_SECS, 0, HUGE_VAL);
    k->steps = lopt_int(L, 1, fn, "checkpoint_steps", 0, 0, INT64_MAX);
    k->layout_json = lopt_string(L, 1, fn, "layout_json", NULL, NULL);
    k->layout = layout;
    return k->dir && *k->dir;
}

/* ps.serve{...} -> stats | nil, err: runs the ps until every worker is
 * done or a signal stops it. */
static int l_serve(lua_State *L)
{
    static const char *const keys[] = {
        "port", "host", "index", "params", "nps", "workers", "optimizer", "sync",
        "replicas_to_aggregate", "layout_checksum", "token", "log", "idle_timeout",
        "hello_timeout", "sync_timeout", "done_timeout", "max_connections", "max_frame",
        "handle_signals", "checkpoint_dir", "checkpoint_secs", "checkpoint_steps", "layout_json",
        "keepalive", "on_ready", "wire_dtype", NULL,
    };
    luaL_checktype(L, 1, LUA_TTABLE);
    lopt_check_keys(L, 1, "ps.serve", keys);
    dtf_shard_config sc;
    dtf_server_config cfg;
    dtf_ps_ckpt_config kc;
    dtf_tensor *params = shard_options(L, &sc);
    server_options(L, &cfg);
    int checkpoints = ckpt_options(L, &kc, cfg.checksum, "ps.serve");

    serve_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    b->sink.ref = LUA_NOREF;
    luaL_setmetatable(L, SERVE_MT);
    int box = lua_gettop(L);
    sink_init(L, &b->sink, 1);
    cfg.log = kc.log = sink_log;
    cfg.log_ud = kc.log_ud = &b->sink;
    cfg.on_step = on_step;
    cfg.on_step_ud = b;
    cfg.watch = dtf_pswatch_current(); /* dtf.watch's for this ps, or NULL */

    b->shard = dtf_shard_new(&sc, dtf_data(params));
    if (!b->shard)
        return luaL_error(L, "ps.serve: %s", dtf_error());
    if (checkpoints && !(b->ckpt = dtf_ps_ckpt_open(&kc, b->shard))) {
        lua_pushnil(L);
        lua_pushfstring(L, "ps %d: %s", sc.index, dtf_error());
        return 2;
    }
    dtf_pswatch_step(cfg.watch, b->shard); /* a restored step shows at once */
    b->server = dtf_server_new(&cfg, b->shard);
    if (!b->server) {
        lua_pushnil(L);
        lua_pushfstring(L, "ps %d: %s", sc.index, dtf_error());
        return 2;
    }
    /* on_ready(port): it listens (and has restored); a supervisor hears it */
    if (lua_getfield(L, 1, "on_ready") != LUA_TNIL) {
        lua_pushinteger(L, dtf_server_port(b->server));
        lua_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    int rc = dtf_server_run(b->server);
    if (b->ckpt) {
        dtf_ps_ckpt_close(b->ckpt, b->shard); /* the last state, done or stopped by a signal */
        b->ckpt = NULL;
    }
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
 * ps.local_shard: one process trains through a shard of its own
 * ==================================================================== */

/* The whole flat buffer as shard 0 of 1, updated in place, with the ps's
 * optimizer, schedule and checkpoints: one process resumes and reshards
 * exactly as a ps does (its files are ps checkpoints of one shard). */
typedef struct local_box {
    dtf_shard *shard;
    dtf_ps_ckpt *ckpt;
    lsink sink;
    uint32_t next_id;
    int64_t restored;    /* the step restored at the start; 0: none */
} local_box;

static local_box *check_local(lua_State *L)
{
    local_box *b = luaL_checkudata(L, 1, LOCAL_MT);
    if (!b->shard)
        luaL_error(L, "the local shard is closed");
    b->sink.L = L;
    return b;
}

static int local_close(lua_State *L)
{
    local_box *b = luaL_checkudata(L, 1, LOCAL_MT);
    b->sink.L = L;
    if (b->ckpt && b->shard)
        dtf_ps_ckpt_close(b->ckpt, b->shard); /* the last state */
    b->ckpt = NULL;
    dtf_shard_free(b->shard);
    b->shard = NULL;
    sink_free(L, &b->sink);
    return 0;
}

/* shard:apply(grads) -> step: one optimizer update (and a checkpoint when
 * one is due). */
static int local_apply(lua_State *L)
{
    local_box *b = check_local(L);
    dtf_tensor *g = check_flat(L, 2, (int64_t)b->shard->cfg.P, "apply: grads");
    dtf_push_outcome o;
    if (dtf_shard_push(b->shard, 0, ++b->next_id, b->shard->step, dtf_data(g), &o) < 0)
        return luaL_error(L, "apply: %s", dtf_error());
    if (b->ckpt)
        dtf_ps_ckpt_on_step(b->ckpt, b->shard);
    lua_pushinteger(L, b->shard->step);
    return 1;
}

static int local_step(lua_State *L)
{
    lua_pushinteger(L, check_local(L)->shard->step);
    return 1;
}

/* shard:lr() -> the rate the next update applies */
static int local_lr(lua_State *L)
{
    lua_pushnumber(L, dtf_shard_lr(check_local(L)->shard));
    return 1;
}

static int local_restored(lua_State *L)
{
    lua_pushinteger(L, check_local(L)->restored);
    return 1;
}

/* ps.local_shard{params=, optimizer=, layout_checksum=, layout_json=,
 * checkpoint_dir=, checkpoint_secs=, checkpoint_steps=, log=} -> shard |
 * nil, err. With a checkpoint_dir it restores first (params are
 * overwritten with what the newest checkpoints hold). */
static int l_local_shard(lua_State *L)
{
    static const char *const keys[] = {"params", "optimizer", "layout_checksum", "layout_json",
                                       "checkpoint_dir", "checkpoint_secs", "checkpoint_steps",
                                       "log", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    lopt_check_keys(L, 1, "ps.local_shard", keys);
    lua_settop(L, 1);
    lua_getfield(L, 1, "params");
    if (lua_isnil(L, -1))
        luaL_error(L, "ps.local_shard: option 'params' (the whole flat parameter tensor) is required");
    dtf_tensor *params = check_flat(L, -1, -1, "ps.local_shard: params");
    dtf_shard_config sc;
    memset(&sc, 0, sizeof sc);
    sc.P = (uint64_t)dtf_numel(params);
    sc.nps = sc.workers = 1;
    lua_getfield(L, 1, "optimizer");
    lopt_optim(L, -1, "ps.local_shard optimizer", DTF_ADAM, &sc.optim, &sc.sched);
    lua_pop(L, 1);
    dtf_ps_ckpt_config kc;
    int checkpoints = ckpt_options(L, &kc, opt_checksum(L, 1), "ps.local_shard");
    kc.name = "one process";

    local_box *b = lua_newuserdatauv(L, sizeof *b, 1);
    memset(b, 0, sizeof *b);
    b->sink.ref = LUA_NOREF;
    luaL_setmetatable(L, LOCAL_MT);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 1); /* the params tensor lives as long as the shard */
    sink_init(L, &b->sink, 1);
    kc.log = sink_log;
    kc.log_ud = &b->sink;
    b->shard = dtf_shard_wrap(&sc, dtf_data(params));
    if (!b->shard)
        return luaL_error(L, "ps.local_shard: %s", dtf_error());
    if (checkpoints && !(b->ckpt = dtf_ps_ckpt_open(&kc, b->shard)))
        return lopt_fail(L);
    b->restored = b->shard->step;
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
    dtf_storage *landing; /* exchange_start's params: retained until the round is in */
} lclient;

static lclient *check_client(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (!c->c)
        luaL_error(L, "ps client is closed");
    c->sink.L = L;
    return c;
}

static int client_gc(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    c->sink.L = L;
    dtf_client_free(c->c); /* closes the sockets that may still write into landing */
    c->c = NULL;
    if (c->landing)
        dtf_storage_release(c->landing);
    c->landing = NULL;
    sink_free(L, &c->sink);
    return 0;
}

static int client_pull(lua_State *L)
{
    lclient *c = check_client(L);
    dtf_tensor *p = check_flat(L, 2, c->P, "pull: params");
    lua_Integer min_step = luaL_optinteger(L, 3, 0);
    int64_t gs;
    if (dtf_client_pull(c->c, dtf_data(p), min_step, &gs) < 0)
        return lopt_fail(L);
    lua_pushinteger(L, gs);
    return 1;
}

static int client_push(lua_State *L)
{
    lclient *c = check_client(L);
    dtf_tensor *g = check_flat(L, 2, c->P, "push: grads");
    lua_Integer step = luaL_checkinteger(L, 3);
    int64_t gs;
    c->last_step = step;
    if (dtf_client_push(c->c, dtf_data(g), g->st, step, &gs) < 0)
        return lopt_fail(L);
    lua_pushinteger(L, gs);
    return 1;
}

/* The (grads, params) arguments 2 and 3 of a round trip: flat, P elements
 * each, and apart (the reply lands in params while grads is sent). */
static void check_round(lua_State *L, const lclient *c, const char *fn, dtf_tensor **g,
                        dtf_tensor **p)
{
    char what[64];
    snprintf(what, sizeof what, "%s: grads", fn);
    *g = check_flat(L, 2, c->P, what);
    snprintf(what, sizeof what, "%s: params", fn);
    *p = check_flat(L, 3, c->P, what);
    const float *gd = dtf_data(*g), *pd = dtf_data(*p);
    if (gd < pd + c->P && pd < gd + c->P)
        luaL_error(L, "%s: grads and params overlap", fn);
}

static int client_push_pull(lua_State *L)
{
    lclient *c = check_client(L);
    dtf_tensor *g, *p;
    check_round(L, c, "push_pull", &g, &p);
    lua_Integer step = luaL_checkinteger(L, 4);
    float *gd = dtf_data(g), *pd = dtf_data(p);
    int64_t gs;
    c->last_step = step;
    if (dtf_client_push_pull(c->c, gd, g->st, pd, step, &gs) < 0)
        return lopt_fail(L);
    lua_pushinteger(L, gs);
    return 1;
}

/* c:exchange_start(grads, params, step): the round of this step goes out
 * (a pull into params, then the push of a copy of grads) and the call
 * returns; params fills while the caller computes on its own parameters. */
static int client_exchange_start(lua_State *L)
{
    lclient *c = check_client(L);
    dtf_tensor *g, *p;
    check_round(L, c, "exchange_start", &g, &p);
    lua_Integer step = luaL_checkinteger(L, 4);
    float *gd = dtf_data(g), *pd = dtf_data(p);
    c->last_step = step;
    if (dtf_client_exchange_start(c->c, gd, pd, step) < 0)
        return lopt_fail(L);
    dtf_storage_retain(p->st);
    c->landing = p->st;
    lua_pushboolean(L, 1);
    return 1;
}

/* c:exchange_finish() -> step | nil, err: waits for the round in flight. */
static int client_exchange_finish(lua_State *L)
{
    lclient *c = check_client(L);
    int64_t gs;
    int r = dtf_client_exchange_finish(c->c, &gs);
    if (c->landing)
        dtf_storage_release(c->landing);
    c->landing = NULL;
    if (r < 0)
        return lopt_fail(L);
    lua_pushinteger(L, gs);
    return 1;
}

static int client_global_step(lua_State *L)
{
    lclient *c = check_client(L);
    int64_t gs;
    if (dtf_client_get_step(c->c, &gs) < 0)
        return lopt_fail(L);
    lua_pushinteger(L, gs);
    return 1;
}

static int client_done(lua_State *L)
{
    lclient *c = check_client(L);
    lua_Integer step = luaL_optinteger(L, 2, c->last_step);
    if (dtf_client_done(c->c, step) < 0)
        return lopt_fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

static int client_stats(lua_State *L)
{
    lclient *c = check_client(L);
    int n = dtf_client_nps(c->c);
    /* The texts go into userdata first so a raise cannot leak them. */
    char **texts = lua_newuserdatauv(L, sizeof(char *) * (size_t)n, 0);
    memset(texts, 0, sizeof(char *) * (size_t)n);
    if (dtf_client_stats(c->c, texts) < 0)
        return lopt_fail(L);
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

static int client_ranges(lua_State *L)
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

static int client_is_sync(lua_State *L)
{
    lclient *c = check_client(L);
    lua_pushboolean(L, dtf_client_sync(c->c));
    return 1;
}

static int client_close(lua_State *L)
{
    return client_gc(L);
}

static int client_tostring(lua_State *L)
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
        char host[256];
        int port;
        if (dtf_parse_hostport(addrs[i], host, sizeof host, &port) < 0)
            luaL_error(L, "ps.connect: addrs[%d]: %s", i + 1, dtf_error());
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
    lopt_check_keys(L, 1, "ps.connect", keys);
    dtf_client_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const char **addrs;
    cfg.naddrs = get_addrs(L, 1, &addrs); /* leaves the table and the array on the stack */
    cfg.addrs = addrs;
    static const char fn[] = "ps.connect";
    cfg.role = role_of(L, lopt_string(L, 1, fn, "role", "worker", NULL));
    cfg.index = (int)lopt_int(L, 1, fn, "index", 0, 0, INT32_MAX);
    cfg.P = (uint64_t)lopt_int(L, 1, fn, "P", -1, -1, INT64_MAX);
    if ((int64_t)cfg.P < 1)
        luaL_error(L, "ps.connect: option 'P' (the number of parameters) is required");
    cfg.checksum = opt_checksum(L, 1);
    cfg.token = opt_token(L, 1, &cfg.token_len);
    cfg.connect_timeout = lopt_number(L, 1, fn, "connect_timeout", DTF_DEFAULT_CONNECT_TIMEOUT,
                                      0, HUGE_VAL);
    cfg.timeout = lopt_number(L, 1, fn, "timeout", DTF_DEFAULT_TIMEOUT, 0, HUGE_VAL);
    cfg.wait_timeout = lopt_number(L, 1, fn, "wait_timeout",
                                   DTF_DEFAULT_TIMEOUT + 2 * DTF_DEFAULT_SYNC_TIMEOUT, 0, HUGE_VAL);
    cfg.reconnect_timeout = lopt_number(L, 1, fn, "reconnect_timeout",
                                        DTF_DEFAULT_RECONNECT_TIMEOUT, 0, HUGE_VAL);
    cfg.keepalive = lopt_number(L, 1, fn, "keepalive", DTF_DEFAULT_KEEPALIVE, 0, HUGE_VAL);
    cfg.max_payload = (size_t)lopt_int(L, 1, fn, "max_frame", DTF_WIRE_MAX_PAYLOAD, 1024,
                                       (lua_Integer)UINT32_MAX);
    cfg.copy_sends = lopt_bool(L, 1, fn, "copy_sends", 0);
    cfg.wire_dtype = opt_dtype(L, 1, fn);
    cfg.stop = &dtf_stop_signal; /* util.trap_signals' flag: 0 until it caught one */

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
        return lopt_fail(L);
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
    {"pull", client_pull},
    {"push", client_push},
    {"push_pull", client_push_pull},
    {"exchange_start", client_exchange_start},
    {"exchange_finish", client_exchange_finish},
    {"global_step", client_global_step},
    {"done", client_done},
    {"stats", client_stats},
    {"ranges", client_ranges},
    {"is_sync", client_is_sync},
    {"close", client_close},
    {NULL, NULL},
};

static const luaL_Reg client_meta[] = {
    {"__gc", client_gc},
    {"__close", client_gc},
    {"__tostring", client_tostring},
    {NULL, NULL},
};

/* ps.merge_checkpoints(dir [, layout]) -> params, info | nil, err: the
 * newest restorable set of ps checkpoints in dir (of the model with that
 * layout checksum, or of the newest) as one flat tensor, and {P=, nps=,
 * step=, layout=, layout_json=, shards="ps0@S ps1@S"} (dtf export). */
static int l_merge_checkpoints(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    uint64_t layout = 0;
    if (!lua_isnoneornil(L, 2)) {
        lua_settop(L, 2);
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, 2);
        lua_setfield(L, -2, "layout_checksum");
        layout = opt_checksum(L, lua_gettop(L));
    }
    /* In a box, so that a raise below (out of memory) frees it. */
    dtf_ps_merged *box = lua_newuserdatauv(L, sizeof *box, 0);
    memset(box, 0, sizeof *box);
    luaL_setmetatable(L, MERGED_MT);
    if (dtf_ps_ckpt_merge(dir, layout, box) < 0)
        return lopt_fail(L);
    dtf_ps_merged m = *box;
    int64_t shape[1] = {(int64_t)m.P};
    dtf_tensor *t = ltensor_push_new(L, 1, shape);
    if (m.P)
        memcpy(dtf_data(t), m.params, (size_t)m.P * sizeof(float));
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, m.layout);
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)m.P);
    lua_setfield(L, -2, "P");
    lua_pushinteger(L, m.nps);
    lua_setfield(L, -2, "nps");
    lua_pushinteger(L, m.step);
    lua_setfield(L, -2, "step");
    lua_pushstring(L, hex);
    lua_setfield(L, -2, "layout");
    lua_pushstring(L, m.shards);
    lua_setfield(L, -2, "shards");
    if (m.layout_json) {
        lua_pushstring(L, m.layout_json);
        lua_setfield(L, -2, "layout_json");
    }
    dtf_ps_merged_free(box);
    return 2;
}

static int merged_gc(lua_State *L)
{
    dtf_ps_merged_free(luaL_checkudata(L, 1, MERGED_MT));
    return 0;
}

/* ps.lr_at(optimizer, step) -> the learning rate of the step-th update
 * (0-based) under the optimizer table's schedule (optim.config's). */
static int l_lr_at(lua_State *L)
{
    dtf_optim o;
    dtf_lr_schedule sched;
    lopt_optim(L, 1, "ps.lr_at", DTF_ADAM, &o, &sched);
    lua_Integer step = luaL_checkinteger(L, 2);
    lua_pushnumber(L, dtf_lr_at(&sched, o.lr, step));
    return 1;
}

static const luaL_Reg functions[] = {
    {"serve", l_serve},
    {"lr_at", l_lr_at},
    {"merge_checkpoints", l_merge_checkpoints},
    {"local_shard", l_local_shard},
    {"connect", l_connect},
    {"shard_range", l_shard_range},
    {NULL, NULL},
};

/* ps.defaults: the timeouts serve and connect default to (net.h), so that
 * train.lua's hyperparameters state them nowhere else. */
static void push_defaults(lua_State *L)
{
    static const struct { const char *k; double v; } d[] = {
        {"connect_timeout", DTF_DEFAULT_CONNECT_TIMEOUT}, {"timeout", DTF_DEFAULT_TIMEOUT},
        {"reconnect_timeout", DTF_DEFAULT_RECONNECT_TIMEOUT},
        {"sync_timeout", DTF_DEFAULT_SYNC_TIMEOUT}, {"done_timeout", DTF_DEFAULT_DONE_TIMEOUT},
        {"keepalive", DTF_DEFAULT_KEEPALIVE}, {"checkpoint_secs", DTF_DEFAULT_CHECKPOINT_SECS},
    };
    lua_createtable(L, 0, (int)(sizeof d / sizeof d[0]));
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        if (d[i].v == (double)(lua_Integer)d[i].v)
            lua_pushinteger(L, (lua_Integer)d[i].v); /* help prints 120, not 120.0 */
        else
            lua_pushnumber(L, d[i].v);
        lua_setfield(L, -2, d[i].k);
    }
}

int luaopen_dtf_ps(lua_State *L)
{
    static const luaL_Reg serve_meta[] = {{"__gc", serve_gc}, {NULL, NULL}};
    lopt_newclass(L, CLIENT_MT, client_meta, client_methods);
    static const luaL_Reg merged_meta[] = {{"__gc", merged_gc}, {NULL, NULL}};
    lopt_newclass(L, SERVE_MT, serve_meta, NULL);
    lopt_newclass(L, MERGED_MT, merged_meta, NULL);
    static const luaL_Reg local_meta[] = {{"__gc", local_close}, {"__close", local_close},
                                          {NULL, NULL}};
    static const luaL_Reg local_methods[] = {{"apply", local_apply}, {"step", local_step},
                                             {"lr", local_lr}, {"restored", local_restored},
                                             {"close", local_close}, {NULL, NULL}};
    lopt_newclass(L, LOCAL_MT, local_meta, local_methods);
    luaL_newlib(L, functions);
    push_defaults(L);
    lua_setfield(L, -2, "defaults");
    return 1;
}
