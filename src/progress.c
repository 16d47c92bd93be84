/* progress: the status line (see progress.h). */
#include "progress.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util.h"

/* ---- rates and text ------------------------------------------------------------------ */

void dtf_progress_init(dtf_progress *p, int64_t total, double now)
{
    memset(p, 0, sizeof *p);
    p->total = total;
    p->t0 = now;
}

void dtf_progress_update(dtf_progress *p, double now, int64_t step, double examples, double loss)
{
    p->step = step;
    p->examples = examples;
    if (loss >= 0) {
        p->loss = loss;
        p->have_loss = 1;
    }
    int last = (p->head + DTF_PROGRESS_SAMPLES - 1) % DTF_PROGRESS_SAMPLES;
    if (p->count > 0 && now - p->st[last] < DTF_PROGRESS_REDRAW)
        return;
    p->st[p->head] = now;
    p->ss[p->head] = (double)step;
    p->se[p->head] = examples;
    p->head = (p->head + 1) % DTF_PROGRESS_SAMPLES;
    if (p->count < DTF_PROGRESS_SAMPLES)
        p->count++;
}

void dtf_progress_rates(const dtf_progress *p, double *steps_s, double *ex_s)
{
    *steps_s = *ex_s = 0;
    if (p->count < 2)
        return;
    int oldest = (p->head + DTF_PROGRESS_SAMPLES - p->count) % DTF_PROGRESS_SAMPLES;
    int last = (p->head + DTF_PROGRESS_SAMPLES - 1) % DTF_PROGRESS_SAMPLES;
    double dt = p->st[last] - p->st[oldest];
    if (dt <= 0)
        return;
    *steps_s = (p->ss[last] - p->ss[oldest]) / dt;
    *ex_s = (p->se[last] - p->se[oldest]) / dt;
    if (*steps_s < 0)
        *steps_s = 0; /* a ps restored an older checkpoint */
    if (*ex_s < 0)
        *ex_s = 0;
}

static void clock_text(double s, char *buf, size_t n)
{
    if (!(s >= 0) || s > 360000 * 99)
        s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* A rate with as many decimals as make sense for its size. */
static void rate_text(double r, char *buf, size_t n)
{
    snprintf(buf, n, "%.*f", r >= 100 ? 0 : r >= 10 ? 1 : 2, r);
}

size_t dtf_progress_format(const dtf_progress *p, double now, char *buf, size_t n)
{
    char el[32], eta[32], rs[32], es[32];
    double sps, eps;
    dtf_progress_rates(p, &sps, &eps);
    rate_text(sps, rs, sizeof rs);
    snprintf(es, sizeof es, "%.0f", eps);
    clock_text(now - p->t0, el, sizeof el);
    size_t len = 0;
#define ADD(...)                                                                    \
    do {                                                                            \
        int k_ = snprintf(buf + (len < n ? len : n), len < n ? n - len : 0, __VA_ARGS__); \
        if (k_ > 0)                                                                 \
            len += (size_t)k_;                                                      \
    } while (0)
    if (p->total > 0) {
        int64_t pct = p->step >= p->total ? 100 : p->step * 100 / p->total;
        ADD("step %lld/%lld (%lld%%)", (long long)p->step, (long long)p->total, (long long)pct);
    } else {
        ADD("step %lld", (long long)p->step);
    }
    ADD("  %s steps/s  %s ex/s", rs, es);
    if (p->have_loss)
        ADD("  loss %.4f", p->loss);
    ADD("  %s elapsed", el);
    if (p->total > 0 && p->step < p->total && sps > 0) {
        clock_text((double)(p->total - p->step) / sps, eta, sizeof eta);
        ADD("  ETA %s", eta);
    }
#undef ADD
    return len;
}

int dtf_progress_due(dtf_progress *p, double now)
{
    if (p->last_draw > 0 && now - p->last_draw < DTF_PROGRESS_REDRAW)
        return 0;
    p->last_draw = now;
    return 1;
}

/* ---- the terminal line ----------------------------------------------------------------- */

static int status_on;
static char status_text[512];

static void write_out(const char *p, size_t n)
{
    fflush(stdout); /* stdio's own buffered output first */
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* the terminal is gone: nothing to show it on */
        p += w;
        n -= (size_t)w;
    }
}

/* The status text cut to the terminal's width less one column, so that it
 * never wraps (a wrapped line cannot be redrawn with a carriage return). */
static size_t cut(const char *text)
{
    struct winsize ws;
    size_t len = strlen(text), w = 80;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
        w = ws.ws_col;
    return len < w - 1 ? len : w - 1;
}

