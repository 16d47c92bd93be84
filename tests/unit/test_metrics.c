/* Unit tests for metrics.c and metrics_http.c: the text format of each
 * kind, name and label rules, counters that never go down, a scrape
 * racing a writer thread (buckets always agree with _count), and the
 * endpoint over real loopback sockets: 200 for GET /metrics, 404, 405,
 * 400 for garbage, oversized headers, the connection cap (the next peer
 * waits and is served once one leaves), and the per-request deadline. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "metrics.h"
#include "util.h"

static char *render(dtf_metrics *r)
{
    size_t n;
    char *t = dtf_metrics_render(r, &n);
    CHECK(t != NULL && strlen(t) == n);
    return t;
}

TEST(text_format_of_each_kind)
{
    dtf_metrics *r = dtf_metrics_new();
    dtf_metric *c = dtf_metrics_counter(r, "dtf_worker_steps_total", "Steps done.");
    dtf_metric *g = dtf_metrics_gauge(r, "dtf_worker_loss", "Loss\nof the last step.");
    static const double b[] = {0.001, 0.01, 0.1};
    dtf_metric *h = dtf_metrics_histogram(r, "dtf_worker_step_seconds", "Step time.", b, 3);
    const char *labels[] = {"version", "0.1.0", "blas_core", "Sky\"lake\\X\n", NULL};
    dtf_metric *i = dtf_metrics_info(r, "dtf_build_info", "Build.", labels);
    CHECK(c && g && h && i);
    dtf_counter_add(c, 3);
    dtf_counter_add(c, -5); /* ignored */
    dtf_gauge_set(g, 0.4123);
    dtf_histogram_observe(h, 0.0005);
    dtf_histogram_observe(h, 0.001); /* le is inclusive */
    dtf_histogram_observe(h, 0.05);
    dtf_histogram_observe(h, 7);
    char *t = render(r);
    CHECK_STR_CONTAINS(t, "# HELP dtf_worker_steps_total Steps done.\n"
                          "# TYPE dtf_worker_steps_total counter\n"
                          "dtf_worker_steps_total 3\n");
    CHECK_STR_CONTAINS(t, "# HELP dtf_worker_loss Loss of the last step.\n"
                          "# TYPE dtf_worker_loss gauge\ndtf_worker_loss 0.4123\n");
    CHECK_STR_CONTAINS(t, "# TYPE dtf_worker_step_seconds histogram\n"
                          "dtf_worker_step_seconds_bucket{le=\"0.001\"} 2\n"
                          "dtf_worker_step_seconds_bucket{le=\"0.01\"} 2\n"
                          "dtf_worker_step_seconds_bucket{le=\"0.1\"} 3\n"
                          "dtf_worker_step_seconds_bucket{le=\"+Inf\"} 4\n"
                          "dtf_worker_step_seconds_sum 7.0515\n"
                          "dtf_worker_step_seconds_count 4\n");
    CHECK_STR_CONTAINS(t, "# TYPE dtf_build_info gauge\n"
                          "dtf_build_info{version=\"0.1.0\",blas_core=\"Sky\\\"lake\\\\X\\n\"} 1\n");
    CHECK_STR_CONTAINS(t, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ");
    CHECK_STR_CONTAINS(t, "\nprocess_resident_memory_bytes ");
    CHECK_STR_CONTAINS(t, "\nprocess_start_time_seconds ");
    CHECK_STR_CONTAINS(t, "\nprocess_open_fds ");
    CHECK(t[strlen(t) - 1] == '\n');
    free(t);
    /* special values */
    dtf_gauge_set(g, 1.0 / 0.0);
    t = render(r);
    CHECK_STR_CONTAINS(t, "dtf_worker_loss +Inf\n");
    free(t);
    dtf_metrics_free(r);
}

