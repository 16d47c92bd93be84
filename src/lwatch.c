/* lwatch: the Lua faces of what watches a training (lua/dtf/watch.lua uses
 * them; README "Watching a training").
 *
 * dtf.metrics, the process's registry (metrics.h) and its endpoint:
 *   metrics.counter(name, help) / .gauge(name, help) / .histogram(name, help, bounds)
 *       -> a metric with m:inc([v]), m:set(v), m:observe(v), m:value()
 *   metrics.info(name, help, {key = value, ...})   labels sorted by key
 *   metrics.serve{port=, host=, max_connections=, max_header_bytes=,
 *                 max_body_bytes=, request_timeout=} -> port | nil, err
 *   metrics.port(), metrics.connections(), metrics.stop(), metrics.render() -> text
 *   metrics.blas_core() -> the name of the BLAS kernels in use
 *   metrics.pswatch{dir=, every=} -> a ps watch (pswatch.h), made the
 *       process's current one: w:path(), w:close()
 * dtf.tfevents, TensorBoard event files (tfevents.h):
 *   tfevents.open(dir [, host]) -> writer | nil, err: w:scalar(tag, step, value),
 *       w:flush(), w:close(), w:path() (the I/O calls: true | nil, err)
 *   tfevents.read(path) -> {tag = {steps = {...}, values = {...}, walls = {...}}},
 *       truncated | nil, err
 *   tfevents.list(dir) -> the event files under dir (4 levels deep), sorted
 * dtf.progress, the status line (progress.h) and deploy.log's size:
 *   progress.start(total), progress.update(step, examples [, loss]) (draws
 *   when due), progress.finish(), progress.active(), progress.log_max(bytes)
 */
#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "lmodules.h"
#include "log.h"
#include "metrics.h"
#include "progress.h"
#include "pswatch.h"
#include "tfevents.h"

#define METRIC_MT "dtf.Metric"
#define WRITER_MT "dtf.EventWriter"
#define PSWATCH_MT "dtf.PsWatch"
#define POINTS_MT "dtf.EventPoints"

/* ---- dtf.metrics ------------------------------------------------------------------ */

static dtf_metrics *registry(lua_State *L)
{
    dtf_metrics *r = dtf_metrics_default();
    if (!r)
        luaL_error(L, "metrics: out of memory");
    return r;
}

static int push_metric(lua_State *L, dtf_metric *m)
{
    if (!m)
        return luaL_error(L, "metrics: %s", dtf_error());
    dtf_metric **b = lua_newuserdatauv(L, sizeof *b, 0);
    *b = m; /* lives as long as the process's registry */
    luaL_setmetatable(L, METRIC_MT);
    return 1;
}

static dtf_metric *check_metric(lua_State *L)
{
    return *(dtf_metric **)luaL_checkudata(L, 1, METRIC_MT);
}

static int m_counter(lua_State *L)
{
    return push_metric(L, dtf_metrics_counter(registry(L), luaL_checkstring(L, 1),
                                              luaL_optstring(L, 2, "")));
}

static int m_gauge(lua_State *L)
{
    return push_metric(L, dtf_metrics_gauge(registry(L), luaL_checkstring(L, 1),
                                            luaL_optstring(L, 2, "")));
}

static int m_histogram(lua_State *L)
{
    luaL_checktype(L, 3, LUA_TTABLE);
    double b[DTF_METRICS_MAX_BUCKETS];
    lua_Integer n = luaL_len(L, 3);
    luaL_argcheck(L, n >= 1 && n <= DTF_METRICS_MAX_BUCKETS, 3, "1 to 24 bucket bounds");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 3, i);
        b[i - 1] = luaL_checknumber(L, -1);
        lua_pop(L, 1);
    }
    return push_metric(L, dtf_metrics_histogram(registry(L), luaL_checkstring(L, 1),
                                                luaL_optstring(L, 2, ""), b, (int)n));
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int m_info(lua_State *L)
{
    luaL_checktype(L, 3, LUA_TTABLE);
    const char *keys[32], *labels[65];
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        luaL_argcheck(L, lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING, 3,
                      "labels must map strings to strings");
        luaL_argcheck(L, n < 32, 3, "at most 32 labels");
        keys[n++] = lua_tostring(L, -2); /* anchored by the table */
        lua_pop(L, 1);
    }
    qsort(keys, (size_t)n, sizeof keys[0], key_cmp);
    for (int i = 0; i < n; i++) {
        lua_getfield(L, 3, keys[i]);
        labels[2 * i] = keys[i];
        labels[2 * i + 1] = lua_tostring(L, -1);
        lua_pop(L, 1); /* the table keeps the string */
    }
    labels[2 * n] = NULL;
    return push_metric(L, dtf_metrics_info(registry(L), luaL_checkstring(L, 1),
                                           luaL_optstring(L, 2, ""), labels));
}