void dtf_status_show(const char *text)
{
    snprintf(status_text, sizeof status_text, "%s", text);
    status_on = 1;
    char buf[600];
    int n = snprintf(buf, sizeof buf, "\r%.*s\033[K", (int)cut(status_text), status_text);
    if (n > 0)
        write_out(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

void dtf_status_end(int keep)
{
    if (!status_on)
        return;
    status_on = 0;
    if (keep) {
        char buf[600];
        int n = snprintf(buf, sizeof buf, "\r%.*s\033[K\n", (int)cut(status_text), status_text);
        if (n > 0)
            write_out(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    } else {
        write_out("\r\033[K", 4);
    }
}

int dtf_status_active(void)
{
    return status_on;
}

void dtf_status_write(const char *text, size_t n)
{
    if (!status_on) {
        write_out(text, n);
        return;
    }
    size_t sl = cut(status_text);
    char *buf = malloc(n + sl + 16);
    if (!buf) {
        write_out(text, n);
        return;
    }
    /* erase the status, the text, the status again below it */
    memcpy(buf, "\r\033[K", 4);
    memcpy(buf + 4, text, n);
    buf[4 + n] = '\r';
    memcpy(buf + 5 + n, status_text, sl);
    memcpy(buf + 5 + n + sl, "\033[K", 3);
    write_out(buf, n + sl + 8);
    free(buf);
}

/* ---- `dtf local` ------------------------------------------------------------------------ */

#define FOLD_WORKERS 256

typedef struct worker_fold {
    int64_t steps, base; /* steps of this run, and of its earlier runs (restarts) */
    int64_t batch;
} worker_fold;

static struct {
    int on, started;
    dtf_progress p;
    worker_fold w[FOLD_WORKERS];
    int64_t gstep;
} fold;

/* What a --set value says of progress: 1 on, 0 off, -1 nothing. It may
 * hold several pairs, as helm's form does (a=1,progress=false). */
static int progress_in(const char *set)
{
    int said = -1;
    for (const char *p = set; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 9 && strncmp(p, "progress=", 9) == 0) {
            size_t v = n - 9;
            const char *val = p + 9;
            int off = (v == 5 && strncmp(val, "false", 5) == 0) || (v == 1 && *val == '0') ||
                      (v == 2 && strncmp(val, "no", 2) == 0);
            said = !off;
        }
        p = end ? end + 1 : NULL;
    }
    return said;
}

void dtf_fold_start(int nset, const char *const *set)
{
    memset(&fold, 0, sizeof fold);
    if (!isatty(STDOUT_FILENO))
        return;
    int on = 1;
    for (int i = 0; i < nset; i++) { /* the last progress=... wins */
        int said = progress_in(set[i]);
        if (said >= 0)
            on = said;
    }
    fold.on = on;
    dtf_progress_init(&fold.p, 0, dtf_now());
}

static double examples(void)
{
    double e = 0;
    for (int i = 0; i < FOLD_WORKERS; i++)
        e += (double)(fold.w[i].base + fold.w[i].steps) * (double)fold.w[i].batch;
    return e;
}

int dtf_fold_line(const char *task, const char *line, size_t n)
{
    (void)task;
    if (!fold.on)
        return 0;
    char s[512];
    size_t k = n < sizeof s - 1 ? n : sizeof s - 1;
    memcpy(s, line, k);
    s[k] = 0;
    const char *m = strstr(s, " - Worker ");
    if (!m)
        return 0;
    m += 3;
    int w, step, g, batch;
    double loss;
    char total[32];
    if (sscanf(m, "Worker %d: training step %d done (global step: %d)", &w, &step, &g) == 3 &&
        w >= 0 && w < FOLD_WORKERS) {
        worker_fold *f = &fold.w[w];
        if (step < f->steps) /* the worker restarted */
            f->base += f->steps;
        f->steps = step;
        if (g > fold.gstep)
            fold.gstep = g;
        fold.started = 1;
        dtf_progress_update(&fold.p, dtf_now(), fold.gstep, examples(), -1);
        dtf_fold_tick();
        return 1;
    }
    if (sscanf(m, "Worker %d: %*d parameters, %*d training examples in its shard, %31s steps, "
                  "batch %d", &w, total, &batch) == 3 && w >= 0 && w < FOLD_WORKERS) {
        fold.w[w].batch = batch;
        long long t = strtoll(total, NULL, 10);
        if (t > fold.p.total)
            fold.p.total = t;
    } else if (sscanf(m, "Worker %d: mean loss %lf", &w, &loss) == 2) {
        fold.p.loss = loss;
        fold.p.have_loss = 1;
    }
    return 0;
}

void dtf_fold_tick(void)
{
    if (!fold.on || !fold.started)
        return;
    double now = dtf_now();
    if (!dtf_progress_due(&fold.p, now))
        return;
    /* a sample even without new lines, so that a stalled training's rate falls */
    dtf_progress_update(&fold.p, now, fold.gstep, examples(), -1);
    char text[512];
    dtf_progress_format(&fold.p, now, text, sizeof text);
    dtf_status_show(text);
}

int dtf_fold_interval_ms(int otherwise)
{
    int ms = (int)(DTF_PROGRESS_REDRAW * 1000);
    return fold.on && otherwise > ms ? ms : otherwise;
}

void dtf_fold_pause(void)
{
    if (fold.on)
        dtf_status_end(0);
    fold.p.last_draw = 0; /* due at the next tick */
}

void dtf_fold_end(void)
{
    if (!fold.on)
        return;
    if (fold.started) {
        char text[512];
        dtf_progress_format(&fold.p, dtf_now(), text, sizeof text);
        dtf_status_show(text);
    }
    dtf_status_end(1);
    fold.on = 0;
}
