/* ps_ckpt: a ps shard's checkpoints: saving, restoring (resharding), and
 * merging them for dtf export (see ps_ckpt.h). */
#include "ps_ckpt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"

struct dtf_ps_ckpt {
    char *dir, *layout_json, name[32];
    uint64_t layout;
    double secs;
    int64_t steps;
    dtf_log_fn log;
    void *log_ud;
    int64_t last_step;        /* of the newest checkpoint written or restored; -1 */
    double last_time;         /* dtf_now() of it (or of the start) */
    double last_seconds;      /* the last save's duration */
};

static void DTF_PRINTF(3, 4) klog(const dtf_ps_ckpt *k, int level, const char *fmt, ...)
{
    if (!k->log)
        return;
    char msg[2048];
    int n = snprintf(msg, sizeof msg, "%s: ", k->name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    k->log(k->log_ud, level, msg);
}

/* ==========================================================================
 * Reading what a directory holds
 * ========================================================================== */

/* One readable, well-formed shard checkpoint (its header). */
typedef struct entry {
    const char *path;         /* owned by the scan's file list */
    int64_t step;
    int shard, nps;
    uint64_t layout, P, offset, count;
    char optimizer[16];
    int async;                /* written by an async ps (metadata mode) */
} entry;

typedef struct scan {
    dtf_ckpt_file *files;
    size_t nfiles;
    entry *e;
    size_t n;
    int unreadable;           /* files that could not be read or are malformed */
    char first_error[600];
} scan;

static void scan_free(scan *sc)
{
    dtf_ckpt_list_free(sc->files, sc->nfiles);
    free(sc->e);
    memset(sc, 0, sizeof *sc);
}

static int meta_int(const dtf_ckpt *c, const char *path, const char *key, int64_t lo,
                    int64_t hi, int64_t *out)
{
    const char *v = dtf_ckpt_get_meta(c, key);
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        dtf_seterr("%s: metadata '%s' is missing or not an integer in [%" PRId64 ", %" PRId64 "]",
                   path, key, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int tensor_ok(const dtf_ckpt *c, const char *path, const char *name, uint64_t count,
                     int required)
{
    const dtf_ckpt_tensor *t = dtf_ckpt_find(c, name);
    if (!t && !required)
        return 0;
    if (!t || t->count != count) {
        dtf_seterr("%s: tensor %s does not hold the shard's %" PRIu64 " floats", path, name,
                   count);
        return -1;
    }
    return 0;
}

/* Fills e from a checkpoint's header; -1 with dtf_error() when it is not a
 * consistent dtf shard checkpoint. */
static int read_entry(const dtf_ckpt *c, const char *path, entry *e)
{
    const char *format = dtf_ckpt_get_meta(c, "format");
    if (!format || strcmp(format, DTF_PS_CKPT_FORMAT) != 0) {
        dtf_seterr("%s is not a dtf ps checkpoint (format '%s')", path, format ? format : "");
        return -1;
    }
    int64_t v[6];
    static const char *const keys[] = {"step", "shard", "nps", "offset", "count", "P"};
    for (int i = 0; i < 6; i++)
        if (meta_int(c, path, keys[i], i == 0 ? INT64_MIN : 0, INT64_MAX, &v[i]) < 0)
            return -1;
    const char *layout = dtf_ckpt_get_meta(c, "layout");
    if (!layout || strlen(layout) != 16 || strspn(layout, "0123456789abcdef") != 16) {
        dtf_seterr("%s: metadata 'layout' is not a 16-digit layout checksum", path);
        return -1;
    }
    e->layout = strtoull(layout, NULL, 16);
    uint64_t off, cnt;
    if (v[2] < 1 || v[2] > 65536 || v[1] >= v[2] ||
        (dtf_shard_range((uint64_t)v[5], (int)v[2], (int)v[1], &off, &cnt),
         off != (uint64_t)v[3] || cnt != (uint64_t)v[4])) {
        dtf_seterr("%s: shard %" PRId64 " of %" PRId64 " does not hold [%" PRId64 ", +%" PRId64
                   ") of %" PRId64 " parameters", path, v[1], v[2], v[3], v[4], v[5]);
        return -1;
    }
    e->path = path;
    e->step = v[0];
    e->shard = (int)v[1];
    e->nps = (int)v[2];
    e->offset = (uint64_t)v[3];
    e->count = (uint64_t)v[4];
    e->P = (uint64_t)v[5];
    const char *opt = dtf_ckpt_get_meta(c, "optimizer");
    snprintf(e->optimizer, sizeof e->optimizer, "%s", opt ? opt : "");
    const char *mode = dtf_ckpt_get_meta(c, "mode");
    e->async = mode && strcmp(mode, "async") == 0;
    if (tensor_ok(c, path, "params", e->count, 1) < 0 ||
        tensor_ok(c, path, "slot0", e->count, 0) < 0 || tensor_ok(c, path, "slot1", e->count, 0) < 0)
        return -1;
    return 0;
}

/* Every checkpoint file in dir, headers only. An unreadable one is counted
 * (and logged through k when k is not NULL), never fatal here. */
static int scan_dir(const char *dir, const dtf_ps_ckpt *k, scan *sc)
{
    memset(sc, 0, sizeof *sc);
    if (dtf_ckpt_list(dir, -1, &sc->files, &sc->nfiles) < 0)
        return -1;
    sc->e = calloc(sc->nfiles ? sc->nfiles : 1, sizeof *sc->e);
    if (!sc->e) {
        scan_free(sc);
        dtf_seterr("out of memory");
        return -1;
    }
    for (size_t i = 0; i < sc->nfiles; i++) {
        dtf_ckpt *c = dtf_ckpt_load_header(sc->files[i].path);
        if (c && read_entry(c, sc->files[i].path, &sc->e[sc->n]) == 0) {
            sc->n++;
        } else {
            if (!sc->unreadable++)
                snprintf(sc->first_error, sizeof sc->first_error, "%s", dtf_error());
            if (k)
                klog(k, DTF_LOG_WARNING, "skipping a checkpoint that cannot be read: %s",
                     dtf_error());
        }
        dtf_ckpt_free(c);
    }
    return 0;
}

/* ==========================================================================
 * Choosing what to restore
 * ========================================================================== */

/* The entries of one model and sharding: by[j] lists shard j's, oldest
 * first (the scan is sorted by step). */
typedef struct gen {
    int nps;
    int64_t top;              /* the highest step any of its files reached */
    entry ***by;              /* nps lists */
    size_t *nby;
} gen;

static void gen_free(gen *g)
{
    if (g->by)
        for (int j = 0; j < g->nps; j++)
            free(g->by[j]);
    free(g->by);
    free(g->nby);
    memset(g, 0, sizeof *g);
}

static int gen_build(const scan *sc, uint64_t layout, int nps, gen *g)
{
    memset(g, 0, sizeof *g);
    g->nps = nps;
    g->top = INT64_MIN;
    g->by = calloc((size_t)nps, sizeof *g->by);
    g->nby = calloc((size_t)nps, sizeof *g->nby);
    if (!g->by || !g->nby)
        goto oom;
    for (size_t i = 0; i < sc->n; i++) {
        entry *e = &sc->e[i];
        if (e->layout != layout || e->nps != nps)
            continue;
        entry **l = realloc(g->by[e->shard], (g->nby[e->shard] + 1) * sizeof *l);
        if (!l)
            goto oom;
        l[g->nby[e->shard]++] = e;
        g->by[e->shard] = l;
        if (e->step > g->top)
            g->top = e->step;
    }
    return 0;
oom:
    gen_free(g);
    dtf_seterr("out of memory");
    return -1;
}

static int gen_complete(const gen *g)
{
    for (int j = 0; j < g->nps; j++)
        if (g->nby[j] == 0)
            return 0;
    return 1;
}

/* The sharding of `layout` to restore from: the one whose files reached the
 * highest step among those a shard `index` of `nps` can restore from (its
 * own sharding when its own shard has a file, another when every shard of
 * it has one); ties go to its own. 0 and *g, 1 when there is none, -1. */
static int choose_gen(const scan *sc, uint64_t layout, int nps, int index, gen *best)
{
    int found = 0;
    memset(best, 0, sizeof *best);
    for (size_t i = 0; i < sc->n; i++) {
        const entry *e = &sc->e[i];
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            seen |= sc->e[j].layout == e->layout && sc->e[j].nps == e->nps;
        if (e->layout != layout || seen)
            continue;
        gen g;
        if (gen_build(sc, layout, e->nps, &g) < 0) {
            gen_free(best);
            return -1;
        }
        int usable = g.nps == nps ? g.nby[index] > 0 : gen_complete(&g);
        if (usable && (!found || g.top > best->top || (g.top == best->top && g.nps == nps))) {
            gen_free(best);
            *best = g;
            found = 1;
        } else {
            gen_free(&g);
        }
    }
    return found ? 0 : 1;
}

/* The files of a complete sharding to take together. Sync shards step
 * together, so a set at one step is the consistent state: the newest step
 * every shard has a checkpoint of (a shard that completed one more step
 * than another when the ps tasks stopped is taken a step back). Async
 * shards never agree exactly, and their newest files are the state the
 * ps tasks had: each shard's newest. set gets g->nps entries; returns 1
 * when their steps agree. */
static int choose_set(const gen *g, const entry **set)
{
    const entry *const *s0 = (const entry *const *)g->by[0];
    int async = 1;
    for (int j = 0; j < g->nps; j++)
        async &= g->by[j][g->nby[j] - 1]->async;
    for (size_t i = async ? 0 : g->nby[0]; i-- > 0;) {
        int all = 1;
        set[0] = s0[i];
        for (int j = 1; j < g->nps && all; j++) {
            all = 0;
            for (size_t m = 0; m < g->nby[j]; m++)
                if (g->by[j][m]->step == s0[i]->step) {
                    set[j] = g->by[j][m];
                    all = 1;
                }
        }
        if (all)
            return 1;
    }
    int agree = 1;
    for (int j = 0; j < g->nps; j++) {
        set[j] = g->by[j][g->nby[j] - 1];
        agree &= set[j]->step == set[0]->step;
    }
    return agree;
}

static void describe_set(const entry **set, int nps, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (int j = 0; j < nps && len < n; j++)
        len += (size_t)snprintf(buf + len, n - len, "%sps%d@%" PRId64, j ? " " : "", j,
                                set[j]->step);
}

/* ==========================================================================
 * Restoring
 * ========================================================================== */

/* Copies what file c (entry e) holds of [off, off + count) of the flat
 * buffer into dst (count floats, indexed from off), for one tensor. */
static void copy_overlap(const dtf_ckpt *c, const entry *e, const char *name, float *dst,
                         uint64_t off, uint64_t count)
{
    const dtf_ckpt_tensor *t = dtf_ckpt_find(c, name);
    uint64_t lo = e->offset > off ? e->offset : off;
    uint64_t hi = e->offset + e->count < off + count ? e->offset + e->count : off + count;
    if (!t || !dst || lo >= hi)
        return;
    memcpy(dst + (lo - off), t->data + (lo - e->offset), (size_t)(hi - lo) * sizeof(float));
}

/* The state a restore assembles: the shard's range of params and slots. */
typedef struct state {
    float *params, *slot0, *slot1;
} state;

static void state_free(state *st)
{
    free(st->params);
    free(st->slot0);
    free(st->slot1);
}

static int state_alloc(state *st, const dtf_shard *s)
{
    size_t n = s->count ? (size_t)s->count : 1;
    memset(st, 0, sizeof *st);
    st->params = calloc(n, sizeof(float));
    st->slot0 = s->slot0 ? calloc(n, sizeof(float)) : NULL;
    st->slot1 = s->slot1 ? calloc(n, sizeof(float)) : NULL;
    if (!st->params || (s->slot0 && !st->slot0) || (s->slot1 && !st->slot1)) {
        state_free(st);
        dtf_seterr("out of memory");
        return -1;
    }
    return 0;
}

/* Loads e's file and copies its part of s's range into st; slots only when
 * its optimizer is s's (its slots mean the same). */
static int take_file(const entry *e, const dtf_shard *s, state *st, int *slots_kept)
{
    dtf_ckpt *c = dtf_ckpt_load(e->path);
    if (!c)
        return -1;
    copy_overlap(c, e, "params", st->params, s->offset, s->count);
    *slots_kept = strcmp(e->optimizer, dtf_optim_kind_name(s->cfg.optim.kind)) == 0;
    if (*slots_kept) {
        copy_overlap(c, e, "slot0", st->slot0, s->offset, s->count);
        copy_overlap(c, e, "slot1", st->slot1, s->offset, s->count);
    }
    dtf_ckpt_free(c);
    return 0;
}

/* The shard's own sharding: its newest file that loads (and the workers'
 * latest pushes from it). 0, or -1 when none of them loads. */
static int restore_direct(dtf_ps_ckpt *k, dtf_shard *s, const gen *g)
{
    entry **l = g->by[s->cfg.index];
    for (size_t i = g->nby[s->cfg.index]; i-- > 0;) {
        state st;
        int slots;
        if (state_alloc(&st, s) < 0)
            return -1;
        if (take_file(l[i], s, &st, &slots) < 0) {
            klog(k, DTF_LOG_WARNING, "skipping a checkpoint that cannot be read: %s", dtf_error());
            state_free(&st);
            continue;
        }
        dtf_shard_restore(s, st.params, st.slot0, st.slot1, l[i]->step);
        state_free(&st);
        dtf_ckpt *c = dtf_ckpt_load_header(l[i]->path);
        const char *pushes = c ? dtf_ckpt_get_meta(c, "pushes") : NULL;
        int rc = pushes ? dtf_shard_parse_pushes(s, pushes) : 0;
        dtf_ckpt_free(c);
        if (rc < 0)
            return -1;
        klog(k, DTF_LOG_INFO, "restored step %" PRId64 " from %s", l[i]->step, l[i]->path);
        if (!slots)
            klog(k, DTF_LOG_INFO, "the checkpoint's optimizer was %s, this ps runs %s: its "
                 "slots start from zero", l[i]->optimizer[0] ? l[i]->optimizer : "unknown",
                 dtf_optim_kind_name(s->cfg.optim.kind));
        k->last_step = l[i]->step;
        return 0;
    }
    dtf_seterr("none of the %zu checkpoints of %s in %s can be read", g->nby[s->cfg.index],
               k->name, k->dir);
    return -1;
}

/* Another sharding: the range cut from a set of its shards' files. */
static int restore_resharded(dtf_ps_ckpt *k, dtf_shard *s, const gen *g)
{
    const entry **set = calloc((size_t)g->nps, sizeof *set);
    state st;
    if (!set || state_alloc(&st, s) < 0) {
        free(set);
        dtf_seterr("out of memory");
        return -1;
    }
    int agree = choose_set(g, set), slots = 1;
    for (int j = 0; j < g->nps; j++) {
        const entry *e = set[j];
        int kept;
        if (e->offset >= s->offset + s->count || e->offset + e->count <= s->offset)
            continue; /* nothing of this shard's range */
        if (take_file(e, s, &st, &kept) < 0) {
            state_free(&st);
            free(set);
            return -1;
        }
        slots &= kept;
    }
    if (!slots) { /* all or nothing: no mix of kept and zeroed moments */
        if (st.slot0) memset(st.slot0, 0, (size_t)s->count * sizeof(float));
        if (st.slot1) memset(st.slot1, 0, (size_t)s->count * sizeof(float));
    }
    int64_t step = set[0]->step;
    dtf_shard_restore(s, st.params, st.slot0, st.slot1, step);
    state_free(&st);
    char desc[512];
    describe_set(set, g->nps, desc, sizeof desc);
    klog(k, DTF_LOG_INFO, "restored step %" PRId64 " from %d ps checkpoints in %s (%s%s), "
         "resharded from %d to %d ps tasks: this ps holds [%" PRIu64 ", %" PRIu64 ")", step,
         g->nps, k->dir, desc, agree ? "" : ", each shard's newest", g->nps, s->cfg.nps,
         s->offset, s->offset + s->count);
    if (!slots)
        klog(k, DTF_LOG_INFO, "the checkpoints' optimizer is not %s: its slots start from zero",
             dtf_optim_kind_name(s->cfg.optim.kind));
    k->last_step = step;
    free(set);
    return 0;
}

/* Says why nothing was restored when the directory holds other models. */
static void say_fresh(const dtf_ps_ckpt *k, const scan *sc)
{
    size_t others = 0;
    uint64_t other = 0;
    for (size_t i = 0; i < sc->n; i++)
        if (sc->e[i].layout != k->layout) {
            others++;
            other = sc->e[i].layout;
        }
    if (others)
        klog(k, DTF_LOG_INFO, "the %zu checkpoint%s in %s belong%s to another model (layout "
             "%016" PRIx64 "; this model is %016" PRIx64 "): starting from the initial "
             "parameters", others, others > 1 ? "s" : "", k->dir, others > 1 ? "" : "s", other,
             k->layout);
    else
        klog(k, DTF_LOG_INFO, "no checkpoint in %s yet; starting from the initial parameters",
             k->dir);
}

static int restore(dtf_ps_ckpt *k, dtf_shard *s)
{
    scan sc;
    gen g;
    if (scan_dir(k->dir, k, &sc) < 0)
        return -1;
    int r = choose_gen(&sc, k->layout, s->cfg.nps, s->cfg.index, &g);
    if (r < 0) {
        scan_free(&sc);
        return -1;
    }
    if (r > 0) {
        const entry *mine = NULL, *other = NULL;
        for (size_t i = 0; i < sc.n; i++)
            if (sc.e[i].layout == k->layout)
                *(sc.e[i].nps == s->cfg.nps ? &mine : &other) = &sc.e[i];
        if (other && !mine) { /* this model's, but no sharding of them is whole */
            dtf_seterr("the newest checkpoints of this model (%s, %d ps tasks) lack a shard, so "
                       "they cannot be resharded to %d ps tasks; restore the missing files, run "
                       "with %d ps tasks, or give a new checkpoint_dir", other->path, other->nps,
                       s->cfg.nps, other->nps);
            scan_free(&sc);
            return -1;
        }
        if (mine) { /* the other shards have checkpointed, this one not yet */
            klog(k, DTF_LOG_INFO, "no checkpoint of this shard in %s yet; starting from the "
                 "initial parameters", k->dir);
            scan_free(&sc);
            return 0;
        }
        if (sc.unreadable) {
            dtf_seterr("none of the %d checkpoint%s in %s can be read (%s)", sc.unreadable,
                       sc.unreadable > 1 ? "s" : "", k->dir, sc.first_error);
            scan_free(&sc);
            return -1;
        }
        say_fresh(k, &sc);
        scan_free(&sc);
        return 0;
    }
    const entry *any = g.by[0] ? g.by[0][0] : g.by[s->cfg.index][0];
    if (any->P != s->cfg.P) { /* one layout checksum, one P: a forged or corrupt file */
        dtf_seterr("%s holds %" PRIu64 " parameters, this model %" PRIu64, any->path, any->P,
                   s->cfg.P);
        gen_free(&g);
        scan_free(&sc);
        return -1;
    }
    r = g.nps == s->cfg.nps ? restore_direct(k, s, &g) : restore_resharded(k, s, &g);
    gen_free(&g);
    scan_free(&sc);
    return r;
}

/* ==========================================================================
 * Saving
 * ========================================================================== */

/* Keeps the newest DTF_PS_CKPT_KEEP files of this shard, sharding and
 * model; leaves every other file alone. */
static void prune(const dtf_ps_ckpt *k, const dtf_shard *s)
{
    dtf_ckpt_file *f;
    size_t n, kept = 0;
    if (dtf_ckpt_list(k->dir, s->cfg.index, &f, &n) < 0)
        return;
    for (size_t i = n; i-- > 0;) {
        if (f[i].nps != (unsigned)s->cfg.nps)
            continue;
        dtf_ckpt *c = dtf_ckpt_load_header(f[i].path);
        entry e;
        int mine = c && read_entry(c, f[i].path, &e) == 0 && e.layout == k->layout;
        dtf_ckpt_free(c);
        if (mine && ++kept > DTF_PS_CKPT_KEEP && unlink(f[i].path) < 0 && errno != ENOENT)
            klog(k, DTF_LOG_WARNING, "cannot remove the old checkpoint %s: %s", f[i].path,
                 strerror(errno));
    }
    dtf_ckpt_list_free(f, n);
}

int dtf_ps_ckpt_save(dtf_ps_ckpt *k, const dtf_shard *s)
{
    double t0 = dtf_now();
    char path[4352], name[96], v[6][32], layout[17];
    dtf_ckpt_name(name, sizeof name, (uint64_t)(s->step > 0 ? s->step : 0),
                  (unsigned)s->cfg.index, (unsigned)s->cfg.nps);
    snprintf(path, sizeof path, "%s/%s", k->dir, name);
    snprintf(layout, sizeof layout, "%016" PRIx64, k->layout);
    snprintf(v[0], sizeof v[0], "%" PRId64, s->step);
    snprintf(v[1], sizeof v[1], "%d", s->cfg.index);
    snprintf(v[2], sizeof v[2], "%d", s->cfg.nps);
    snprintf(v[3], sizeof v[3], "%" PRIu64, s->offset);
    snprintf(v[4], sizeof v[4], "%" PRIu64, s->count);
    snprintf(v[5], sizeof v[5], "%" PRIu64, s->cfg.P);
    const char *mode = s->cfg.sync ? "sync" : "async";
    char *pushes = dtf_shard_format_pushes(s);
    if (!pushes) {
        klog(k, DTF_LOG_WARNING, "checkpoint at step %" PRId64 " failed: out of memory", s->step);
        return -1;
    }
    dtf_kv meta[12] = {
        {"format", DTF_PS_CKPT_FORMAT}, {"layout", layout}, {"step", v[0]}, {"shard", v[1]},
        {"nps", v[2]}, {"offset", v[3]}, {"count", v[4]}, {"P", v[5]},
        {"optimizer", dtf_optim_kind_name(s->cfg.optim.kind)}, {"pushes", pushes},
        {"mode", mode},
    };
    size_t nmeta = 11;
    if (k->layout_json)
        meta[nmeta++] = (dtf_kv){"layout_json", k->layout_json};
    int64_t shape[1] = {(int64_t)s->count};
    dtf_ckpt_in t[3] = {{"params", 1, shape, s->params, (size_t)s->count}};
    size_t nt = 1;
    if (s->slot0)
        t[nt++] = (dtf_ckpt_in){"slot0", 1, shape, s->slot0, (size_t)s->count};
    if (s->slot1)
        t[nt++] = (dtf_ckpt_in){"slot1", 1, shape, s->slot1, (size_t)s->count};
    int rc = dtf_ckpt_save(path, t, nt, meta, nmeta);
    free(pushes);
    k->last_time = dtf_now();
    if (rc < 0) {
        klog(k, DTF_LOG_WARNING, "checkpoint at step %" PRId64 " failed: %s", s->step, dtf_error());
        return -1;
    }
    k->last_step = s->step;
    k->last_seconds = k->last_time - t0;
    klog(k, DTF_LOG_INFO, "checkpoint at step %" PRId64 ": %s", s->step, path);
    prune(k, s);
    return 0;
}

/* ==========================================================================
 * The checkpointer's life
 * ========================================================================== */

static void ps_ckpt_free(dtf_ps_ckpt *k)
{
    if (!k)
        return;
    free(k->dir);
    free(k->layout_json);
    free(k);
}

dtf_ps_ckpt *dtf_ps_ckpt_open(const dtf_ps_ckpt_config *cfg, dtf_shard *s)
{
    dtf_ps_ckpt *k = calloc(1, sizeof *k);
    if (!k || !(k->dir = strdup(cfg->dir)) ||
        (cfg->layout_json && !(k->layout_json = strdup(cfg->layout_json)))) {
        ps_ckpt_free(k);
        dtf_seterr("out of memory");
        return NULL;
    }
    k->layout = cfg->layout;
    k->secs = cfg->secs;
    k->steps = cfg->steps;
    k->log = cfg->log;
    k->log_ud = cfg->log_ud;
    k->last_step = -1;
    if (cfg->name)
        snprintf(k->name, sizeof k->name, "%s", cfg->name);
    else
        snprintf(k->name, sizeof k->name, "ps %d", s->cfg.index);
    if (dtf_mkdirs(k->dir) < 0) {
        dtf_seterr("checkpoint_dir: %s", dtf_error());
        ps_ckpt_free(k);
        return NULL;
    }
    char names[600];
    int stale = dtf_ckpt_remove_temps(k->dir, (unsigned)s->cfg.index, (unsigned)s->cfg.nps,
                                      names, sizeof names);
    if (stale > 0)
        klog(k, DTF_LOG_INFO, "removed %d unfinished checkpoint file%s that a killed ps left in "
             "%s: %s", stale, stale > 1 ? "s" : "", k->dir, names);
    if (restore(k, s) < 0) {
        dtf_seterr("cannot restore from %s: %s", k->dir, dtf_error());
        ps_ckpt_free(k);
        return NULL;
    }
    k->last_time = dtf_now();
    return k;
}

void dtf_ps_ckpt_on_step(dtf_ps_ckpt *k, const dtf_shard *s)
{
    int64_t since = s->step - (k->last_step > 0 ? k->last_step : 0);
    if ((k->steps > 0 && since >= k->steps) || (k->secs > 0 && dtf_now() - k->last_time >= k->secs))
        dtf_ps_ckpt_save(k, s);
}

void dtf_ps_ckpt_close(dtf_ps_ckpt *k, const dtf_shard *s)
{
    if (!k)
        return;
    if (s->step != k->last_step && s->step > 0)
        dtf_ps_ckpt_save(k, s); /* the last state, whether done or stopped by a signal */
    ps_ckpt_free(k);
}

int64_t dtf_ps_ckpt_last_step(const dtf_ps_ckpt *k)
{
    return k->last_step;
}

double dtf_ps_ckpt_last_seconds(const dtf_ps_ckpt *k)
{
    return k->last_seconds;
}

/* ==========================================================================
 * Merging for dtf export
 * ========================================================================== */

/* The layout whose complete shardings reached the highest step. */
static int newest_layout(const scan *sc, uint64_t *layout)
{
    int found = 0;
    int64_t top = INT64_MIN;
    for (size_t i = 0; i < sc->n; i++) {
        gen g;
        if (gen_build(sc, sc->e[i].layout, sc->e[i].nps, &g) < 0)
            return -1;
        if (gen_complete(&g) && g.top > top) {
            top = g.top;
            *layout = sc->e[i].layout;
            found = 1;
        }
        gen_free(&g);
    }
    return found ? 0 : 1;
}

static int merge_set(const gen *g, dtf_ps_merged *out)
{
    const entry **set = calloc((size_t)g->nps, sizeof *set);
    if (!set) {
        dtf_seterr("out of memory");
        return -1;
    }
    choose_set(g, set);
    describe_set(set, g->nps, out->shards, sizeof out->shards);
    out->step = set[0]->step;
    int rc = 0;
    for (int j = 0; j < g->nps && rc == 0; j++) {
        dtf_ckpt *c = dtf_ckpt_load(set[j]->path);
        if (!c) {
            rc = -1;
            break;
        }
        copy_overlap(c, set[j], "params", out->params, 0, out->P);
        const char *lj = dtf_ckpt_get_meta(c, "layout_json");
        if (j == 0 && lj && !(out->layout_json = strdup(lj))) {
            dtf_seterr("out of memory");
            rc = -1;
        }
        dtf_ckpt_free(c);
    }
    free(set);
    return rc;
}

int dtf_ps_ckpt_merge(const char *dir, uint64_t layout, dtf_ps_merged *out)
{
    scan sc;
    memset(out, 0, sizeof *out);
    if (scan_dir(dir, NULL, &sc) < 0)
        return -1;
    int r = layout ? 0 : newest_layout(&sc, &layout);
    gen best = {0}, g;
    for (size_t i = 0; r == 0 && i < sc.n; i++) {
        if (sc.e[i].layout != layout)
            continue;
        if ((r = gen_build(&sc, layout, sc.e[i].nps, &g)) < 0)
            break;
        if (gen_complete(&g) && (!best.by || g.top > best.top)) {
            gen_free(&best);
            best = g;
        } else {
            gen_free(&g);
        }
    }
    if (r >= 0 && !best.by) { /* no model with a complete set (r > 0), or not this one */
        if (sc.unreadable)
            dtf_seterr("%s: no complete set of ps checkpoints (%d file%s cannot be read: %s)",
                       dir, sc.unreadable, sc.unreadable > 1 ? "s" : "", sc.first_error);
        else
            dtf_seterr("%s: no complete set of ps checkpoints (ckpt-*-psI-of-N.safetensors for "
                       "every I of N)", dir);
        r = -1;
    }
    if (r == 0) {
        const entry *e0 = best.by[0][0];
        out->P = e0->P;
        out->layout = layout;
        out->nps = best.nps;
        out->params = calloc(out->P ? (size_t)out->P : 1, sizeof(float));
        if (!out->params) {
            dtf_seterr("out of memory for %" PRIu64 " parameters", out->P);
            r = -1;
        } else {
            r = merge_set(&best, out);
        }
    }
    gen_free(&best);
    scan_free(&sc);
    if (r < 0)
        dtf_ps_merged_free(out);
    return r < 0 ? -1 : 0;
}

void dtf_ps_merged_free(dtf_ps_merged *m)
{
    free(m->params);
    free(m->layout_json);
    m->params = NULL;
    m->layout_json = NULL;
}