static int mt_inc(lua_State *L)
{
    dtf_counter_add(check_metric(L), luaL_optnumber(L, 2, 1));
    return 0;
}

static int mt_set(lua_State *L)
{
    dtf_metric *m = check_metric(L);
    double v = luaL_checknumber(L, 2);
    if (dtf_metric_kind_of(m) == DTF_COUNTER)
        dtf_counter_set(m, v);
    else
        dtf_gauge_set(m, v);
    return 0;
}

static int mt_observe(lua_State *L)
{
    dtf_histogram_observe(check_metric(L), luaL_checknumber(L, 2));
    return 0;
}

static int mt_value(lua_State *L)
{
    lua_pushnumber(L, dtf_metric_value(check_metric(L)));
    return 1;
}

static double field_number(lua_State *L, int t, const char *k, double def)
{
    lua_getfield(L, t, k);
    double v = luaL_optnumber(L, -1, def);
    lua_pop(L, 1);
    return v;
}

static int m_serve(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    dtf_metrics_serve_config c;
    memset(&c, 0, sizeof c);
    lua_getfield(L, 1, "host");
    c.host = luaL_optstring(L, -1, NULL); /* anchored on the stack until serve returns */
    lua_Integer port = (lua_Integer)field_number(L, 1, "port", 0);
    luaL_argcheck(L, port >= 0 && port <= 65535, 1, "port out of range 0..65535");
    c.port = (int)port;
    c.max_connections = (int)field_number(L, 1, "max_connections", 0);
    c.max_header_bytes = (size_t)field_number(L, 1, "max_header_bytes", 0);
    c.max_body_bytes = (size_t)field_number(L, 1, "max_body_bytes", 0);
    c.request_timeout = field_number(L, 1, "request_timeout", 0);
    if (dtf_metrics_serve(registry(L), &c) < 0) {
        luaL_pushfail(L);
        lua_pushstring(L, dtf_error());
        return 2;
    }
    lua_pushinteger(L, dtf_metrics_port(registry(L)));
    return 1;
}

static int m_port(lua_State *L)
{
    lua_pushinteger(L, dtf_metrics_port(registry(L)));
    return 1;
}

static int m_connections(lua_State *L)
{
    lua_pushinteger(L, dtf_metrics_connections(registry(L)));
    return 1;
}

static int m_stop(lua_State *L)
{
    dtf_metrics_stop(registry(L));
    return 0;
}

static int m_render(lua_State *L)
{
    size_t n;
    char *text = dtf_metrics_render(registry(L), &n);
    if (!text)
        return luaL_error(L, "metrics: %s", dtf_error());
    lua_pushlstring(L, text, n); /* may raise: free first */
    free(text);
    return 1;
}

/* The BLAS core in use (dtf's choice, see blas.h, or OpenBLAS's own). */
static int m_blas_core(lua_State *L)
{
    const char *name = dtf_blas_core();
    lua_pushstring(L, name ? name : "unknown");
    return 1;
}