TEST(names_kinds_and_counters)
{
    dtf_metrics *r = dtf_metrics_new();
    CHECK(dtf_metrics_counter(r, "9lives", "") == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "9lives");
    CHECK(dtf_metrics_counter(r, "a-b", "") == NULL);
    CHECK(dtf_metrics_counter(r, "", "") == NULL);
    dtf_metric *a = dtf_metrics_counter(r, "ns:a_total", "");
    CHECK(a != NULL);
    CHECK(dtf_metrics_counter(r, "ns:a_total", "again") == a);
    CHECK(dtf_metrics_gauge(r, "ns:a_total", "") == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "another kind");
    static const double b1[] = {1, 2}, b2[] = {1, 3}, bad[] = {2, 1};
    CHECK(dtf_metrics_histogram(r, "h", "", b1, 2) != NULL);
    CHECK(dtf_metrics_histogram(r, "h", "", b2, 2) == NULL);
    CHECK(dtf_metrics_histogram(r, "h2", "", bad, 2) == NULL);
    CHECK(dtf_metrics_find(r, "h") != NULL && dtf_metrics_find(r, "nope") == NULL);
    const char *badlabel[] = {"1x", "v", NULL};
    CHECK(dtf_metrics_info(r, "i", "", badlabel) == NULL);
    dtf_counter_set(a, 10);
    dtf_counter_set(a, 4); /* a counter never goes down */
    CHECK_NEAR(dtf_metric_value(a), 10, 0);
    dtf_counter_add(a, 0.5);
    CHECK_NEAR(dtf_metric_value(a), 10.5, 0);
    /* NULL handles: metrics off */
    dtf_counter_add(NULL, 1);
    dtf_gauge_set(NULL, 1);
    dtf_histogram_observe(NULL, 1);
    dtf_metrics_free(r);
}

TEST(registry_fills_up)
{
    dtf_metrics *r = dtf_metrics_new();
    char name[32];
    int made = 0;
    for (int i = 0; i < DTF_METRICS_MAX + 5; i++) {
        snprintf(name, sizeof name, "m%d", i);
        made += dtf_metrics_gauge(r, name, "") != NULL;
    }
    CHECK_EQ_INT(made, DTF_METRICS_MAX);
    CHECK_STR_CONTAINS(dtf_error(), "full");
    dtf_metrics_free(r);
}

typedef struct racer {
    dtf_metric *c, *h;
    _Atomic int stop;
    long n;
} racer;

static void *race_writer(void *arg)
{
    racer *w = arg;
    while (!w->stop) {
        dtf_counter_add(w->c, 1);
        dtf_histogram_observe(w->h, (double)(w->n % 5));
        w->n++;
    }
    return NULL;
}

/* The value after "name " on its own line. */
static double value_of(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

TEST(scrapes_race_a_writer)
{
    dtf_metrics *r = dtf_metrics_new();
    static const double b[] = {0.5, 1.5, 2.5, 3.5};
    racer w = {dtf_metrics_counter(r, "c_total", ""), dtf_metrics_histogram(r, "h", "", b, 4), 0,
               0};
    pthread_t th;
    pthread_create(&th, NULL, race_writer, &w);
    double last = 0;
    int monotone = 1, agree = 1;
    for (int i = 0; i < 300; i++) {
        char *t = render(r);
        double c = value_of(t, "c_total");
        monotone &= c >= last;
        last = c;
        agree &= value_of(t, "h_bucket{le=\"+Inf\"}") == value_of(t, "h_count");
        free(t);
    }
    w.stop = 1;
    pthread_join(th, NULL);
    CHECK(monotone);
    CHECK(agree);
    CHECK_NEAR(dtf_metric_value(w.c), (double)w.n, 0);
    CHECK_NEAR(dtf_metric_value(w.h), (double)w.n, 0);
    dtf_metrics_free(r);
}

/* ---- the endpoint -------------------------------------------------------------- */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until the peer closes, `want` appears, or timeout s pass; returns
 * what came (malloc'd). *closed: the peer closed. */
static char *read_reply(int fd, const char *want, double timeout, int *closed)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = calloc(cap, 1);
    double end = dtf_now() + timeout;
    *closed = 0;
    while (len < cap - 1) {
        int ms = (int)((end - dtf_now()) * 1000);
        if (ms <= 0)
            break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0)
            break;
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0) {
            *closed = 1;
            break;
        }
        len += (size_t)n;
        buf[len] = 0;
        if (want && strstr(buf, want))
            break;
    }
    return buf;
}

