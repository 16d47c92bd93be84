/* ps_ckpt: a ps shard's checkpoints, ckpt.c's files holding ps.h's state.
 *
 * Each shard i of n writes DIR/ckpt-<step>-ps<i>-of-<n>.safetensors: the
 * tensors "params" (its range of the flat buffer) and the optimizer slots
 * "slot0"/"slot1" where its optimizer has them, with metadata: format,
 * layout (the model's layout checksum, 16 hex digits), layout_json (the
 * model's tensors: names, offsets, shapes, for dtf export), shard, nps,
 * offset, count, P, step, optimizer, mode (sync or async) and pushes
 * (ps.h). Written atomically
 * (ckpt.c); the newest DTF_PS_CKPT_KEEP of each shard of each sharding of
 * the model are kept, other models' files are never touched.
 *
 * A training is its model, not its cluster: a shard restores from the
 * newest checkpoints of its model in DIR whatever sharding wrote them.
 *   - The same number of ps tasks: the newest readable file of its own
 *     shard (a newer one that cannot be read is skipped, with a warning).
 *   - Another number (resharding): its range is cut from the old shards'
 *     files, params and optimizer slots alike: in sync mode at the newest
 *     step for which every old shard has a checkpoint (the shards step
 *     together), in async mode (or without such a step) from each old
 *     shard's newest one; the step is old shard 0's (the global step), the
 *     same for every new shard.
 * The newest sharding wins (by the highest step it reached). Files of
 * another model are ignored, with a line saying so when they are all there
 * is. Files that exist for this model but none of which can be read stop
 * the ps: starting from the initial parameters then would silently throw
 * the training away.
 *
 * Single-threaded like the shard: the ps's event loop calls in. Lines go to
 * the configured dtf_log_fn, prefixed with the configured name. */
#ifndef DTF_PS_CKPT_H
#define DTF_PS_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "ps.h"
#include "util.h"

#define DTF_PS_CKPT_FORMAT "dtf-ps-shard-1"
#define DTF_PS_CKPT_KEEP 3

typedef struct dtf_ps_ckpt_config {
    const char *dir;          /* where the files go (created, mkdir -p) */
    uint64_t layout;          /* the model's layout checksum */
    const char *layout_json;  /* NULL: none (dtf export then cannot name tensors) */
    double secs;              /* a checkpoint at least every secs s of training; 0: not by time */
    int64_t steps;            /* ... or every steps steps; 0: not by steps */
    const char *name;         /* log prefix, e.g. "ps 1"; NULL: "ps <index>" */
    dtf_log_fn log;           /* NULL: silent */
    void *log_ud;
} dtf_ps_ckpt_config;

typedef struct dtf_ps_ckpt dtf_ps_ckpt;

/* Creates the directory, removes the temporary files a killed ps of this
 * shard left there, and restores the shard (see above; logs what it did).
 * NULL with dtf_error() when the directory cannot be made or the model's
 * checkpoints cannot be read. */
dtf_ps_ckpt *dtf_ps_ckpt_open(const dtf_ps_ckpt_config *cfg, dtf_shard *s);
/* After a step: saves when secs or steps have passed since the last one. */
void dtf_ps_ckpt_on_step(dtf_ps_ckpt *k, const dtf_shard *s);
/* Saves now (logs the path or why it failed); 0 or -1. */
int dtf_ps_ckpt_save(dtf_ps_ckpt *k, const dtf_shard *s);
/* Saves once more when the step moved since the last save, then frees k. */
void dtf_ps_ckpt_close(dtf_ps_ckpt *k, const dtf_shard *s);

/* For the metrics: the step of the newest checkpoint written or restored
 * (-1: none) and the seconds the last save took. */
int64_t dtf_ps_ckpt_last_step(const dtf_ps_ckpt *k);
double dtf_ps_ckpt_last_seconds(const dtf_ps_ckpt *k);

/* dtf export: the newest restorable set of shard checkpoints of one model
 * in dir (layout 0: the model whose checkpoints reached the highest step)
 * merged into one flat buffer. */
typedef struct dtf_ps_merged {
    float *params;            /* P floats, malloc'd */
    uint64_t P;
    uint64_t layout;
    char *layout_json;        /* malloc'd; NULL when the files have none */
    int nps;
    int64_t step;             /* shard 0's */
    char shards[512];         /* "ps0@1200 ps1@1200" */
} dtf_ps_merged;
int dtf_ps_ckpt_merge(const char *dir, uint64_t layout, dtf_ps_merged *out);
void dtf_ps_merged_free(dtf_ps_merged *m);

#endif
