/* lutil: dtf.util, the small host services Lua scripts need: clocks, the
 * seed's log lines, hashing, sleeping, the process's identity. */
#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lmodules.h"
#include "log.h"
#include "lopt.h"
#include "util.h"

static int l_now(lua_State *L)
{
    lua_pushnumber(L, dtf_now());
    return 1;
}

static int l_wallclock(lua_State *L)
{
    lua_pushnumber(L, dtf_wallclock());
    return 1;
}

static int level_arg(lua_State *L, int idx)
{
    static const char *const names[] = {"debug", "info", "warning", "error", NULL};
    static const int levels[] = {DTF_LOG_DEBUG, DTF_LOG_INFO, DTF_LOG_WARNING, DTF_LOG_ERROR};
    return levels[luaL_checkoption(L, idx, "info", names)];
}

/* util.log(level, msg [, to_stdout=true]) */
static int l_log(lua_State *L)
{
    int level = level_arg(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    int to_stdout = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
    dtf_log_write(level, to_stdout, msg);
    return 0;
}

/* util.log_open(dir) -> true | nil, err */
static int l_log_open(lua_State *L)
{
    if (dtf_log_open(luaL_checkstring(L, 1)) != 0) {
        luaL_pushfail(L);
        lua_pushstring(L, dtf_error());
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_log_close(lua_State *L)
{
    dtf_log_close();
    return 0;
}

/* util.fnv1a(string) -> 16 hex digits */
static int l_fnv1a(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)dtf_fnv1a(DTF_FNV_SEED, s, n));
    lua_pushstring(L, hex);
    return 1;
}

static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (s > 0) {
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    return 0;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int l_hostname(lua_State *L)
{
    char name[256];
    if (gethostname(name, sizeof name) != 0)
        return luaL_fileresult(L, 0, "gethostname");
    name[sizeof name - 1] = '\0';
    lua_pushstring(L, name);
    return 1;
}

/* util.isatty(fd) */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* util.ready(): tells the supervisor that started this task (dtf local,
 * through the pipe whose fd is $DTF_READY_FD) that the task is up: a ps
 * serves, a worker has trained a step. A task that fails before it is
 * ready is not restarted: its next try would fail the same way. Once; a
 * no-op without a supervisor. */
static int l_ready(lua_State *L)
{
    const char *v = getenv("DTF_READY_FD");
    char *end;
    long fd = v && *v ? strtol(v, &end, 10) : -1;
    if (fd >= 3 && *end == 0) {
        ssize_t w = write((int)fd, "1", 1);
        (void)w; /* the supervisor may be gone: nothing to tell then */
        close((int)fd);
        unsetenv("DTF_READY_FD");
    }
    (void)L;
    return 0;
}

/* ---- stopping between steps ------------------------------------------------
 * A worker or one process asked to stop (SIGTERM: a pod deleted, an
 * upgrade; SIGINT: Ctrl-C) ends at a step boundary: its training loop polls
 * util.stop_signal() once a step, so nothing is cut mid-update and one
 * process can write its last checkpoint. Without a handler, PID 1 of a
 * container would ignore SIGTERM until the kubelet's SIGKILL. */
volatile sig_atomic_t dtf_stop_signal; /* lmodules.h: the ps client polls it too */

static void on_stop_signal(int sig)
{
    dtf_stop_signal = sig;
}

/* util.trap_signals(): SIGTERM and SIGINT from now on only set the flag. */
static int l_trap_signals(lua_State *L)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    (void)L;
    return 0;
}

/* util.stop_signal() -> the signal's number and name, or nil */
static int l_stop_signal(lua_State *L)
{
    int sig = dtf_stop_signal;
    if (!sig)
        return 0;
    lua_pushinteger(L, sig);
    lua_pushstring(L, sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a signal");
    return 2;
}

/* util.split_address("host:port" | "[v6]:port") -> host, port | nil, err */
static int l_split_address(lua_State *L)
{
    char host[256];
    int port;
    if (dtf_parse_hostport(luaL_checkstring(L, 1), host, sizeof host, &port) < 0)
        return lopt_fail(L);
    lua_pushstring(L, host);
    lua_pushinteger(L, port);
    return 2;
}

static const luaL_Reg funcs[] = {
    {"now", l_now},           {"wallclock", l_wallclock}, {"log", l_log},
    {"log_open", l_log_open}, {"log_close", l_log_close}, {"fnv1a", l_fnv1a},
    {"sleep", l_sleep},       {"getpid", l_getpid},       {"hostname", l_hostname},
    {"isatty", l_isatty},     {"split_address", l_split_address}, {"ready", l_ready},
    {"trap_signals", l_trap_signals}, {"stop_signal", l_stop_signal}, {NULL, NULL},
};

int luaopen_dtf_util(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
