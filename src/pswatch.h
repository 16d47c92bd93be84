/* pswatch: what a ps shows of itself while it serves: its Prometheus
 * metrics and its TensorBoard scalars.
 *
 *   dtf_ps_global_step         gauge    the shard's step (ps 0's is the global step)
 *   dtf_ps_updates_total       counter  optimizer applications
 *   dtf_ps_stale_total         counter  sync: gradients dropped as stale
 *   dtf_ps_duplicates_total    counter  gradients dropped as duplicates
 *   dtf_ps_bytes_received_total, dtf_ps_bytes_sent_total   counters
 *   dtf_ps_workers_connected   gauge    workers with a connection now
 *   dtf_ps_checkpoint_step     gauge    step of the last checkpoint written
 *   dtf_ps_checkpoint_seconds  gauge    how long writing it took
 *   dtf_ps_staleness           histogram  global steps a gradient is behind when applied
 *   TensorBoard: ps/updates_per_second, ps/staleness (the mean over the
 *   interval), every `every` seconds, at the shard's step.
 *
 * The ps's loop feeds it through the hooks below, each a few atomic
 * stores (and, once per interval, one TensorBoard record and a write).
 * They do nothing when w is NULL, so a call site needs no check:
 *
 *   dtf_pswatch_step(dtf_pswatch_current(), shard);
 *
 * Single-threaded like the shard: the hooks run on the ps loop's thread
 * (the metrics endpoint reads the atomics from its own). Core: no Lua, no
 * printing. */
#ifndef DTF_PSWATCH_H
#define DTF_PSWATCH_H

#include <stdint.h>

#include "metrics.h"
#include "ps.h"
#include "tfevents.h"

typedef struct dtf_pswatch dtf_pswatch;

/* Metrics in r (NULL: none); TensorBoard scalars in a new event file under
 * tbdir (NULL: none) every `every` seconds (<= 0: 2). NULL with
 * dtf_error(). */
dtf_pswatch *dtf_pswatch_new(dtf_metrics *r, const char *tbdir, double every);
/* Writes the last interval's scalars, flushes and frees. 0, or -1 with
 * dtf_error() when the event file could not be written. */
int dtf_pswatch_free(dtf_pswatch *w);
/* The event file's path, NULL without one. */
const char *dtf_pswatch_events_path(const dtf_pswatch *w);

/* The process's ps watch, which the ps role sets up before it serves
 * (dtf.watch); NULL when there is none. */
dtf_pswatch *dtf_pswatch_current(void);
void dtf_pswatch_set_current(dtf_pswatch *w);

/* ---- hooks ------------------------------------------------------------------------- */

/* After every change of the shard's step or counters (an update applied,
 * a gradient dropped, a checkpoint restored): copies them into the metrics;
 * writes the TensorBoard scalars when the interval is over. */
void dtf_pswatch_step(dtf_pswatch *w, const dtf_shard *sh);
/* For each gradient applied (async) or summed into a step (sync): how many
 * steps the shard has moved since the worker pulled what it computed it
 * from (shard step at arrival - the gradient's step tag; 0 or more). */
void dtf_pswatch_applied(dtf_pswatch *w, int64_t behind);
/* The server's totals, whenever they change (or once a second). */
void dtf_pswatch_traffic(dtf_pswatch *w, uint64_t bytes_in, uint64_t bytes_out,
                         int workers_connected);
/* After a checkpoint is written: its step and how long it took. */
void dtf_pswatch_checkpoint(dtf_pswatch *w, int64_t step, double seconds);

#endif