/* true, or fail and dtf_error(): the io library's shape (luaL_fileresult). */
static int io_result(lua_State *L, int rc)
{
    if (rc < 0) {
        luaL_pushfail(L);
        lua_pushstring(L, dtf_error());
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

typedef struct psbox {
    dtf_pswatch *w;
} psbox;

static int ps_close(lua_State *L)
{
    psbox *b = luaL_checkudata(L, 1, PSWATCH_MT);
    if (!b->w)
        return 0;
    int rc = dtf_pswatch_free(b->w);
    b->w = NULL;
    return io_result(L, rc);
}

static int ps_path(lua_State *L)
{
    psbox *b = luaL_checkudata(L, 1, PSWATCH_MT);
    const char *p = dtf_pswatch_events_path(b->w);
    if (p)
        lua_pushstring(L, p);
    else
        lua_pushnil(L);
    return 1;
}

static int m_pswatch(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "dir");
    const char *dir = luaL_optstring(L, -1, NULL);
    double every = field_number(L, 1, "every", 2);
    psbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->w = NULL;
    luaL_setmetatable(L, PSWATCH_MT);
    dtf_metrics *r = registry(L);
    b->w = dtf_pswatch_new(r, dir, every);
    if (!b->w) {
        luaL_pushfail(L);
        lua_pushstring(L, dtf_error());
        return 2;
    }
    dtf_pswatch_set_current(b->w);
    return 1;
}

static const luaL_Reg metrics_funcs[] = {
    {"counter", m_counter}, {"gauge", m_gauge},     {"histogram", m_histogram},
    {"info", m_info},       {"serve", m_serve},     {"port", m_port},
    {"stop", m_stop},       {"render", m_render},   {"connections", m_connections},
    {"blas_core", m_blas_core}, {"pswatch", m_pswatch}, {NULL, NULL},
};

static const luaL_Reg metric_methods[] = {
    {"inc", mt_inc}, {"set", mt_set}, {"observe", mt_observe}, {"value", mt_value}, {NULL, NULL},
};

static const luaL_Reg pswatch_methods[] = {
    {"close", ps_close}, {"path", ps_path}, {"__gc", ps_close}, {"__close", ps_close},
    {NULL, NULL},
};

static void new_class(lua_State *L, const char *mt, const luaL_Reg *methods)
{
    luaL_newmetatable(L, mt);
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

int luaopen_dtf_metrics(lua_State *L)
{
    new_class(L, METRIC_MT, metric_methods);
    new_class(L, PSWATCH_MT, pswatch_methods);
    luaL_newlib(L, metrics_funcs);
    return 1;
}

/* ---- dtf.tfevents ------------------------------------------------------------------ */

typedef struct wbox {
    dtf_tfevents *w;
} wbox;

static wbox *check_writer(lua_State *L)
{
    wbox *b = luaL_checkudata(L, 1, WRITER_MT);
    if (!b->w)
        luaL_error(L, "event writer is closed");
    return b;
}

static int t_open(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    const char *host = luaL_optstring(L, 2, NULL);
    wbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->w = NULL;
    luaL_setmetatable(L, WRITER_MT);
    if (!(b->w = dtf_tfevents_open(dir, host))) {
        luaL_pushfail(L);
        lua_pushstring(L, dtf_error());
        return 2;
    }
    return 1;
}

static int w_scalar(lua_State *L)
{
    wbox *b = check_writer(L);
    const char *tag = luaL_checkstring(L, 2);
    lua_Integer step = luaL_checkinteger(L, 3);
    double v = luaL_checknumber(L, 4);
    return io_result(L, dtf_tfevents_scalar(b->w, tag, step, v));
}

static int w_flush(lua_State *L)
{
    return io_result(L, dtf_tfevents_flush(check_writer(L)->w));
}

static int w_path(lua_State *L)
{
    lua_pushstring(L, dtf_tfevents_path(check_writer(L)->w));
    return 1;
}

static int w_close(lua_State *L)
{
    wbox *b = luaL_checkudata(L, 1, WRITER_MT);
    if (!b->w) {
        lua_pushboolean(L, 1);
        return 1;
    }
    int rc = dtf_tfevents_close(b->w);
    b->w = NULL;
    return io_result(L, rc);
}

/* What tfevents.read collects before it touches Lua (a Lua error inside
 * the reader would leak its buffer and FILE). */
typedef struct point {
    char *tag;
    int64_t step;
    double wall;
    float value;
} point;

typedef struct points {
    point *p;
    size_t n, cap;
    int oom;
} points;

static void collect(void *ud, const dtf_event *ev, const char *tag, size_t taglen, float value)
{
    points *ps = ud;
    if (ps->oom)
        return;
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 256;
        point *np = realloc(ps->p, cap * sizeof *np);
        if (!np) {
            ps->oom = 1;
            return;
        }
        ps->p = np;
        ps->cap = cap;
    }
    point *q = &ps->p[ps->n];
    if (!(q->tag = strndup(tag, taglen))) {
        ps->oom = 1;
        return;
    }
    q->step = ev->step;
    q->wall = ev->wall;
    q->value = value;
    ps->n++;
}

static void free_points(points *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->p[i].tag);
    free(ps->p);
    ps->p = NULL;
    ps->n = ps->cap = 0;
}

static int points_gc(lua_State *L)
{
    free_points(luaL_checkudata(L, 1, POINTS_MT));
    return 0;
}

/* Appends v to the list in field k of the table at idx. */
static void append(lua_State *L, int idx, const char *k, lua_Number v, int integer)
{
    lua_getfield(L, idx, k);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (integer)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, v);
    lua_rawseti(L, -2, n + 1);
    lua_pop(L, 1);
}

