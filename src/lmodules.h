/* The dtf.* modules written in C, preloaded by the host (host.c). */
#ifndef DTF_LMODULES_H
#define DTF_LMODULES_H

#include <lua.h>
#include <signal.h>

/* lutil.c: the signal util.trap_signals caught (0: none); a worker's ps
 * client ends its waits on it (lps.c). */
extern volatile sig_atomic_t dtf_stop_signal;

int luaopen_dtf_tensor(lua_State *L); /* ltensor.c */
int luaopen_dtf_data(lua_State *L);   /* ldata.c */
int luaopen_dtf_ps(lua_State *L);     /* lps.c: ps server and client */
int luaopen_dtf_ckpt(lua_State *L);   /* lckpt.c: safetensors checkpoints */
int luaopen_dtf_util(lua_State *L);   /* lutil.c: clocks, hashing, logging I/O */
/* lwatch.c: watching a training */
int luaopen_dtf_metrics(lua_State *L);  /* Prometheus metrics and their endpoint */
int luaopen_dtf_tfevents(lua_State *L); /* TensorBoard event files */
int luaopen_dtf_progress(lua_State *L); /* the status line, deploy.log's size */

#endif
