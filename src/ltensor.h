/* ltensor: the Lua face of dtf tensors, for other bindings.
 *
 * A tensor userdata (metatable "dtf.Tensor") holds a dtf_tensor header by
 * value and one reference to its storage, dropped by __gc or __close. */
#ifndef DTF_LTENSOR_H
#define DTF_LTENSOR_H

#include <lua.h>

#include "tensor.h"

#define LTENSOR_MT "dtf.Tensor"

/* The tensor at idx; raises an argument error if it is not a live tensor. */
dtf_tensor *ltensor_check(lua_State *L, int idx);
/* The tensor at idx, or NULL if it is not a tensor (or was released). */
dtf_tensor *ltensor_test(lua_State *L, int idx);
/* Pushes a new zeroed contiguous tensor; raises on a bad shape or OOM. */
dtf_tensor *ltensor_push_new(lua_State *L, int ndim, const int64_t *shape);
/* Pushes a new userdata with t's header sharing t's storage (retained). */
void ltensor_push_view(lua_State *L, const dtf_tensor *t);
/* __tostring of a tensor (ltensor_print.c). */
int ltensor_tostring(lua_State *L);

#endif
