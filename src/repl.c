/* repl: `dtf repl` (see repl.h), after Lua 5.4's lua.c: doREPL, loadline,
 * addreturn, multiline, l_print, laction/lstop.
 *
 * Ctrl-C has three meanings, chosen by `mode`:
 *   at the prompt      the handler sets a flag; our libedit input function
 *                      (repl_getc, waiting in ppoll) sees it and ends the
 *                      line, which pushline then drops with any pending
 *                      chunk. (No siglongjmp out of libedit: that leaves
 *                      its state broken and crashes a few prompts later.)
 *   while Lua runs     the handler sets a hook that raises "interrupted!"
 *                      at the next Lua instruction (lua.c's laction); a
 *                      second Ctrl-C before that kills the process, which
 *                      is the way out of a C call that never returns;
 *   otherwise          ignored. */
#include "repl.h"

#include <errno.h>
#include <locale.h>
#include <poll.h>
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

#define PROMPT1     "dtf> "
#define PROMPT2     ">> "
#define HISTORY_MAX 1000
#define EOFMARK     "<eof>"
#define MARKLEN     (sizeof(EOFMARK) / sizeof(char) - 1)

enum { MODE_IDLE, MODE_PROMPT, MODE_RUN };

static lua_State *globalL;
static int interactive;                 /* stdin is a terminal */
static volatile sig_atomic_t mode = MODE_IDLE;
static volatile sig_atomic_t prompt_interrupted;
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
        prompt_interrupted = 1;
        return;
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

static int read_byte(int fd)
{
    unsigned char c;
    ssize_t n;
    do
        n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? c : EOF;
}

/* libedit's input function (rl_getc_function): one character, as a code
 * point; EOF at end of input; '\n' once Ctrl-C is pressed, so that
 * readline returns and pushline can drop the line. SIGINT stays blocked
 * except inside ppoll, so a Ctrl-C cannot slip in between the check of
 * the flag and the wait. */
static int repl_getc(FILE *f)
{
    int fd = fileno(f), c, more, i;
    sigset_t block, orig;

    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &orig);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (prompt_interrupted) {
            sigprocmask(SIG_SETMASK, &orig, NULL);
            return '\n';
        }
        if (ppoll(&p, 1, NULL, &orig) > 0)
            break;
        if (errno != EINTR) {
            sigprocmask(SIG_SETMASK, &orig, NULL);
            return EOF;
        }
    }
    sigprocmask(SIG_SETMASK, &orig, NULL);
    c = read_byte(fd);
    /* UTF-8: gather the continuation bytes into one code point */
    if (c < 0xC0 || c > 0xF4)
        return c;
    more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
    c &= 0x3F >> more;
    for (i = 0; i < more; i++) {
        int b = read_byte(fd);
        if (b < 0 || (b & 0xC0) != 0x80)
            return b < 0 ? EOF : '?';
        c = (c << 6) | (b & 0x3F);
    }
    return c;
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

/* ---- completion ------------------------------------------------------------- */

/* Tab completes names: globals, keywords, and the fields of tables (and of
 * a value's __index tables) after `a.b.` or `obj:`; a userdata whose
 * __index is a function (dtf.Tensor) completes from its metatable's
 * `methods` table, so `x:nu` gives `x:numel`. Metamethods (`__index`) show
 * only when asked for with `__`. The Lua side runs under pcall (an __index
 * may raise) and returns the sorted candidates. */
