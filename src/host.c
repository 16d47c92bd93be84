/* host: the Lua state every dtf command runs in (see host.h). */
#include "host.h"

#include <lauxlib.h>
#include <lualib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmodules.h"
#include "progress.h"
#include "version.h"

/* ---- module preloading (linit.c's loadedlibs) ---------------------------- */

static const luaL_Reg preloaded[] = {
    {"dtf.tensor", luaopen_dtf_tensor},
    {"dtf.data", luaopen_dtf_data},
    {"dtf.ps", luaopen_dtf_ps},
    {"dtf.ckpt", luaopen_dtf_ckpt},
    {"dtf.util", luaopen_dtf_util},
    {"dtf.metrics", luaopen_dtf_metrics},   /* lwatch.c */
    {"dtf.tfevents", luaopen_dtf_tfevents}, /* lwatch.c */
    {"dtf.progress", luaopen_dtf_progress}, /* lwatch.c */
    {NULL, NULL},
};

static void preload_modules(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const luaL_Reg *m = preloaded; m->name; m++) {
        lua_pushcfunction(L, m->func);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);
}

/* ---- finding the Lua library --------------------------------------------- */

static int is_file(const char *path)
{
    return access(path, R_OK) == 0;
}

/* The directory holding lua/dtf/: next to the binary's tree while building
 * (build/dtf, build/asan/dtf) or <prefix>/share/dtf/lua once installed.
 * Writes it to out; 0 when found. */
static int find_lua_dir(const char *argv0, char *out, size_t outlen)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
    } else if (!realpath(argv0, exe)) {
        return -1;
    }
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    static const char *const rel[] = {"lua", "../lua", "../../lua", "../share/dtf/lua",
                                      "../../share/dtf/lua"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char probe[PATH_MAX + 64];
        snprintf(probe, sizeof probe, "%s/%s/dtf/nn.lua", exe, rel[i]);
        if (is_file(probe)) {
            char dir[PATH_MAX + 64];
            snprintf(dir, sizeof dir, "%s/%s", exe, rel[i]);
            if (!realpath(dir, out) || strlen(out) >= outlen)
                return -1;
            return 0;
        }
    }
    return -1;
}

/* package.path = DTF_PATH dirs, then the library dir, then Lua's default. */
static void set_package_path(lua_State *L, const char *argv0)
{
    lua_getglobal(L, "package");
    luaL_Buffer b;
    luaL_buffinit(L, &b); /* nothing else may be pushed until luaL_pushresult */
    const char *env = getenv("DTF_PATH");
    for (const char *p = env ? env : ""; *p;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        if (len > 0) {
            luaL_addlstring(&b, p, len);
            luaL_addstring(&b, "/?.lua;");
            luaL_addlstring(&b, p, len);
            luaL_addstring(&b, "/?/init.lua;");
        }
        p += len + (colon ? 1 : 0);
    }
    char dir[PATH_MAX];
    if (find_lua_dir(argv0, dir, sizeof dir) == 0) {
        luaL_addstring(&b, dir);
        luaL_addstring(&b, "/?.lua;");
        luaL_addstring(&b, dir);
        luaL_addstring(&b, "/?/init.lua;");
    }
    luaL_pushresult(&b);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

/* ---- dtf.cli: what the command line said --------------------------------- */

static void setfield_opt(lua_State *L, const char *key, const char *value)
{
    if (value) {
        lua_pushstring(L, value);
        lua_setfield(L, -2, key);
    }
}

static void push_cli(lua_State *L, const dtf_cli *cli)
{
    lua_newtable(L);
    setfield_opt(L, "role", cli->role);
    setfield_opt(L, "index", cli->index);
    setfield_opt(L, "ps", cli->ps);
    setfield_opt(L, "workers", cli->workers);
    setfield_opt(L, "token_file", cli->token_file);
    setfield_opt(L, "config", cli->config);
    /* set: the --set strings in order ("KEY=VALUE"); dtf.hparams parses them
     * against the script's declared hyperparameters. */
    lua_createtable(L, cli->nset, 0);
    for (int i = 0; i < cli->nset; i++) {
        lua_pushstring(L, cli->set[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "set");
    lua_pushstring(L, DTF_VERSION);
    lua_setfield(L, -2, "version");
}

lua_State *dtf_host_new(const char *argv0, const dtf_cli *cli)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "dtf: cannot create the Lua state: out of memory\n");
        return NULL;
    }
    luaL_openlibs(L);
    preload_modules(L);
    set_package_path(L, argv0);
    static const dtf_cli none = {0};
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    push_cli(L, cli ? cli : &none);
    lua_setfield(L, -2, "dtf.cli");
    lua_pop(L, 1);
    return L;
}

/* ---- calling with tracebacks (lua.c's msghandler/docall/report) ---------- */

/* An expected error (a table {exit=, msg=}, raised by dtf.usage_error with
 * exit 2, dtf.fail with exit 1, dtf.stopped with 128 + the signal) goes through untouched: its message is one
 * line, without a traceback. Returns its exit status, 0 for other errors. */
static int expected_error(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return 0;
    lua_getfield(L, idx, "exit");
    int code = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    /* 1, 2, or 128 + a signal's number: stopped by it (dtf.stopped) */
    return code == DTF_EXIT_FAIL || code == DTF_EXIT_USAGE || (code > 128 && code < 160) ? code : 0;
}

static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (expected_error(L, 1))
            return 1;
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int dtf_host_docall(lua_State *L, int narg, int nres)
{
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    int status = lua_pcall(L, narg, nres, base);
    lua_remove(L, base);
    return status;
}

int dtf_host_report(lua_State *L, int status, const char *progname)
{
    if (status == LUA_OK)
        return DTF_EXIT_OK;
    int code = expected_error(L, -1);
    if (code)
        lua_getfield(L, -1, "msg");
    else
        code = DTF_EXIT_FAIL;
    const char *msg = lua_tostring(L, -1);
    dtf_status_end(1); /* a status line on the terminal stays above the error */
    fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error object is not a string)");
    fflush(stderr);
    lua_settop(L, 0);
    return code;
}

int dtf_host_run_file(lua_State *L, const char *script, int argc, char **argv)
{
    /* arg[0] = script, arg[1..] = arguments, as lua.c's createargtable. */
    lua_createtable(L, argc, 1);
    lua_pushstring(L, script);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");

    int status = luaL_loadfile(L, script);
    if (status == LUA_OK) {
        luaL_checkstack(L, argc, "too many script arguments");
        for (int i = 0; i < argc; i++)
            lua_pushstring(L, argv[i]);
        status = dtf_host_docall(L, argc, 0);
    }
    return dtf_host_report(L, status, "dtf");
}
