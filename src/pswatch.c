/* pswatch: a ps's metrics and TensorBoard scalars (see pswatch.h). */
#include "pswatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dtf_pswatch {
    dtf_metric *step, *updates, *stale, *duplicates, *bytes_in, *bytes_out, *workers,
        *ckpt_step, *ckpt_seconds, *staleness;
    dtf_tfevents *tb;
    int tb_failed;      /* a write failed: stop trying, keep serving */
    double every;
    /* the current TensorBoard interval */
    double t_start;     /* dtf_now() when it began; 0: no step seen yet */
    uint64_t updates0;  /* updates when it began */
    double behind_sum;
    uint64_t behind_n;
    int64_t last_step;
    uint64_t last_updates;
};

static dtf_pswatch *current;

dtf_pswatch *dtf_pswatch_current(void)
{
    return current;
}

void dtf_pswatch_set_current(dtf_pswatch *w)
{
    current = w;
}

static int register_metrics(dtf_pswatch *w, dtf_metrics *r)
{
    static const double behind_bounds[] = {0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};
    w->step = dtf_metrics_gauge(r, "dtf_ps_global_step",
                                "The shard's step (updates applied); ps 0's is the global step.");
    w->updates = dtf_metrics_counter(r, "dtf_ps_updates_total", "Optimizer updates applied.");
    w->stale = dtf_metrics_counter(r, "dtf_ps_stale_total",
                                   "Gradients dropped because their step had passed (sync).");
    w->duplicates = dtf_metrics_counter(r, "dtf_ps_duplicates_total",
                                        "Gradients dropped as a second one for the same step.");
    w->bytes_in = dtf_metrics_counter(r, "dtf_ps_bytes_received_total",
                                      "Bytes of frames received from workers.");
    w->bytes_out = dtf_metrics_counter(r, "dtf_ps_bytes_sent_total",
                                       "Bytes of frames sent to workers.");
    w->workers = dtf_metrics_gauge(r, "dtf_ps_workers_connected",
                                   "Workers with an open connection to this ps.");
    w->ckpt_step = dtf_metrics_gauge(r, "dtf_ps_checkpoint_step",
                                     "Step of the last checkpoint this ps wrote.");
    w->ckpt_seconds = dtf_metrics_gauge(r, "dtf_ps_checkpoint_seconds",
                                        "Seconds writing the last checkpoint took.");
    w->staleness = dtf_metrics_histogram(
        r, "dtf_ps_staleness", "Steps a gradient is behind the shard when it is applied.",
        behind_bounds, (int)(sizeof behind_bounds / sizeof behind_bounds[0]));
    return w->step && w->updates && w->stale && w->duplicates && w->bytes_in && w->bytes_out &&
                   w->workers && w->ckpt_step && w->ckpt_seconds && w->staleness
               ? 0
               : -1;
}

dtf_pswatch *dtf_pswatch_new(dtf_metrics *r, const char *tbdir, double every)
{
    dtf_pswatch *w = calloc(1, sizeof *w);
    if (!w) {
        dtf_seterr("out of memory");
        return NULL;
    }
    w->every = every > 0 ? every : 2;
    if ((r && register_metrics(w, r) < 0) || (tbdir && !(w->tb = dtf_tfevents_open(tbdir, NULL)))) {
        free(w);
        return NULL;
    }
    return w;
}

/* The interval's scalars, at the shard's step. */
static void write_scalars(dtf_pswatch *w, double now)
{
    double dt = now - w->t_start;
    if (!w->tb || w->tb_failed || dt <= 0)
        return;
    double ups = (double)(w->last_updates - w->updates0) / dt;
    int bad = dtf_tfevents_scalar(w->tb, "ps/updates_per_second", w->last_step, ups) < 0;
    if (w->behind_n > 0)
        bad |= dtf_tfevents_scalar(w->tb, "ps/staleness", w->last_step,
                                   w->behind_sum / (double)w->behind_n) < 0;
    bad |= dtf_tfevents_flush(w->tb) < 0;
    w->tb_failed = bad; /* dtf_error() says why; dtf_pswatch_free reports it */
    w->t_start = now;
    w->updates0 = w->last_updates;
    w->behind_sum = 0;
    w->behind_n = 0;
}

int dtf_pswatch_free(dtf_pswatch *w)
{
    if (!w)
        return 0;
    if (current == w)
        current = NULL;
    if (w->t_start > 0)
        write_scalars(w, dtf_now());
    int rc = w->tb_failed ? -1 : 0;
    char msg[512] = "";
    if (rc)
        snprintf(msg, sizeof msg, "%s", dtf_error());
    if (dtf_tfevents_close(w->tb) < 0)
        rc = -1;
    else if (msg[0])
        dtf_seterr("%s", msg);
    free(w);
    return rc;
}

const char *dtf_pswatch_events_path(const dtf_pswatch *w)
{
    return w && w->tb ? dtf_tfevents_path(w->tb) : NULL;
}

void dtf_pswatch_step(dtf_pswatch *w, const dtf_shard *sh)
{
    if (!w)
        return;
    dtf_gauge_set(w->step, (double)sh->step);
    dtf_counter_set(w->updates, (double)sh->updates);
    dtf_counter_set(w->stale, (double)sh->stale);
    dtf_counter_set(w->duplicates, (double)sh->duplicates);
    w->last_step = sh->step;
    w->last_updates = sh->updates;
    if (!w->tb)
        return;
    double now = dtf_now();
    if (w->t_start == 0) {
        /* the first interval starts with the first update, not with the
         * idle wait for the workers before it */
        if (sh->updates > 0) {
            w->t_start = now;
            w->updates0 = sh->updates - 1;
        }
    } else if (now - w->t_start >= w->every) {
        write_scalars(w, now);
    }
}

void dtf_pswatch_applied(dtf_pswatch *w, int64_t behind)
{
    if (!w)
        return;
    if (behind < 0)
        behind = 0;
    dtf_histogram_observe(w->staleness, (double)behind);
    w->behind_sum += (double)behind;
    w->behind_n++;
}

void dtf_pswatch_traffic(dtf_pswatch *w, uint64_t bytes_in, uint64_t bytes_out,
                         int workers_connected)
{
    if (!w)
        return;
    dtf_counter_set(w->bytes_in, (double)bytes_in);
    dtf_counter_set(w->bytes_out, (double)bytes_out);
    dtf_gauge_set(w->workers, workers_connected);
}

void dtf_pswatch_checkpoint(dtf_pswatch *w, int64_t step, double seconds)
{
    if (!w)
        return;
    dtf_gauge_set(w->ckpt_step, (double)step);
    dtf_gauge_set(w->ckpt_seconds, seconds);
}