static const char complete_lua[] =
    "local text = ...\n"
    "local path, sep, last = text:match('^([%w_.:]-)([.:])([%w_]*)$')\n"
    "local t = _G\n"
    "if path then\n"
    "  for name in path:gmatch('[^.:]+') do\n"
    "    if type(t) ~= 'table' and type(getmetatable(t)) ~= 'table' then return {} end\n"
    "    t = t[name]\n"
    "  end\n"
    "else\n"
    "  path, sep, last = '', '', text\n"
    "end\n"
    "local out, seen = {}, {}\n"
    "local function add(k, v)\n"
    "  if type(k) == 'string' and k:match('^[%a_][%w_]*$') and not seen[k]\n"
    "     and k:sub(1, #last) == last and (sep ~= ':' or type(v) == 'function')\n"
    "     and (k:sub(1, 2) ~= '__' or last:sub(1, 2) == '__') then\n"
    "    seen[k] = true\n"
    "    out[#out + 1] = path .. sep .. k\n"
    "  end\n"
    "end\n"
    "if path == '' then\n"
    "  for w in ('and break do else elseif end false for function goto if in '\n"
    "      .. 'local nil not or repeat return then true until while'):gmatch('%a+') do\n"
    "    add(w, true)\n"
    "  end\n"
    "end\n"
    "if path == 'dtf' and sep == '.' then\n"
    "  for _, list in ipairs({package.preload, package.loaded}) do\n"
    "    for name in pairs(list) do\n"
    "      local sub = type(name) == 'string' and name:match('^dtf%.([%w_]+)$')\n"
    "      if sub then add(sub, true) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for _ = 1, 8 do\n"
    "  if type(t) == 'table' then\n"
    "    for k, v in pairs(t) do add(k, v) end\n"
    "  end\n"
    "  local mt = getmetatable(t)\n"
    "  if type(mt) ~= 'table' then break end\n"
    "  local idx = rawget(mt, '__index')\n"
    "  if type(idx) ~= 'table' then idx = rawget(mt, 'methods') end\n"
    "  if type(idx) ~= 'table' then break end\n"
    "  t = idx\n"
    "end\n"
    "table.sort(out)\n"
    "return out\n";

static char **cands;    /* the candidates for the word being completed */
static size_t ncands, icand;

static void free_cands(void)
{
    size_t i;
    for (i = icand; i < ncands; i++)
        free(cands[i]);
    free(cands);
    cands = NULL;
    ncands = icand = 0;
}

/* Fills cands from the Lua side; leaves the stack as it found it. */
static void find_cands(const char *text)
{
    lua_State *L = globalL;
    int top = lua_gettop(L);
    lua_Integer i, n;

    free_cands();
    if (!lua_checkstack(L, 8) ||
        luaL_loadbuffer(L, complete_lua, sizeof complete_lua - 1,
                        "=complete") != LUA_OK)
        goto out;
    lua_pushstring(L, text);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1))
        goto out;
    n = luaL_len(L, -1);
    cands = calloc((size_t)n + 1, sizeof *cands);
    for (i = 1; cands && i <= n; i++) {
        const char *c;
        lua_rawgeti(L, -1, i);
        c = lua_tostring(L, -1);
        if (c && (cands[ncands] = strdup(c)) != NULL)
            ncands++;
        lua_pop(L, 1);
    }
out:
    lua_settop(L, top);
}

/* rl_compentry_func_t: the state-th candidate, malloc'd; NULL when done. */
static char *next_cand(const char *text, int state)
{
    if (state == 0)
        find_cands(text);
    if (icand < ncands)
        return cands[icand++];      /* readline frees it */
    free_cands();
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1;   /* no file names for a miss */
    return rl_completion_matches(text, next_cand);
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
    rl_getc_function = repl_getc;   /* read before rl_initialize() */
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(}[]),+-*/%^~#";
    rl_completion_append_character = '\0';
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

/* Pushes the next line (without its newline); 0 at end of input, -1
 * when Ctrl-C dropped the line (nothing pushed). */
