/* repl: `dtf repl`, a Lua prompt over a host state (Lua's lua.c doREPL).
 *
 * On a terminal it reads with libedit (history in ~/.dtf_history, or in
 * $DTF_HISTORY), prompts "dtf> " and ">> " for a continued chunk, and
 * Ctrl-C interrupts a running statement or clears the line at the
 * prompt. When stdin is not a terminal it reads plain lines with no
 * prompt, so input can be piped in. `expr` prints expr's values through
 * dtf.repl's show (dtf.pretty: tables nested, layers with their shapes);
 * Tab completes globals, keywords, fields and methods (`string.fo`,
 * `s:up`, a tensor's `x:nu`). */
#ifndef DTF_REPL_H
#define DTF_REPL_H

#include <lua.h>

/* Runs until end of input (Ctrl-D). L comes from dtf_host_new(). Returns
 * the exit status: 0. */
int dtf_repl(lua_State *L);

#endif
