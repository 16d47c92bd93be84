/* repl: `dtf repl` (see repl.h), after Lua 5.4's lua.c: doREPL, loadline,
 * addreturn, multiline, l_print, laction/lstop.
 *
 * Ctrl-C has three meanings, chosen by `mode`:
 *   at the prompt      the handler siglongjmps out of readline back to the
 *                      loop, which drops the pending chunk (as psql does;
 *                      libedit's own handler has put the tty back first);
 *   while Lua runs     the handler sets a hook that raises "interrupted!"
 *                      at the next Lua instruction (lua.c's laction); a
 *                      second Ctrl-C before that kills the process, which
 *                      is the way out of a C call that never returns;
 *   otherwise          ignored. */
#include "repl.h"

#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>
#include <lauxlib.h>
#include <lua.h>

#include "host.h"
#include "version.h"

#ifndef DTF_VERSION
#define DTF_VERSION "dev"
#endif

#define PROMPT1     "dtf> "
#define PROMPT2     ">> "
#define HISTORY_MAX 1000
#define EOFMARK     "<eof>"
#define MARKLEN     (sizeof(EOFMARK) / sizeof(char) - 1)

enum { MODE_IDLE, MODE_PROMPT, MODE_RUN };

static lua_State *globalL;
static int interactive;                 /* stdin is a terminal */
static volatile sig_atomic_t mode = MODE_IDLE;
static sigjmp_buf prompt_jmp;
static char *history_file;              /* NULL: no history kept */
static char *getline_buf;               /* the non-terminal line buffer */
static size_t getline_cap;

/* ---- Ctrl-C --------------------------------------------------------------- */

static void lstop(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void on_sigint(int sig)
{
    if (mode == MODE_PROMPT) {
        mode = MODE_IDLE;
        siglongjmp(prompt_jmp, 1);
    }
    if (mode == MODE_RUN) {
        int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
        signal(sig, SIG_DFL);   /* if the hook never runs, the next kills */
        lua_sethook(globalL, lstop, flag, 1);
    }
}

static void set_mode(int m)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    mode = m;
    if (m == MODE_PROMPT && !interactive)
        sa.sa_handler = SIG_DFL;    /* piped input: Ctrl-C ends the REPL */
    sigaction(SIGINT, &sa, NULL);
}

/* Runs the function under narg arguments, interruptible by Ctrl-C. */
static int docall(lua_State *L, int narg, int nres)
{
    int status;
    set_mode(MODE_RUN);
    status = dtf_host_docall(L, narg, nres);
    set_mode(MODE_IDLE);
    lua_sethook(L, NULL, 0, 0);     /* a Ctrl-C that came too late */
    return status;
}

static void report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        fflush(stdout);
        dtf_host_report(L, status, "dtf");
        fflush(stderr);
    }
}

/* ---- history ---------------------------------------------------------------- */

static void history_open(void)
{
    const char *f = getenv("DTF_HISTORY"), *home = getenv("HOME");
    if (f && *f) {
        history_file = strdup(f);
    } else if (home && *home) {
        history_file = malloc(strlen(home) + sizeof "/.dtf_history");
        if (history_file)
            sprintf(history_file, "%s/.dtf_history", home);
    }
    rl_readline_name = "dtf";       /* for `dtf:` lines in ~/.editrc */
    using_history();
    stifle_history(HISTORY_MAX);
    if (history_file)
        read_history(history_file);
}

static void history_close(void)
{
    if (history_file) {
        write_history(history_file);
        history_truncate_file(history_file, HISTORY_MAX);
    }
    free(history_file);
    history_file = NULL;
}

static void saveline(const char *line)
{
    if (interactive && line[0] != '\0')
        add_history(line);
}

/* ---- reading chunks (lua.c) ------------------------------------------------- */

/* Pushes the next line (without its newline); 0 at end of input. */
static int pushline(lua_State *L, int firstline)
{
    const char *b;
    size_t l;

    if (interactive) {
        char *line;
        set_mode(MODE_PROMPT);
        line = readline(firstline ? PROMPT1 : PROMPT2);
        set_mode(MODE_IDLE);
        if (!line)
            return 0;
        lua_pushstring(L, line);
        free(line);
    } else {
        ssize_t n;
        set_mode(MODE_PROMPT);
        n = getline(&getline_buf, &getline_cap, stdin);
        set_mode(MODE_IDLE);
        if (n < 0)
            return 0;
        l = (size_t)n;
        while (l > 0 && (getline_buf[l - 1] == '\n' || getline_buf[l - 1] == '\r'))
            l--;
        lua_pushlstring(L, getline_buf, l);
    }
    b = lua_tolstring(L, -1, &l);
    if (firstline && b[0] == '=') {          /* Lua 5.1's `=x` */
        lua_pushfstring(L, "return %s", b + 1);
        lua_remove(L, -2);
    }
    return 1;
}

