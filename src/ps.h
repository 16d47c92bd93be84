/* ps: one parameter-server shard, without sockets.
 *
 * The model's parameters are one flat float32 buffer [0, P). Shard i of n
 * holds the contiguous range [floor(i*P/n), floor((i+1)*P/n)), its
 * optimizer slots beside it, and a step counter (ps 0's is the global
 * step). Gradients for the shard's whole range are applied:
 *   async: each on arrival (step++ per gradient);
 *   sync:  summed for the current step until `replicas` distinct workers
 *          have pushed (or every worker still in the game has), then
 *          averaged, applied once, step++. A gradient tagged with an older
 *          step is dropped as stale; a second one from the same worker for
 *          the same step is dropped as a duplicate.
 * Single-threaded: the caller (the ps event loop) serialises calls. */
#ifndef DTF_PS_H
#define DTF_PS_H

#include <stddef.h>
#include <stdint.h>

#include "optim.h"
#include "wire.h"

/* The range of shard i of n over P floats: offset and count (0-based). */
void dtf_shard_range(uint64_t P, int n, int i, uint64_t *offset, uint64_t *count);

typedef struct dtf_shard_config {
    int index, nps;    /* this shard, of nps */
    uint64_t P;        /* total parameters */
    int workers;       /* worker tasks, indices 0 .. workers-1 */
    int sync;          /* 0 async, 1 sync */
    int replicas;      /* sync: distinct gradients averaged per step,
                        * 1 .. workers; 0 means workers */
    dtf_optim optim;
} dtf_shard_config;

typedef struct dtf_worker_state {
    int64_t last_step;     /* step of its latest push; -1 before any */
    uint64_t pushes;       /* gradients received (any outcome) */
    uint64_t stale, duplicates;
    double last_push;      /* dtf_now() of its latest push; 0 before any */
    int joined;            /* said HELLO at least once (set by the server) */
    int done;              /* sent WORKER_DONE */
    int dropped;           /* sync: left out of the replicas (timeout) */
    int contributed;       /* sync: summed into the current step */
    /* async: its latest PUSH's request id and step tag, so that one re-sent
     * over a new connection (only its reply was lost) is not applied twice.
     * Set by the server; kept in checkpoints, so a re-send to a restarted
     * ps whose checkpoint already holds that gradient is still caught. */
    int push_seen;
    uint32_t push_id;
    int64_t push_tag;
} dtf_worker_state;

typedef struct dtf_shard {
    dtf_shard_config cfg;
    uint64_t offset, count;   /* this shard's range */
    float *params;            /* count floats */
    float *slot0, *slot1;     /* optimizer slots (NULL when unused) */
    float *acc;               /* sync: sum of this step's gradients */
    int64_t step;             /* updates applied (the shard's step) */
    int have;                 /* sync: gradients summed into acc */
    dtf_worker_state *w;      /* cfg.workers entries */
    int ndone;                /* workers that sent WORKER_DONE */
    /* counters */
    uint64_t gradients;       /* gradients accepted (applied or summed) */
    uint64_t updates;         /* optimizer applications */
    uint64_t stale, duplicates;
    uint64_t pulls;
} dtf_shard;

/* A shard over its range of params (P floats: the whole flat buffer,
 * initialised identically on every task; only the range is copied), or
 * zeros when params is NULL. NULL with dtf_error() on bad config or OOM. */
dtf_shard *dtf_shard_new(const dtf_shard_config *cfg, const float *params);
void dtf_shard_free(dtf_shard *s);

/* Number of gradients the current sync step waits for. */
int dtf_shard_needed(const dtf_shard *s);

/* Applies or sums grad (count floats: the whole range) from worker with
 * its step. Returns a dtf_push_result, or -1 with
 * dtf_error() for a worker index out of range. *advanced is set to 1 when
 * the step moved (so parked pulls may be answered). */
int dtf_shard_push(dtf_shard *s, int worker, int64_t wstep, const float *grad,
                   int *advanced);

/* The worker finished (WORKER_DONE); in sync mode the step may now
 * complete with fewer replicas. Returns 1 when the step advanced, 0 when
 * not, -1 for a bad index. */
int dtf_shard_worker_done(dtf_shard *s, int worker);

/* Sync: stop waiting for this worker (sync_timeout). It rejoins when it
 * pushes for the current step. Returns 1 when the step advanced. */
int dtf_shard_drop_worker(dtf_shard *s, int worker);

/* Sync: the workers the current step still waits for (at most n written);
 * returns how many there are. */
int dtf_shard_waiting(const dtf_shard *s, int *out, int n);

/* Checkpoint hooks: the state a snapshot needs is s->params, s->slot0,
 * s->slot1 (count floats each, NULL when unused) and s->step. Restore
 * copies count floats into each (NULL slots are zeroed) and sets the step;
 * a pending sync aggregation is discarded. */
void dtf_shard_restore(dtf_shard *s, const float *params, const float *slot0,
                       const float *slot1, int64_t step);

/* The workers' latest async pushes (push_*), kept in checkpoints as
 * "worker:id:tag" items joined by spaces: format returns a malloc'd string
 * (NULL: out of memory); parse sets them (items for workers this shard does
 * not have are ignored) or returns -1 with dtf_error() when malformed. */
char *dtf_shard_format_pushes(const dtf_shard *s);
int dtf_shard_parse_pushes(dtf_shard *s, const char *str);

/* Writes "key=value\n" lines describing the shard to buf (NUL-terminated,
 * truncated to n). Returns the length it would have had (as snprintf). */
size_t dtf_shard_stats(const dtf_shard *s, char *buf, size_t n);

#endif
