/* metrics_impl: the registry's insides, shared by metrics.c (the registry
 * and the text format) and metrics_http.c (the endpoint); the interface is
 * metrics.h. */
#ifndef DTF_METRICS_IMPL_H
#define DTF_METRICS_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "metrics.h"

#define METRIC_NAME_MAX 96
#define METRIC_HELP_MAX 200
#define METRIC_LABELS_MAX 512

struct dtf_metric {
    dtf_metric_kind kind;
    char name[METRIC_NAME_MAX];
    char help[METRIC_HELP_MAX];
    /* Values are doubles kept as their bits, so that an update is one
     * atomic operation (a compare-and-swap loop for an addition). */
    _Atomic uint64_t value;
    /* histogram: nb bounds; counts[i] observations in (bounds[i-1],
     * bounds[i]], counts[nb] above the last. Not cumulative: a scrape sums
     * them, so the buckets and _count always agree. */
    int nb;
    double bounds[DTF_METRICS_MAX_BUCKETS];
    char le[DTF_METRICS_MAX_BUCKETS][32]; /* the bounds as the text shows them */
    _Atomic uint64_t counts[DTF_METRICS_MAX_BUCKETS + 1];
    _Atomic uint64_t sum;
    /* info: the rendered label set, k="v",... Two buffers: a scrape reads
     * the one `labels_at` names while a new set is written to the other. */
    char labels[2][METRIC_LABELS_MAX];
    _Atomic int labels_at;
};

struct dtf_metrics_http; /* metrics_http.c */

struct dtf_metrics {
    pthread_mutex_t lock; /* registration only; updates and scrapes take none */
    dtf_metric *m[DTF_METRICS_MAX];
    _Atomic int n;        /* published entries of m: a scrape reads m[0..n) */
    struct dtf_metrics_http *http;
};

#endif
