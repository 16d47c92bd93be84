/* metrics: the registry, lock-free updates and the text format 0.0.4 (see
 * metrics.h; the endpoint is metrics_http.c). */
#include "metrics_impl.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- values as bits ------------------------------------------------------------ */

static uint64_t to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static double from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, to_bits(from_bits(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

static const char *num(double v, char *buf, size_t n);

/* ---- the registry ---------------------------------------------------------------- */

dtf_metrics *dtf_metrics_new(void)
{
    dtf_metrics *r = calloc(1, sizeof *r);
    if (!r) {
        dtf_seterr("out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void dtf_metrics_free(dtf_metrics *r)
{
    if (!r)
        return;
    dtf_metrics_stop(r);
    int n = atomic_load(&r->n);
    for (int i = 0; i < n; i++)
        free(r->m[i]);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static dtf_metrics *default_registry;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void make_default(void)
{
    default_registry = dtf_metrics_new();
}

dtf_metrics *dtf_metrics_default(void)
{
    pthread_once(&default_once, make_default);
    return default_registry;
}

static int valid_name(const char *s, int colons)
{
    if (!s || !*s || strlen(s) >= METRIC_NAME_MAX)
        return 0;
    for (const char *p = s; *p; p++) {
        int c = (unsigned char)*p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colons && c == ':') || (p > s && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static dtf_metric *find_locked(dtf_metrics *r, const char *name)
{
    int n = atomic_load_explicit(&r->n, memory_order_relaxed);
    for (int i = 0; i < n; i++)
        if (strcmp(r->m[i]->name, name) == 0)
            return r->m[i];
    return NULL;
}

dtf_metric *dtf_metrics_find(dtf_metrics *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    dtf_metric *m = find_locked(r, name);
    pthread_mutex_unlock(&r->lock);
    return m;
}

dtf_metric_kind dtf_metric_kind_of(const dtf_metric *m)
{
    return m->kind;
}

static int same_bounds(const dtf_metric *m, const double *bounds, int nb)
{
    if (m->nb != nb)
        return 0;
    for (int i = 0; i < nb; i++)
        if (m->bounds[i] != bounds[i])
            return 0;
    return 1;
}

/* Finds or adds name; the caller holds the lock. */
static dtf_metric *add_locked(dtf_metrics *r, dtf_metric_kind kind, const char *name,
                              const char *help, const double *bounds, int nb)
{
    if (!valid_name(name, 1)) {
        dtf_seterr("metric name '%.60s' is not [a-zA-Z_:][a-zA-Z0-9_:]* (under %d bytes)",
                   name ? name : "", METRIC_NAME_MAX);
        return NULL;
    }
    dtf_metric *m = find_locked(r, name);
    if (m) {
        if (m->kind != kind || (kind == DTF_HISTOGRAM && !same_bounds(m, bounds, nb))) {
            dtf_seterr("metric %s is registered already as another kind", name);
            return NULL;
        }
        return m;
    }
    int n = atomic_load_explicit(&r->n, memory_order_relaxed);
    if (n >= DTF_METRICS_MAX) {
        dtf_seterr("metric %s: the registry is full (%d metrics)", name, DTF_METRICS_MAX);
        return NULL;
    }
    m = calloc(1, sizeof *m);
    if (!m) {
        dtf_seterr("out of memory");
        return NULL;
    }
    m->kind = kind;
    snprintf(m->name, sizeof m->name, "%s", name);
    /* HELP is one line: a newline would end it early */
    snprintf(m->help, sizeof m->help, "%s", help ? help : "");
    for (char *p = m->help; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    m->nb = nb;
    for (int i = 0; i < nb; i++) {
        m->bounds[i] = bounds[i];
        char tmp[40];
        snprintf(m->le[i], sizeof m->le[i], "%s", num(bounds[i], tmp, sizeof tmp));
    }
    r->m[n] = m;
    /* publish: a scrape that sees n + 1 sees the whole entry */
    atomic_store_explicit(&r->n, n + 1, memory_order_release);
    return m;
}

static dtf_metric *add(dtf_metrics *r, dtf_metric_kind kind, const char *name, const char *help,
                       const double *bounds, int nb)
{
    pthread_mutex_lock(&r->lock);
    dtf_metric *m = add_locked(r, kind, name, help, bounds, nb);
    pthread_mutex_unlock(&r->lock);
    return m;
}

dtf_metric *dtf_metrics_counter(dtf_metrics *r, const char *name, const char *help)
{
    return add(r, DTF_COUNTER, name, help, NULL, 0);
}

dtf_metric *dtf_metrics_gauge(dtf_metrics *r, const char *name, const char *help)
{
    return add(r, DTF_GAUGE, name, help, NULL, 0);
}

dtf_metric *dtf_metrics_histogram(dtf_metrics *r, const char *name, const char *help,
                                  const double *bounds, int nbounds)
{
    if (nbounds < 1 || nbounds > DTF_METRICS_MAX_BUCKETS) {
        dtf_seterr("histogram %s: %d bounds (1 to %d)", name, nbounds, DTF_METRICS_MAX_BUCKETS);
        return NULL;
    }
    for (int i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
            dtf_seterr("histogram %s: bounds must be finite and increasing", name);
            return NULL;
        }
    return add(r, DTF_HISTOGRAM, name, help, bounds, nbounds);
}

/* Appends s to out (cap bytes) escaped for a label value: \\, \", \n. */
static size_t escape_value(char *out, size_t at, size_t cap, const char *s)
{
    for (; *s && at + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            out[at++] = '\\';
            out[at++] = *s;
        } else if (*s == '\n') {
            out[at++] = '\\';
            out[at++] = 'n';
        } else {
            out[at++] = *s;
        }
    }
    out[at] = 0;
    return at;
}

dtf_metric *dtf_metrics_info(dtf_metrics *r, const char *name, const char *help,
                             const char *const *labels)
{
    char set[METRIC_LABELS_MAX];
    size_t at = 0;
    set[0] = 0;
    for (int i = 0; labels && labels[i]; i += 2) {
        if (!valid_name(labels[i], 0) || !labels[i + 1]) {
            dtf_seterr("metric %s: label '%.40s' is not [a-zA-Z_][a-zA-Z0-9_]* with a value", name,
                       labels[i]);
            return NULL;
        }
        int n = snprintf(set + at, sizeof set - at, "%s%s=\"", at ? "," : "", labels[i]);
        if (n < 0 || (size_t)n >= sizeof set - at - 4) {
            dtf_seterr("metric %s: labels too long", name);
            return NULL;
        }
        at = escape_value(set, at + (size_t)n, sizeof set - 2, labels[i + 1]);
        set[at++] = '"';
        set[at] = 0;
    }
    pthread_mutex_lock(&r->lock);
    dtf_metric *m = add_locked(r, DTF_INFO, name, help, NULL, 0);
    if (m) {
        int next = !atomic_load(&m->labels_at);
        memcpy(m->labels[next], set, at + 1);
        atomic_store_explicit(&m->value, to_bits(1), memory_order_relaxed);
        atomic_store_explicit(&m->labels_at, next, memory_order_release);
    }
    pthread_mutex_unlock(&r->lock);
    return m;
}

/* ---- updates ---------------------------------------------------------------------- */

void dtf_counter_add(dtf_metric *m, double v)
{
    if (m && v > 0)
        atomic_add_double(&m->value, v);
}

void dtf_counter_set(dtf_metric *m, double total)
{
    if (!m)
        return;
    uint64_t old = atomic_load_explicit(&m->value, memory_order_relaxed);
    while (total > from_bits(old) &&
           !atomic_compare_exchange_weak_explicit(&m->value, &old, to_bits(total),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void dtf_gauge_set(dtf_metric *m, double v)
{
    if (m)
        atomic_store_explicit(&m->value, to_bits(v), memory_order_relaxed);
}

void dtf_histogram_observe(dtf_metric *m, double v)
{
    if (!m || m->kind != DTF_HISTOGRAM || isnan(v))
        return;
    int i = 0;
    while (i < m->nb && v > m->bounds[i])
        i++;
    atomic_fetch_add_explicit(&m->counts[i], 1, memory_order_relaxed);
    atomic_add_double(&m->sum, v);
}

double dtf_metric_value(const dtf_metric *m)
{
    if (m->kind != DTF_HISTOGRAM)
        return from_bits(atomic_load_explicit(&m->value, memory_order_relaxed));
    uint64_t c = 0;
    for (int i = 0; i <= m->nb; i++)
        c += atomic_load_explicit(&m->counts[i], memory_order_relaxed);
    return (double)c;
}

/* ---- the text format ------------------------------------------------------------------ */

typedef struct out {
    char *p;
    size_t len, cap;
    int oom;
} out;

static void DTF_PRINTF(2, 3) outf(out *o, const char *fmt, ...)
{
    if (o->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->oom = 1;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

/* A sample value as Prometheus writes it: the shortest decimal that reads
 * back to the same double, NaN, +Inf, -Inf. */
static const char *num(double v, char *buf, size_t n)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    if (fabs(v) < 1e15 && v == (double)(long long)v) { /* counts: the common case */
        snprintf(buf, n, "%lld", (long long)v);
        return buf;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

static const char *kind_name(dtf_metric_kind k)
{
    switch (k) {
    case DTF_COUNTER: return "counter";
    case DTF_HISTOGRAM: return "histogram";
    default: return "gauge";
    }
}

static void render_metric(out *o, dtf_metric *m)
{
    char a[40], b[40];
    outf(o, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, kind_name(m->kind));
    if (m->kind == DTF_INFO) {
        int at = atomic_load_explicit(&m->labels_at, memory_order_acquire);
        outf(o, "%s{%s} 1\n", m->name, m->labels[at]);
        return;
    }
    if (m->kind != DTF_HISTOGRAM) {
        outf(o, "%s %s\n", m->name, num(dtf_metric_value(m), a, sizeof a));
        return;
    }
    uint64_t cum = 0;
    for (int i = 0; i <= m->nb; i++) {
        cum += atomic_load_explicit(&m->counts[i], memory_order_relaxed);
        outf(o, "%s_bucket{le=\"%s\"} %llu\n", m->name, i < m->nb ? m->le[i] : "+Inf",
             (unsigned long long)cum);
    }
    double sum = from_bits(atomic_load_explicit(&m->sum, memory_order_relaxed));
    outf(o, "%s_sum %s\n%s_count %llu\n", m->name, num(sum, b, sizeof b), m->name,
         (unsigned long long)cum);
}

/* ---- process metrics (Prometheus's standard process_* names) --------------------------- */

static void process_line(out *o, const char *name, const char *type, const char *help, double v)
{
    char a[40];
    outf(o, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, type, name,
         num(v, a, sizeof a));
}

/* Start time in seconds since the epoch: /proc/self/stat's starttime (clock
 * ticks after boot) plus /proc/stat's btime. -1 when unknown. */
static double start_time(void)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long long ticks = 0;
    /* after ")": state is field 3; starttime is field 22 */
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        if (++field == 22) {
            ticks = strtoull(tok, NULL, 10);
            break;
        }
    if (field != 22)
        return -1;
    f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    double btime = -1;
    while (fgets(buf, sizeof buf, f))
        if (strncmp(buf, "btime ", 6) == 0)
            btime = strtod(buf + 6, NULL);
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    return btime < 0 || hz <= 0 ? -1 : btime + (double)ticks / (double)hz;
}

static void render_process(out *o)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        process_line(o, "process_cpu_seconds_total", "counter",
                     "Total user and system CPU time spent in seconds.",
                     (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6);
    unsigned long long vsz, rss;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long page = sysconf(_SC_PAGESIZE);
        if (fscanf(f, "%llu %llu", &vsz, &rss) == 2) {
            process_line(o, "process_resident_memory_bytes", "gauge",
                         "Resident memory size in bytes.", (double)rss * (double)page);
            process_line(o, "process_virtual_memory_bytes", "gauge",
                         "Virtual memory size in bytes.", (double)vsz * (double)page);
        }
        fclose(f);
    }
    /* constant for the process: read once (a race only reads it twice) */
    static _Atomic uint64_t start_bits;
    uint64_t sb = atomic_load_explicit(&start_bits, memory_order_relaxed);
    double st = sb ? from_bits(sb) : start_time();
    if (!sb && st >= 0)
        atomic_store_explicit(&start_bits, to_bits(st), memory_order_relaxed);
    if (st >= 0)
        process_line(o, "process_start_time_seconds", "gauge",
                     "Start time of the process since unix epoch in seconds.", st);
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int nfd = 0;
        for (struct dirent *e = readdir(d); e; e = readdir(d))
            nfd += e->d_name[0] != '.';
        closedir(d);
        process_line(o, "process_open_fds", "gauge", "Number of open file descriptors.",
                     nfd - 1); /* not the one opendir holds */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        process_line(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                     (double)rl.rlim_cur);
}

char *dtf_metrics_render(dtf_metrics *r, size_t *len)
{
    out o = {malloc(8192), 0, 8192, 0};
    if (!o.p) {
        dtf_seterr("out of memory");
        return NULL;
    }
    o.p[0] = 0;
    int n = atomic_load_explicit(&r->n, memory_order_acquire);
    for (int i = 0; i < n; i++)
        render_metric(&o, r->m[i]);
    render_process(&o);
    if (o.oom) {
        free(o.p);
        dtf_seterr("out of memory");
        return NULL;
    }
    *len = o.len;
    return o.p;
}
