/* metrics: Prometheus counters, gauges and histograms, and a /metrics
 * endpoint that serves them in the text format 0.0.4.
 *
 * Training code updates a metric with a few atomic operations and never
 * takes a lock; the endpoint reads the same atomics when a scrape comes.
 * So a step never waits on a scrape and a scrape never waits on a step.
 *
 * Why a thread of its own, with its own event_base, and not the ps's or the
 * client's loop: those loops only run while their task is in the network
 * (a worker runs its client's loop while it waits for a pull, one process
 * has no loop at all), and a worker computing a step, or evaluating for
 * seconds, would leave a scrape unanswered until it is done; Prometheus
 * would see the task as down exactly when it is busiest. The metrics thread
 * touches nothing but its own base, its sockets and the atomics, and blocks
 * every signal, so the task's signal handling stays as it was.
 *
 * The endpoint answers GET /metrics only: 404 for any other path, 405 (with
 * Allow: GET) for any other method, 400 for what is not HTTP. It holds at
 * most max_connections connections at once (a newcomer takes the place of
 * the connection that has waited longest without completing a request, so
 * idle peers cannot lock a scraper out), caps request headers and bodies,
 * and gives every connection a deadline to complete each request, so a
 * peer that trickles bytes or sends garbage loses only its own connection.
 *
 * The C core: no printing, no exit; errors through dtf_seterr(). */
#ifndef DTF_METRICS_H
#define DTF_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define DTF_METRICS_MAX 96        /* metrics in one registry */
#define DTF_METRICS_MAX_BUCKETS 24 /* histogram bounds, +Inf excluded */

typedef enum { DTF_COUNTER, DTF_GAUGE, DTF_HISTOGRAM, DTF_INFO } dtf_metric_kind;

typedef struct dtf_metrics dtf_metrics; /* a registry */
typedef struct dtf_metric dtf_metric;   /* one metric in it; lives as long as the registry */

dtf_metrics *dtf_metrics_new(void);
/* Stops its endpoint (if serving) and frees every metric. */
void dtf_metrics_free(dtf_metrics *r);
/* The process's registry, created on first use and never freed: the one
 * the endpoint of a task serves, and where the ps's hooks (pswatch.h) put
 * their metrics. */
dtf_metrics *dtf_metrics_default(void);

/* Registers a metric. name must match [a-zA-Z_:][a-zA-Z0-9_:]*, help is
 * one line. Registering a name again returns the metric already there when
 * the kind (and a histogram's bounds) agree; NULL with dtf_error() when
 * they do not, for a bad name, or when the registry is full. bounds:
 * nbounds increasing finite upper bounds (the +Inf bucket is implicit). */
dtf_metric *dtf_metrics_counter(dtf_metrics *r, const char *name, const char *help);
dtf_metric *dtf_metrics_gauge(dtf_metrics *r, const char *name, const char *help);
dtf_metric *dtf_metrics_histogram(dtf_metrics *r, const char *name, const char *help,
                                  const double *bounds, int nbounds);
/* An info metric: a gauge at 1 whose labels carry the facts,
 * labels = {"version", "0.1.0", "blas_core", "Haswell", NULL}. Registering
 * it again replaces its labels. Label names match [a-zA-Z_][a-zA-Z0-9_]*;
 * values are escaped as the format wants. */
dtf_metric *dtf_metrics_info(dtf_metrics *r, const char *name, const char *help,
                             const char *const *labels);
dtf_metric *dtf_metrics_find(dtf_metrics *r, const char *name);
dtf_metric_kind dtf_metric_kind_of(const dtf_metric *m);

/* Updates: lock-free, any thread. A NULL metric is ignored, so a caller
 * whose metrics are off passes NULL handles. */
void dtf_counter_add(dtf_metric *m, double v);     /* v >= 0; negative is ignored */
/* For totals the caller keeps anyway (the ps's counters): the counter
 * becomes total; a total below the current value is ignored (a counter
 * never goes down while the process lives). */
void dtf_counter_set(dtf_metric *m, double total);
void dtf_gauge_set(dtf_metric *m, double v);
void dtf_histogram_observe(dtf_metric *m, double v);
/* The current value (counter, gauge), or a histogram's count. */
double dtf_metric_value(const dtf_metric *m);

/* The text format 0.0.4: every metric in registration order, then the
 * process's own (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_start_time_seconds,
 * process_open_fds, process_max_fds, read from /proc at this moment).
 * Returns a malloc'd NUL-terminated text and its length in *len; NULL with
 * dtf_error() when out of memory. Safe while other threads update. */
char *dtf_metrics_render(dtf_metrics *r, size_t *len);

/* ---- the endpoint ------------------------------------------------------------ */

typedef struct dtf_metrics_serve_config {
    const char *host;        /* NULL: every address, IPv6 and IPv4 */
    int port;                /* 0: a free port (dtf_metrics_port) */
    int max_connections;     /* 0: 32 */
    size_t max_header_bytes; /* request line and headers; 0: 8 KiB */
    size_t max_body_bytes;   /* 0: 1 KiB */
    double request_timeout;  /* s a connection has for each request; 0: 10 */
} dtf_metrics_serve_config;

/* Binds, listens and starts the endpoint's thread; the registry must
 * outlive it. -1 with dtf_error() ("metrics port 9100: Address already in
 * use") when it cannot bind or is serving already. */
int dtf_metrics_serve(dtf_metrics *r, const dtf_metrics_serve_config *cfg);
/* The port it listens on, 0 when not serving. */
int dtf_metrics_port(const dtf_metrics *r);
/* Connections open right now (for tests of the cap). */
int dtf_metrics_connections(const dtf_metrics *r);
/* Stops the thread and closes every connection; no-op when not serving. */
void dtf_metrics_stop(dtf_metrics *r);

#endif