/* Tries the line as `return line;`, so that an expression prints. */
static int addreturn(lua_State *L)
{
    const char *line = lua_tostring(L, -1);
    const char *retline = lua_pushfstring(L, "return %s;", line);
    int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
    if (status == LUA_OK) {
        lua_remove(L, -2);                   /* the `return` line */
        saveline(line);
    } else {
        lua_pop(L, 2);                       /* the line and the error */
    }
    return status;
}

/* A syntax error that ends at <eof>: the chunk goes on in the next line. */
static int incomplete(lua_State *L, int status)
{
    if (status == LUA_ERRSYNTAX) {
        size_t lmsg;
        const char *msg = lua_tolstring(L, -1, &lmsg);
        if (lmsg >= MARKLEN && strcmp(msg + lmsg - MARKLEN, EOFMARK) == 0) {
            lua_pop(L, 1);
            return 1;
        }
    }
    return 0;
}

static int multiline(lua_State *L)
{
    for (;;) {
        size_t len;
        const char *line = lua_tolstring(L, 1, &len);
        int status = luaL_loadbuffer(L, line, len, "=stdin");
        if (!incomplete(L, status) || !pushline(L, 0)) {
            saveline(line);
            return status;
        }
        lua_pushliteral(L, "\n");
        lua_insert(L, -2);
        lua_concat(L, 3);
    }
}

/* Leaves a compiled chunk (or an error) on the stack; -1 at end of input. */
static int loadline(lua_State *L)
{
    int status;
    lua_settop(L, 0);
    if (!pushline(L, 1))
        return -1;
    if ((status = addreturn(L)) != LUA_OK)
        status = multiline(L);
    lua_remove(L, 1);
    return status;
}

/* Prints what the statement returned through the global `print`. */
static void l_print(lua_State *L)
{
    int n = lua_gettop(L);
    if (n > 0) {
        int status;
        luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
        lua_getglobal(L, "print");
        lua_insert(L, 1);
        status = docall(L, n, 0);
        report(L, status);
    }
}

/* ---- the loop --------------------------------------------------------------- */

/* A global `dtf` whose fields load the dtf.* modules on first use, so that
 * `dtf.tensor.zeros(2, 2)` works at the prompt without a require. */
static const char lazy_dtf[] =
    "local t = rawget(_G, 'dtf')\n"
    "if t == nil then t = {}; rawset(_G, 'dtf', t) end\n"
    "if type(t) ~= 'table' or getmetatable(t) ~= nil then return end\n"
    "setmetatable(t, {__index = function(self, k)\n"
    "  if type(k) ~= 'string' then return nil end\n"
    "  local name = 'dtf.' .. k\n"
    "  if package.loaded[name] == nil and package.preload[name] == nil\n"
    "     and not package.searchpath(name, package.path) then return nil end\n"
    "  local m = require(name)\n"
    "  rawset(self, k, m)\n"
    "  return m\n"
    "end})\n";

int dtf_repl(lua_State *L)
{
    int status;

    globalL = L;
    interactive = isatty(STDIN_FILENO);
    if (luaL_loadbuffer(L, lazy_dtf, sizeof lazy_dtf - 1, "=repl") == LUA_OK)
        status = docall(L, 0, 0);
    else
        status = LUA_ERRSYNTAX;
    report(L, status);
    lua_settop(L, 0);

    if (interactive) {
        printf("dtf %s (%s) \xe2\x80\x94 dtf.* modules loaded; Ctrl-D exits\n",
               DTF_VERSION, LUA_VERSION);
        fflush(stdout);
        history_open();
    }
    for (;;) {
        if (sigsetjmp(prompt_jmp, 1) != 0) {
            /* Ctrl-C at the prompt: drop the line and any pending chunk. */
            fputs("\n", stdout);
            fflush(stdout);
        }
        status = loadline(L);
        if (status == -1)
            break;
        if (status == LUA_OK)
            status = docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK)
            l_print(L);
        else
            report(L, status);
        fflush(stdout);
    }
    lua_settop(L, 0);
    set_mode(MODE_IDLE);
    signal(SIGINT, SIG_DFL);
    if (interactive) {
        fputs("\n", stdout);
        history_close();
    }
    fflush(stdout);
    free(getline_buf);
    getline_buf = NULL;
    getline_cap = 0;
    return 0;
}
