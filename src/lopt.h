/* lopt: what every binding shares, so that each rule has one home: option
 * tables read the same way everywhere (unknown keys raise; a wrong type or
 * range raises naming the function and the key), the optimizer settings,
 * metatables, and the `nil, message` of expected runtime failures
 * (lauxlib's luaL_fileresult is the shape). */
#ifndef DTF_LOPT_H
#define DTF_LOPT_H

#include <lauxlib.h>
#include <lua.h>

#include "optim.h"
#include "schedule.h"

/* Raises "FN: unknown option 'K' (known: a, b, ...)" for a key of the
 * table at t that is not in known (NULL-terminated): a typo must not be
 * silently ignored (idle_timout = 5). */
void lopt_check_keys(lua_State *L, int t, const char *fn, const char *const *known);

/* Field k of the table at t, or def when it is nil. A value of another
 * type, or out of [lo, hi], raises "FN: option 'K' ...". A string stays
 * referenced by the table, so the pointer outlives the call. */
double lopt_number(lua_State *L, int t, const char *fn, const char *k, double def, double lo,
                   double hi);
lua_Integer lopt_int(lua_State *L, int t, const char *fn, const char *k, lua_Integer def,
                     lua_Integer lo, lua_Integer hi);
int lopt_bool(lua_State *L, int t, const char *fn, const char *k, int def);
const char *lopt_string(lua_State *L, int t, const char *fn, const char *k, const char *def,
                        size_t *len);

/* The optimizer settings at idx: a kind name ("adam"), a table {kind=, lr=,
 * momentum=, nesterov= (boolean), beta1=, beta2=, eps=, weight_decay=,
 * schedule= ("constant", "step", "cosine"), warmup=, decay_steps=, decay=},
 * or nil. Missing fields take the kind's defaults (kind: def_kind) and a
 * constant rate. sched NULL: the schedule fields are refused. */
void lopt_optim(lua_State *L, int idx, const char *fn, dtf_optim_kind def_kind, dtf_optim *o,
                dtf_lr_schedule *sched);

/* An expected runtime failure of the core: pushes fail and dtf_error(),
 * returns 2 (return lopt_fail(L);). */
int lopt_fail(lua_State *L);

/* Registers metatable `name` (liolib's createmeta): the metamethods of
 * meta (may be NULL) and the methods of methods as its __index (may be
 * NULL). Leaves nothing on the stack. */
void lopt_newclass(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);

#endif
