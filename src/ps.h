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
#include "schedule.h"
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
    dtf_lr_schedule sched; /* the rate at each update (zeros: constant) */
} dtf_shard_config;

typedef struct dtf_worker_state {
    int64_t last_step;     /* step of its latest push; -1 before any */
    uint64_t pushes;       /* gradients received (any outcome) */
    uint64_t stale, duplicates;
    double last_push;      /* dtf_now() of its latest push; 0 before any */
    int joined;            /* said HELLO at least once (dtf_shard_join) */
    int done;              /* sent WORKER_DONE */
    int dropped;           /* sync: left out of the replicas (timeout) */
    int contributed;       /* sync: summed into the current step */
    /* async: its latest PUSH's request id and step tag, so that one re-sent
     * over a new connection (only its reply was lost) is not applied twice.
     * Kept in checkpoints, so a re-send to a restarted
     * ps whose checkpoint already holds that gradient is still caught. */
    int push_seen;
    uint32_t push_id;
    int64_t push_tag;
} dtf_worker_state;

typedef struct dtf_shard {
    dtf_shard_config cfg;
    uint64_t offset, count;   /* this shard's range */
    float *params;            /* count floats (the caller's for dtf_shard_wrap) */
    int owns_params;
    float *slot0, *slot1;     /* optimizer slots (NULL when unused) */
    float *acc;               /* sync: sum of this step's gradients */
    int64_t step;             /* updates applied (the shard's step) */
    int have;                 /* sync: gradients summed into acc */
    double pending_since;     /* sync: dtf_now() of the current step's first
                               * gradient; 0 while none is in */
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

/* A shard whose parameters are the caller's count floats (updated in
 * place; they must outlive the shard): one process trains through the same
 * shard as a ps would, with its checkpoints and schedules. */
dtf_shard *dtf_shard_wrap(const dtf_shard_config *cfg, float *params);

/* The learning rate the next update applies. */
float dtf_shard_lr(const dtf_shard *s);

/* Number of gradients the current sync step waits for. */
int dtf_shard_needed(const dtf_shard *s);

/* A worker said HELLO (its index was checked against cfg.workers by the
 * admission); -1 with dtf_error() for an index out of range. */
int dtf_shard_join(dtf_shard *s, int worker);

/* What a PUSH did: its dtf_push_result, whether the shard's step moved (so
 * parked pulls may be answered), and the step whose parameters include the
 * gradient (a pending or duplicate one: the next step; an applied one: this
 * step), which caps the step the worker's next PULL may wait for. */
typedef struct dtf_push_outcome {
    int result;
    int advanced;
    int64_t includes;
    int64_t behind;  /* steps the shard moved since the worker pulled what it
                      * computed the gradient from (its step at arrival - the
                      * tag; 0 or more): the staleness of an applied gradient */
} dtf_push_outcome;

/* A gradient (count floats: the whole range) from `worker`, sent as request
 * `id` and tagged with the worker's step `tag`. Async: applied on arrival,
 * unless it repeats the worker's latest push (same id and tag: a re-send
 * after a reconnect whose reply was lost), which is a duplicate. Sync:
 * summed into the current step (see above). 0 and *out, or -1 with
 * dtf_error() for a worker index out of range. */
int dtf_shard_push(dtf_shard *s, int worker, uint32_t id, int64_t tag, const float *grad,
                   dtf_push_outcome *out);

/* A PULL of [offset, offset + count) that asks for step `want` at least.
 * `includes` is dtf_push_outcome.includes of the same connection's latest
 * push, or -1. Sets *wait_for to the step the reply must wait for: the
 * asked step, but never past the step that includes the worker's latest
 * push (after a ps restart a push tagged 671 may have gone into step 601),
 * nor past the next step (a worker ahead of a restarted ps must not hang).
 * Returns 1 when the reply can go now (the step is reached), 0 when it
 * must wait, -1 with dtf_error() when the range is not inside the shard. */
int dtf_shard_pull(dtf_shard *s, uint64_t offset, uint64_t count, int64_t want,
                   int64_t includes, int64_t *wait_for);

/* The worker finished (WORKER_DONE); in sync mode the step may now
 * complete with fewer replicas. *newly is set to 1 the first time a worker
 * says it. Returns 1 when the step advanced, 0 when not, -1 with
 * dtf_error() for a bad index. */
int dtf_shard_worker_done(dtf_shard *s, int worker, int *newly);

/* 1 once every worker has said done. */
int dtf_shard_all_done(const dtf_shard *s);

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