/* The series of tag, created on first use, pushed. */
static void push_series(lua_State *L, int t, const char *tag)
{
    if (lua_getfield(L, t, tag) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_newtable(L);
    lua_setfield(L, -2, "steps");
    lua_newtable(L);
    lua_setfield(L, -2, "values");
    lua_newtable(L);
    lua_setfield(L, -2, "walls");
    lua_pushvalue(L, -1);
    lua_setfield(L, t, tag);
}

static int t_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    /* The points live in a userdata until they are in tables, so that a
     * memory error while building those frees them (__gc). */
    points *ps = lua_newuserdatauv(L, sizeof *ps, 0);
    memset(ps, 0, sizeof *ps);
    luaL_setmetatable(L, POINTS_MT);
    int truncated = 0;
    if (dtf_tfevents_read(path, collect, ps, &truncated) < 0 || ps->oom) {
        luaL_pushfail(L);
        lua_pushstring(L, ps->oom ? "out of memory" : dtf_error());
        free_points(ps);
        return 2;
    }
    lua_newtable(L);
    int t = lua_gettop(L);
    for (size_t i = 0; i < ps->n; i++) {
        push_series(L, t, ps->p[i].tag);
        int s = lua_gettop(L);
        append(L, s, "steps", (lua_Number)ps->p[i].step, 1);
        append(L, s, "values", ps->p[i].value, 0);
        append(L, s, "walls", ps->p[i].wall, 0);
        lua_pop(L, 1);
    }
    free_points(ps);
    lua_pushboolean(L, truncated);
    return 2;
}

/* Appends to the list at idx every file under dir (depth levels down)
 * whose name holds "tfevents" (TensorBoard's own test). */
static int list_dir(lua_State *L, int idx, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOTDIR ? 0 : -1;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth > 0) {
            list_dir(L, idx, path, depth - 1);
        } else if (S_ISREG(st.st_mode) && strstr(e->d_name, "tfevents")) {
            lua_pushstring(L, path); /* a memory error here leaks d: out of memory only */
            lua_rawseti(L, idx, (lua_Integer)lua_rawlen(L, idx) + 1);
        }
    }
    closedir(d);
    return 0;
}

static int path_lt(lua_State *L)
{
    lua_pushboolean(L, strcmp(luaL_checkstring(L, 1), luaL_checkstring(L, 2)) < 0);
    return 1;
}

/* tfevents.list(dir) -> { path, ... } sorted | nil, err */
static int t_list(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    lua_newtable(L);
    int t = lua_gettop(L);
    if (list_dir(L, t, dir, 4) < 0) {
        luaL_pushfail(L);
        lua_pushfstring(L, "%s: %s", dir, strerror(errno));
        return 2;
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, t);
    lua_pushcfunction(L, path_lt);
    lua_call(L, 2, 0);
    lua_settop(L, t);
    return 1;
}

static const luaL_Reg tfevents_funcs[] = {
    {"open", t_open}, {"read", t_read}, {"list", t_list}, {NULL, NULL},
};

static const luaL_Reg writer_methods[] = {
    {"scalar", w_scalar}, {"flush", w_flush},   {"close", w_close},
    {"path", w_path},     {"__gc", w_close},    {"__close", w_close}, {NULL, NULL},
};

int luaopen_dtf_tfevents(lua_State *L)
{
    new_class(L, WRITER_MT, writer_methods);
    luaL_newmetatable(L, POINTS_MT);
    lua_pushcfunction(L, points_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newlib(L, tfevents_funcs);
    return 1;
}

/* ---- dtf.progress ------------------------------------------------------------------- */

/* One status line per process: the upvalue-free state lives in progress.c's
 * terminal line; the rates in this module's single dtf_progress. */
static dtf_progress run_progress;
static int run_on;

static int p_start(lua_State *L)
{
    lua_Integer total = luaL_optinteger(L, 1, 0);
    dtf_progress_init(&run_progress, total > 0 ? total : 0, dtf_now());
    run_on = 1;
    return 0;
}

static int p_update(lua_State *L)
{
    if (!run_on)
        return 0;
    lua_Integer step = luaL_checkinteger(L, 1);
    double examples = luaL_checknumber(L, 2);
    double loss = luaL_optnumber(L, 3, -1);
    double now = dtf_now();
    dtf_progress_update(&run_progress, now, step, examples, loss);
    if (dtf_progress_due(&run_progress, now)) {
        char text[512];
        dtf_progress_format(&run_progress, now, text, sizeof text);
        dtf_status_show(text);
    }
    return 0;
}

static int p_finish(lua_State *L)
{
    if (run_on && dtf_status_active()) {
        char text[512];
        dtf_progress_format(&run_progress, dtf_now(), text, sizeof text);
        dtf_status_show(text);
    }
    run_on = 0;
    dtf_status_end(1);
    return 0;
}

static int p_active(lua_State *L)
{
    lua_pushboolean(L, run_on);
    return 1;
}

static int p_log_max(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "a size in bytes, 0 or more");
    dtf_log_set_max((uint64_t)n);
    return 0;
}

static const luaL_Reg progress_funcs[] = {
    {"start", p_start},   {"update", p_update},   {"finish", p_finish},
    {"active", p_active}, {"log_max", p_log_max}, {NULL, NULL},
};

int luaopen_dtf_progress(lua_State *L)
{
    luaL_newlib(L, progress_funcs);
    return 1;
}
