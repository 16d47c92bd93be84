/* host: the Lua state every dtf command runs in. It preloads the dtf.*
 * modules, finds the Lua library relative to the binary and through
 * DTF_PATH, and runs chunks under lua_pcall with a traceback handler (as
 * Lua's lua.c does: msghandler, docall, report). */
#ifndef DTF_HOST_H
#define DTF_HOST_H

#include <lua.h>

#include "cli.h"

/* Where the task sits in the cluster, as given on the command line; the
 * Lua side (dtf.cluster) falls back to DTF_CLUSTER and TF_CONFIG. */
typedef struct dtf_cli {
    const char *role, *index, *ps, *workers, *token_file, *config; /* NULL: not given */
    int nset;
    const char **set;          /* "KEY=VALUE" strings, in order */
} dtf_cli;

/* Exit statuses are cli.h's; a Lua error raised through dtf.usage_error()
 * maps to DTF_EXIT_USAGE. */

/* A new state with the standard libraries and dtf.* preloaded, package.path
 * set, and the table `dtf.cli` built from cli. NULL (and a message on
 * stderr) when memory runs out. argv0 locates the Lua library. */
lua_State *dtf_host_new(const char *argv0, const dtf_cli *cli);

/* Calls the function below narg arguments with a traceback handler. */
int dtf_host_docall(lua_State *L, int narg, int nres);

/* Prints the error on top of the stack (if status is not LUA_OK) and
 * returns the exit status it maps to. */
int dtf_host_report(lua_State *L, int status, const char *progname);

/* Runs a script file with the global `arg` set as lua.c does:
 * arg[0] = script, arg[1..] = args. Returns an exit status. */
int dtf_host_run_file(lua_State *L, const char *script, int argc, char **argv);

#endif
