/* ps: a parameter-server shard (see ps.h). */
#include "ps.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void dtf_shard_range(uint64_t P, int n, int i, uint64_t *offset, uint64_t *count)
{
    if (n <= 0 || i < 0 || i >= n) {
        *offset = 0;
        *count = 0;
        return;
    }
    /* floor(i*P/n) without overflowing i*P: P = q*n + r. */
    uint64_t un = (uint64_t)n, q = P / un, r = P % un;
    uint64_t a = (uint64_t)i * q + ((uint64_t)i * r) / un;
    uint64_t b = (uint64_t)(i + 1) * q + ((uint64_t)(i + 1) * r) / un;
    *offset = a;
    *count = b - a;
}

/* ---- lifetime ------------------------------------------------------------- */

static float *zalloc(uint64_t n)
{
    if (n > SIZE_MAX / sizeof(float))
        return NULL;
    return calloc(n ? (size_t)n : 1, sizeof(float));
}

/* A shard with its slots; params are the caller's (NULL: allocated). */
static dtf_shard *shard_alloc(const dtf_shard_config *cfg, float *own)
{
    if (cfg->nps < 1 || cfg->index < 0 || cfg->index >= cfg->nps) {
        dtf_seterr("ps index %d out of range for %d ps tasks", cfg->index, cfg->nps);
        return NULL;
    }
    if (cfg->workers < 1) {
        dtf_seterr("a ps needs at least one worker (workers = %d)", cfg->workers);
        return NULL;
    }
    if (cfg->replicas < 0 || cfg->replicas > cfg->workers) {
        dtf_seterr("replicas_to_aggregate = %d, must be between 1 and workers = %d",
                   cfg->replicas, cfg->workers);
        return NULL;
    }
    dtf_shard *s = calloc(1, sizeof *s);
    if (!s) {
        dtf_seterr("out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    if (s->cfg.replicas == 0)
        s->cfg.replicas = cfg->workers;
    dtf_shard_range(cfg->P, cfg->nps, cfg->index, &s->offset, &s->count);
    if (dtf_lr_check(&cfg->sched) < 0) {
        free(s);
        return NULL;
    }
    int nslots = dtf_optim_nslots(&cfg->optim);
    s->owns_params = own == NULL;
    s->params = own ? own : zalloc(s->count);
    s->slot0 = nslots >= 1 ? zalloc(s->count) : NULL;
    s->slot1 = nslots >= 2 ? zalloc(s->count) : NULL;
    s->acc = cfg->sync ? zalloc(s->count) : NULL;
    s->w = calloc((size_t)cfg->workers, sizeof *s->w);
    if (!s->params || (nslots >= 1 && !s->slot0) ||
        (nslots >= 2 && !s->slot1) || (cfg->sync && !s->acc) || !s->w) {
        dtf_shard_free(s);
        dtf_seterr("out of memory for a shard of %" PRIu64 " floats", cfg->P);
        return NULL;
    }
    for (int i = 0; i < cfg->workers; i++)
        s->w[i].last_step = -1;
    return s;
}

dtf_shard *dtf_shard_new(const dtf_shard_config *cfg, const float *params)
{
    dtf_shard *s = shard_alloc(cfg, NULL);
    if (s && params && s->count)
        memcpy(s->params, params + s->offset, (size_t)s->count * sizeof(float));
    return s;
}

dtf_shard *dtf_shard_wrap(const dtf_shard_config *cfg, float *params)
{
    return shard_alloc(cfg, params);
}

float dtf_shard_lr(const dtf_shard *s)
{
    return dtf_lr_at(&s->cfg.sched, s->cfg.optim.lr, s->step);
}

void dtf_shard_free(dtf_shard *s)
{
    if (!s)
        return;
    if (s->owns_params)
        free(s->params);
    free(s->slot0);
    free(s->slot1);
    free(s->acc);
    free(s->w);
    free(s);
}

/* ---- applying gradients ----------------------------------------------------- */

/* One optimizer update, at the rate the schedule gives this step. */
static void apply(dtf_shard *s, const float *g)
{
    dtf_optim o = s->cfg.optim;
    o.lr = dtf_shard_lr(s);
    s->step++;
    s->updates++;
    dtf_optim_apply(&o, s->params, g, s->slot0, s->slot1, (size_t)s->count, s->step);
}

int dtf_shard_needed(const dtf_shard *s)
{
    /* Eligible: every worker that already contributed, plus those still in
     * the game (not done, not dropped). A worker that pushed its last step
     * and then said done still counts for that step. */
    int eligible = 0;
    for (int i = 0; i < s->cfg.workers; i++) {
        const dtf_worker_state *w = &s->w[i];
        if (w->contributed || (!w->done && !w->dropped))
            eligible++;
    }
    return eligible < s->cfg.replicas ? eligible : s->cfg.replicas;
}

/* Sync: applies the averaged sum once enough gradients are in. */
static int maybe_complete(dtf_shard *s)
{
    if (s->have == 0 || s->have < dtf_shard_needed(s))
        return 0;
    float inv = 1.0f / (float)s->have;
    float *a = s->acc;
    for (uint64_t i = 0; i < s->count; i++)
        a[i] *= inv;
    apply(s, a);
    memset(a, 0, (size_t)s->count * sizeof(float));
    s->have = 0;
    s->pending_since = 0;
    for (int i = 0; i < s->cfg.workers; i++)
        s->w[i].contributed = 0;
    return 1;
}

static int check_worker(const dtf_shard *s, int worker)
{
    if (worker < 0 || worker >= s->cfg.workers) {
        dtf_seterr("worker index %d out of range: this ps serves %d workers",
                   worker, s->cfg.workers);
        return -1;
    }
    return 0;
}

int dtf_shard_join(dtf_shard *s, int worker)
{
    if (check_worker(s, worker) < 0)
        return -1;
    s->w[worker].joined = 1;
    return 0;
}

/* Sync: sums grad into the current step (or drops it as stale/duplicate). */
static int sync_push(dtf_shard *s, dtf_worker_state *w, int64_t tag, const float *grad,
                     int *advanced)
{
    if (tag < s->step) {
        w->stale++;
        s->stale++;
        return DTF_PUSH_STALE;
    }
    if (w->contributed) {
        w->duplicates++;
        s->duplicates++;
        return DTF_PUSH_DUPLICATE;
    }
    /* tag >= step: a step from the future (only after a ps restart) is
     * summed into the current one rather than waited for. */
    w->dropped = 0;
    w->contributed = 1;
    s->gradients++;
    float *a = s->acc;
    for (uint64_t i = 0; i < s->count; i++)
        a[i] += grad[i];
    if (s->have++ == 0)
        s->pending_since = dtf_now();
    if (maybe_complete(s)) {
        *advanced = 1;
        return DTF_PUSH_APPLIED;
    }
    return DTF_PUSH_PENDING;
}

/* Async: applies grad unless it repeats the worker's latest push (a client
 * re-sends what was in flight after reconnecting: this gradient was
 * applied, only its reply was lost). Sync mode knows its duplicates by step. */
static int async_push(dtf_shard *s, dtf_worker_state *w, uint32_t id, int64_t tag,
                      const float *grad, int *advanced)
{
    if (w->push_seen && w->push_id == id && w->push_tag == tag) {
        w->duplicates++;
        s->duplicates++;
        return DTF_PUSH_DUPLICATE;
    }
    w->push_seen = 1;
    w->push_id = id;
    w->push_tag = tag;
    s->gradients++;
    apply(s, grad);
    *advanced = 1;
    return DTF_PUSH_APPLIED;
}

int dtf_shard_push(dtf_shard *s, int worker, uint32_t id, int64_t tag, const float *grad,
                   dtf_push_outcome *out)
{
    out->advanced = 0;
    if (check_worker(s, worker) < 0)
        return -1;
    dtf_worker_state *w = &s->w[worker];
    out->behind = s->step > tag ? s->step - tag : 0;
    w->pushes++;
    w->last_push = dtf_now();
    if (tag > w->last_step)
        w->last_step = tag;
    if (w->done) { /* pushing again (a restarted worker): back in the game */
        w->done = 0;
        s->ndone--;
    }
    out->result = s->cfg.sync ? sync_push(s, w, tag, grad, &out->advanced)
                              : async_push(s, w, id, tag, grad, &out->advanced);
    out->includes = out->result == DTF_PUSH_PENDING || out->result == DTF_PUSH_DUPLICATE
                        ? s->step + 1 : s->step;
    return 0;
}

int dtf_shard_pull(dtf_shard *s, uint64_t offset, uint64_t count, int64_t want,
                   int64_t includes, int64_t *wait_for)
{
    if (count > s->count || offset < s->offset || offset - s->offset > s->count - count) {
        dtf_seterr("PULL of [%" PRIu64 ", %" PRIu64 ") is outside this shard's range [%"
                   PRIu64 ", %" PRIu64 ")", offset, offset + count, s->offset,
                   s->offset + s->count);
        return -1;
    }
    s->pulls++;
    if (includes >= 0 && want > includes)
        want = includes;
    if (want > s->step + 1)
        want = s->step + 1;
    *wait_for = want;
    return want <= s->step;
}

int dtf_shard_worker_done(dtf_shard *s, int worker, int *newly)
{
    *newly = 0;
    if (check_worker(s, worker) < 0)
        return -1;
    if (!s->w[worker].done) {
        s->w[worker].done = 1;
        s->ndone++;
        *newly = 1;
    }
    return s->cfg.sync ? maybe_complete(s) : 0;
}

int dtf_shard_all_done(const dtf_shard *s)
{
    return s->ndone == s->cfg.workers;
}

int dtf_shard_drop_worker(dtf_shard *s, int worker)
{
    if (check_worker(s, worker) < 0)
        return -1;
    s->w[worker].dropped = 1;
    return s->cfg.sync ? maybe_complete(s) : 0;
}

int dtf_shard_waiting(const dtf_shard *s, int *out, int n)
{
    int k = 0;
    if (!s->cfg.sync)
        return 0;
    for (int i = 0; i < s->cfg.workers; i++) {
        const dtf_worker_state *w = &s->w[i];
        if (!w->contributed && !w->done && !w->dropped) {
            if (k < n)
                out[k] = i;
            k++;
        }
    }
    return k;
}

void dtf_shard_restore(dtf_shard *s, const float *params, const float *slot0,
                       const float *slot1, int64_t step)
{
    size_t bytes = (size_t)s->count * sizeof(float);
    if (params)
        memcpy(s->params, params, bytes);
    if (s->slot0) {
        if (slot0) memcpy(s->slot0, slot0, bytes);
        else memset(s->slot0, 0, bytes);
    }
    if (s->slot1) {
        if (slot1) memcpy(s->slot1, slot1, bytes);
        else memset(s->slot1, 0, bytes);
    }
    if (s->acc)
        memset(s->acc, 0, bytes);
    s->have = 0;
    s->pending_since = 0;
    for (int i = 0; i < s->cfg.workers; i++) {
        s->w[i].contributed = 0;
        s->w[i].push_seen = 0; /* the caller sets what the checkpoint kept */
    }
    s->step = step;
}

char *dtf_shard_format_pushes(const dtf_shard *s)
{
    size_t cap = (size_t)s->cfg.workers * 48 + 1, len = 0; /* 10 + 10 + 20 digits, ':', ' ', '-' */
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[0] = 0;
    for (int i = 0; i < s->cfg.workers; i++) {
        const dtf_worker_state *w = &s->w[i];
        if (w->push_seen)
            len += (size_t)snprintf(out + len, cap - len, "%s%d:%" PRIu32 ":%" PRId64,
                                    len ? " " : "", i, w->push_id, w->push_tag);
    }
    return out;
}

/* One "worker:id:tag" item at *p, ending at a space or the end of the
 * string; 0 and *p past it, or -1. strtoll with errno, since sscanf's
 * overflow is undefined; only the tag (a step) may be negative. */
static int parse_push_item(const char **p, long long v[3])
{
    static const long long max[3] = {INT32_MAX, UINT32_MAX, INT64_MAX};
    const char *q = *p;
    for (int i = 0; i < 3; i++) {
        char *e;
        if (!(*q >= '0' && *q <= '9') && !(i == 2 && *q == '-'))
            return -1;
        errno = 0;
        v[i] = strtoll(q, &e, 10);
        if (errno || v[i] > max[i])
            return -1;
        if (i < 2 && *e != ':')
            return -1; /* worker:id: */
        if (i == 2 && *e && *e != ' ')
            return -1; /* :tag, then a space or the end */
        q = i < 2 ? e + 1 : e;
    }
    *p = q;
    return 0;
}

int dtf_shard_parse_pushes(dtf_shard *s, const char *str)
{
    for (const char *p = str;;) {
        while (*p == ' ')
            p++;
        if (!*p)
            return 0;
        const char *item = p;
        long long v[3];
        if (parse_push_item(&p, v) < 0) {
            dtf_seterr("checkpoint metadata 'pushes' is malformed at '%.40s'", item);
            return -1;
        }
        if (v[0] < s->cfg.workers) {
            s->w[v[0]].push_seen = 1;
            s->w[v[0]].push_id = (uint32_t)v[1];
            s->w[v[0]].push_tag = (int64_t)v[2];
        }
    }
}

/* ---- stats ------------------------------------------------------------------- */

size_t dtf_shard_stats(const dtf_shard *s, char *buf, size_t n)
{
    dtf_strbuf b = {0};
    dtf_sb_printf(&b, "index=%d\nnps=%d\nmode=%s\nstep=%" PRId64 "\n", s->cfg.index,
              s->cfg.nps, s->cfg.sync ? "sync" : "async", s->step);
    dtf_sb_printf(&b, "P=%" PRIu64 "\noffset=%" PRIu64 "\ncount=%" PRIu64 "\n", s->cfg.P,
              s->offset, s->count);
    dtf_sb_printf(&b, "optimizer=%s\nworkers=%d\n", dtf_optim_kind_name(s->cfg.optim.kind),
              s->cfg.workers);
    if (s->cfg.sync)
        dtf_sb_printf(&b, "replicas_to_aggregate=%d\npending=%d\n", s->cfg.replicas, s->have);
    dtf_sb_printf(&b, "gradients=%" PRIu64 "\nupdates=%" PRIu64 "\nstale=%" PRIu64
              "\nduplicates=%" PRIu64 "\npulls=%" PRIu64 "\nworkers_done=%d\n",
              s->gradients, s->updates, s->stale, s->duplicates, s->pulls, s->ndone);
    int joined = 0;
    for (int i = 0; i < s->cfg.workers; i++)
        joined += s->w[i].joined;
    dtf_sb_printf(&b, "workers_joined=%d\n", joined);
    for (int i = 0; i < s->cfg.workers; i++) {
        const dtf_worker_state *w = &s->w[i];
        dtf_sb_printf(&b, "worker.%d.step=%" PRId64 "\nworker.%d.pushes=%" PRIu64
                  "\nworker.%d.stale=%" PRIu64 "\nworker.%d.duplicates=%" PRIu64
                  "\nworker.%d.done=%d\n",
                  i, w->last_step, i, w->pushes, i, w->stale, i, w->duplicates, i, w->done);
        if (s->cfg.sync)
            dtf_sb_printf(&b, "worker.%d.dropped=%d\n", i, w->dropped);
    }
    size_t len = dtf_sb_copyout(&b, buf, n);
    free(b.p);
    return len;
}