static char *ask(int port, const char *req, const char *want, int *closed)
{
    int fd = dial(port);
    if (fd < 0)
        return strdup("");
    if (write(fd, req, strlen(req)) < 0)
        FAIL("write: %s", strerror(errno));
    char *r = read_reply(fd, want, 5, closed);
    close(fd);
    return r;
}

static dtf_metrics *serving(int max_conns, double timeout)
{
    dtf_metrics *r = dtf_metrics_new();
    dtf_gauge_set(dtf_metrics_gauge(r, "dtf_ps_global_step", "Step."), 1234);
    dtf_metrics_serve_config c = {"127.0.0.1", 0, max_conns, 0, 0, timeout};
    CHECK_EQ_INT(dtf_metrics_serve(r, &c), 0);
    CHECK(dtf_metrics_port(r) > 0);
    return r;
}

TEST(endpoint_answers)
{
    dtf_metrics *r = serving(0, 0);
    int port = dtf_metrics_port(r), closed;
    char *t = ask(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                  "process_max_fds", &closed);
    CHECK_STR_CONTAINS(t, "HTTP/1.1 200 OK\r\n");
    CHECK_STR_CONTAINS(t, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
    CHECK_STR_CONTAINS(t, "\ndtf_ps_global_step 1234\n");
    free(t);
    t = ask(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", "dtf_ps_global_step 1234", &closed);
    CHECK_STR_CONTAINS(t, "200 OK");
    free(t);
    t = ask(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n\r\n", &closed);
    CHECK_STR_CONTAINS(t, "HTTP/1.1 404 ");
    free(t);
    t = ask(port, "GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n\r\n", &closed);
    CHECK_STR_CONTAINS(t, "HTTP/1.1 404 ");
    free(t);
    static const char *const methods[] = {"POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        char req[128];
        snprintf(req, sizeof req, "%s /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                 methods[i]);
        t = ask(port, req, "\r\n\r\n", &closed);
        if (!strstr(t, "HTTP/1.1 405 ") || !strstr(t, "Allow: GET"))
            FAIL("%s /metrics: %.60s", methods[i], t);
        free(t);
    }
    t = ask(port, "\x16\x03\x01\x02\x01garbage\r\n\r\n", NULL, &closed);
    CHECK(closed);
    CHECK(strstr(t, "200 OK") == NULL);
    free(t);
    /* a request line and headers past 8 KiB: refused, connection closed */
    char *big = malloc(20000);
    strcpy(big, "GET /metrics HTTP/1.1\r\nX-Junk: ");
    memset(big + strlen(big), 'a', 12000);
    strcpy(big + 12032, "\r\n\r\n");
    t = ask(port, big, NULL, &closed);
    CHECK(closed);
    CHECK(strstr(t, "200 OK") == NULL);
    free(t);
    free(big);
    /* a body over the cap */
    t = ask(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", NULL,
            &closed);
    CHECK(strstr(t, "200 OK") == NULL);
    free(t);
    /* still serving after all that */
    t = ask(port, "GET /metrics HTTP/1.0\r\n\r\n", "dtf_ps_global_step 1234", &closed);
    CHECK_STR_CONTAINS(t, "200 OK");
    free(t);
    CHECK_EQ_INT(dtf_metrics_serve(r, &(dtf_metrics_serve_config){0}), -1);
    dtf_metrics_stop(r);
    CHECK_EQ_INT(dtf_metrics_port(r), 0);
    CHECK(dial(port) < 0);
    dtf_metrics_free(r);
}

/* Waits (up to 5 s) until the endpoint holds n connections. */
static int wait_conns(dtf_metrics *r, int n)
{
    double end = dtf_now() + 5;
    while (dtf_metrics_connections(r) != n && dtf_now() < end)
        usleep(1000);
    return dtf_metrics_connections(r) == n;
}

TEST(connection_cap_and_deadline)
{
    dtf_metrics *r = serving(4, 1.0);
    int port = dtf_metrics_port(r), fds[4], closed;
    for (int i = 0; i < 4; i++)
        fds[i] = dial(port);
    CHECK(wait_conns(r, 4));
    /* a fifth takes the place of the oldest idle one: served at once, and the
     * endpoint still holds no more than four */
    int fifth = dial(port);
    CHECK(fifth >= 0);
    const char *get = "GET /metrics HTTP/1.0\r\n\r\n";
    CHECK(write(fifth, get, strlen(get)) > 0);
    char *t = read_reply(fifth, "dtf_ps_global_step 1234", 5, &closed);
    CHECK_STR_CONTAINS(t, "200 OK");
    free(t);
    close(fifth);
    t = read_reply(fds[0], NULL, 5, &closed);
    CHECK(closed); /* the oldest was closed for it */
    free(t);
    close(fds[0]);
    CHECK(dtf_metrics_connections(r) <= 4);
    /* the three idle ones run out of time (1 s) and are closed by the endpoint */
    double t0 = dtf_now();
    for (int i = 1; i < 4; i++) {
        t = read_reply(fds[i], NULL, 5, &closed);
        CHECK(closed);
        free(t);
        close(fds[i]);
    }
    CHECK(dtf_now() - t0 < 4);
    CHECK(wait_conns(r, 0));
    /* a trickler: a byte every 0.3 s never completes a request in time */
    int fd = dial(port);
    const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
    t0 = dtf_now();
    closed = 0;
    for (size_t i = 0; i < strlen(req) && !closed; i++) {
        if (write(fd, req + i, 1) < 0)
            break;
        free(read_reply(fd, NULL, 0.3, &closed));
    }
    CHECK(closed);
    CHECK(dtf_now() - t0 < 3);
    close(fd);
    /* a keep-alive client that asks in time is served again and again */
    fd = dial(port);
    for (int i = 0; i < 3; i++) {
        const char *ka = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        CHECK(write(fd, ka, strlen(ka)) > 0);
        t = read_reply(fd, "process_max_fds", 5, &closed);
        CHECK_STR_CONTAINS(t, "200 OK");
        free(t);
    }
    close(fd);
    dtf_metrics_free(r);
}

TEST(bind_errors_name_the_port)
{
    dtf_metrics *a = serving(0, 0);
    dtf_metrics *b = dtf_metrics_new();
    dtf_metrics_serve_config c = {"127.0.0.1", dtf_metrics_port(a), 0, 0, 0, 0};
    CHECK_EQ_INT(dtf_metrics_serve(b, &c), -1);
    char want[64];
    snprintf(want, sizeof want, "metrics port %d: Address already in use", c.port);
    CHECK_STR_CONTAINS(dtf_error(), want);
    dtf_metrics_serve_config bad = {"no.such.host.invalid", 0, 0, 0, 0, 0};
    CHECK_EQ_INT(dtf_metrics_serve(b, &bad), -1);
    CHECK_STR_CONTAINS(dtf_error(), "no.such.host.invalid");
    /* every address: reachable over IPv4 loopback */
    dtf_metrics_serve_config any = {NULL, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(dtf_metrics_serve(b, &any), 0);
    int closed;
    char *t = ask(dtf_metrics_port(b), "GET /metrics HTTP/1.0\r\n\r\n", "process_max_fds", &closed);
    CHECK_STR_CONTAINS(t, "200 OK");
    free(t);
    dtf_metrics_free(a);
    dtf_metrics_free(b);
}

RUN_TESTS("test_metrics")