static int pushline(lua_State *L, int firstline)
{
    const char *b;
    size_t l;

    if (interactive) {
        char *line;
        prompt_interrupted = 0;
        set_mode(MODE_PROMPT);
        line = readline(firstline ? PROMPT1 : PROMPT2);
        set_mode(MODE_IDLE);
        if (prompt_interrupted) {
            prompt_interrupted = 0;
            free(line);
            return -1;
        }
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

/* A syntax error that ends at <eof>: the chunk goes on in the next line.
 * (The message stays on the stack, to be reported at end of input.) */
static int incomplete(lua_State *L, int status)
{
    if (status == LUA_ERRSYNTAX) {
        size_t lmsg;
        const char *msg = lua_tolstring(L, -1, &lmsg);
        if (lmsg >= MARKLEN && strcmp(msg + lmsg - MARKLEN, EOFMARK) == 0)
            return 1;
    }
    return 0;
}

/* A status beside LUA_OK and the errors: Ctrl-C dropped the chunk. */
#define DROPPED (-2)

static int multiline(lua_State *L)
{
    for (;;) {
        size_t len;
        const char *line = lua_tolstring(L, 1, &len);
        int status = luaL_loadbuffer(L, line, len, "=stdin"), more;
        if (!incomplete(L, status) || (more = pushline(L, 0)) == 0) {
            saveline(line);
            return status;          /* the error, if any, is on top */
        }
        if (more < 0) {
            saveline(line);
            lua_pop(L, 1);          /* the "<eof>" error */
            lua_pushnil(L);         /* loadline removes one value */
            return DROPPED;
        }
        lua_remove(L, -2);          /* the "<eof>" error */
        lua_pushliteral(L, "\n");
        lua_insert(L, -2);
        lua_concat(L, 3);
    }
}

/* Leaves a compiled chunk (or an error) on the stack; -1 at end of input,
 * DROPPED after a Ctrl-C at the prompt. */
static int loadline(lua_State *L)
{
    int status;
    lua_settop(L, 0);
    if ((status = pushline(L, 1)) <= 0)
        return status == 0 ? -1 : DROPPED;
    if ((status = addreturn(L)) != LUA_OK)
        status = multiline(L);
    lua_remove(L, 1);
    return status;
}

/* Pushes the function that prints a statement's values: dtf.repl's show
 * (tables nested, layers with their shapes: dtf.pretty), or the global
 * `print` if dtf.repl has none. */
static void push_printer(lua_State *L)
{
    int top = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, "dtf.repl") == LUA_TTABLE &&
        lua_getfield(L, -1, "show") == LUA_TFUNCTION) {
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return;
    }
    lua_settop(L, top);
    lua_getglobal(L, "print");
}

/* Prints what the statement returned. */
static void l_print(lua_State *L)
{
    int n = lua_gettop(L);
    if (n > 0) {
        int status;
        luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
        push_printer(L);
        lua_insert(L, 1);
        status = docall(L, n, 0);
        report(L, status);
    }
}

/* ---- the loop --------------------------------------------------------------- */

int dtf_repl(lua_State *L)
{
    int status;
    char *old_ctype = NULL;

    globalL = L;
    interactive = isatty(STDIN_FILENO);
    lua_settop(L, 0);

    if (interactive) {
        /* libedit decodes keys by LC_CTYPE: a UTF-8 one, or é is lost */
        const char *cur = setlocale(LC_CTYPE, NULL);
        old_ctype = cur ? strdup(cur) : NULL;
        if (!setlocale(LC_CTYPE, "") || MB_CUR_MAX == 1)
            setlocale(LC_CTYPE, "C.UTF-8");
        printf("dtf %s (%s) \xe2\x80\x94 dtf.* modules loaded; Ctrl-D exits\n",
               DTF_VERSION, LUA_VERSION);
        fflush(stdout);
        history_open();
    }
    for (;;) {
        status = loadline(L);
        if (status == -1)
            break;
        if (status == DROPPED)
            continue;
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
        if (old_ctype)
            setlocale(LC_CTYPE, old_ctype);
        free(old_ctype);
    }
    fflush(stdout);
    free(getline_buf);
    getline_buf = NULL;
    getline_cap = 0;
    return 0;
}
