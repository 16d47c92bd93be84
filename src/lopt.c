/* lopt: option tables, optimizer settings, metatables and failures for
 * every binding (lopt.h). */
#include "lopt.h"

#include <math.h>
#include <string.h>

#include "util.h"

void lopt_check_keys(lua_State *L, int t, const char *fn, const char *const *known)
{
    t = lua_absindex(L, t);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: option keys must be strings, got %s", fn, luaL_typename(L, -1));
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (const char *const *p = known; *p && !ok; p++)
            ok = strcmp(*p, k) == 0;
        if (!ok) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (const char *const *p = known; *p; p++) {
                if (p != known)
                    luaL_addstring(&b, ", ");
                luaL_addstring(&b, *p);
            }
            luaL_pushresult(&b);
            luaL_error(L, "%s: unknown option '%s' (known: %s)", fn, k, lua_tostring(L, -1));
        }
    }
}

/* Pushes field k; 1 when it is set (not nil). */
static int field(lua_State *L, int t, const char *k)
{
    if (lua_getfield(L, t, k) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    return 0;
}

double lopt_number(lua_State *L, int t, const char *fn, const char *k, double def, double lo,
                   double hi)
{
    if (!field(L, t, k))
        return def;
    int ok;
    double v = lua_tonumberx(L, -1, &ok);
    if (!ok || lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "%s: option '%s' must be a number, got %s", fn, k, luaL_typename(L, -1));
    if (!(v >= lo && v <= hi))
        luaL_error(L, "%s: option '%s' = %f out of range [%f, %f]", fn, k, v, lo, hi);
    lua_pop(L, 1);
    return v;
}

lua_Integer lopt_int(lua_State *L, int t, const char *fn, const char *k, lua_Integer def,
                     lua_Integer lo, lua_Integer hi)
{
    lua_Integer v = def;
    if (field(L, t, k)) {
        int isint = 0;
        if (lua_type(L, -1) == LUA_TNUMBER)
            v = lua_tointegerx(L, -1, &isint);
        if (!isint)
            luaL_error(L, "%s: option '%s' must be an integer, got %s", fn, k,
                       lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    if (v < lo || v > hi)
        luaL_error(L, "%s: option '%s' = %I out of range [%I, %I]", fn, k, (LUAI_UACINT)v,
                   (LUAI_UACINT)lo, (LUAI_UACINT)hi);
    return v;
}

int lopt_bool(lua_State *L, int t, const char *fn, const char *k, int def)
{
    if (!field(L, t, k))
        return def;
    if (!lua_isboolean(L, -1))
        luaL_error(L, "%s: option '%s' must be a boolean, got %s", fn, k, luaL_typename(L, -1));
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

const char *lopt_string(lua_State *L, int t, const char *fn, const char *k, const char *def,
                        size_t *len)
{
    if (len)
        *len = def ? strlen(def) : 0;
    if (!field(L, t, k))
        return def;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: option '%s' must be a string, got %s", fn, k, luaL_typename(L, -1));
    const char *v = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* the table still holds it */
    return v;
}

static dtf_optim_kind kind_of(lua_State *L, const char *fn, const char *name)
{
    int kind = dtf_optim_kind_from_name(name);
    if (kind < 0)
        luaL_error(L, "%s: %s", fn, dtf_error());
    return (dtf_optim_kind)kind;
}

/* The schedule fields of the optimizer table at idx. */
static void read_schedule(lua_State *L, int idx, const char *fn, dtf_lr_schedule *s)
{
    const char *name = lopt_string(L, idx, fn, "schedule", "constant", NULL);
    int kind = dtf_lr_kind_from_name(name);
    if (kind < 0)
        luaL_error(L, "%s: %s", fn, dtf_error());
    s->kind = (dtf_lr_kind)kind;
    s->warmup = lopt_int(L, idx, fn, "warmup", 0, 0, INT64_MAX);
    s->decay_steps = lopt_int(L, idx, fn, "decay_steps", 0, 0, INT64_MAX);
    s->decay = lopt_number(L, idx, fn, "decay", 0.1, 0, 1);
    if (dtf_lr_check(s) < 0)
        luaL_error(L, "%s: %s", fn, dtf_error());
}

void lopt_optim(lua_State *L, int idx, const char *fn, dtf_optim_kind def_kind, dtf_optim *o,
                dtf_lr_schedule *sched)
{
    static const char *const keys[] = {"kind", "lr", "momentum", "nesterov", "beta1", "beta2",
                                       "eps", "weight_decay", NULL};
    static const char *const with_schedule[] = {"kind", "lr", "momentum", "nesterov", "beta1",
                                                "beta2", "eps", "weight_decay", "schedule",
                                                "warmup", "decay_steps", "decay", NULL};
    idx = lua_absindex(L, idx);
    if (sched)
        memset(sched, 0, sizeof *sched);
    if (lua_isnoneornil(L, idx)) {
        dtf_optim_defaults(o, def_kind);
        return;
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        dtf_optim_defaults(o, kind_of(L, fn, lua_tostring(L, idx)));
        return;
    }
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: the optimizer must be a kind name or a table, got %s", fn,
                   luaL_typename(L, idx));
    lopt_check_keys(L, idx, fn, sched ? with_schedule : keys);
    if (sched)
        read_schedule(L, idx, fn, sched);
    const char *name = lopt_string(L, idx, fn, "kind", NULL, NULL);
    dtf_optim_defaults(o, name ? kind_of(L, fn, name) : def_kind);
    o->lr = (float)lopt_number(L, idx, fn, "lr", o->lr, 0, HUGE_VAL);
    o->momentum = (float)lopt_number(L, idx, fn, "momentum", o->momentum, 0, HUGE_VAL);
    o->nesterov = lopt_bool(L, idx, fn, "nesterov", o->nesterov);
    o->beta1 = (float)lopt_number(L, idx, fn, "beta1", o->beta1, 0, 1);
    o->beta2 = (float)lopt_number(L, idx, fn, "beta2", o->beta2, 0, 1);
    o->eps = (float)lopt_number(L, idx, fn, "eps", o->eps, 0, HUGE_VAL);
    o->weight_decay = (float)lopt_number(L, idx, fn, "weight_decay", o->weight_decay, 0, HUGE_VAL);
}

int lopt_fail(lua_State *L)
{
    luaL_pushfail(L);
    lua_pushstring(L, dtf_error());
    return 2;
}

void lopt_newclass(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods)
{
    luaL_newmetatable(L, name);
    if (meta)
        luaL_setfuncs(L, meta, 0);
    if (methods) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}
