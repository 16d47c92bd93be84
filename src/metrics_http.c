/* metrics_http: the /metrics endpoint, evhttp on a thread of its own (see
 * metrics.h for why a thread, and for what it answers).
 *
 * The connection cap: evhttp keeps no count of its connections, so each one
 * gets a slot. evhttp asks us for each new connection's bufferevent
 * (evhttp_set_bevcb); we hold a reference to it until the accept callback
 * is over, then read the connection evhttp attached to it (the
 * bufferevent's callback argument) and ask to be told when evhttp frees it
 * (evhttp_connection_set_closecb), which frees the slot. With every slot
 * taken, a new peer takes the slot of the connection that has waited
 * longest for a request to complete (that one is closed): peers that hold
 * connections open without asking cannot lock a scraper out, whose request
 * comes at once. Only when every slot is a connection accepted this very
 * moment is the listener paused (the next peers wait in the backlog).
 * Each slot also has a deadline to complete each request: a peer that
 * sends a byte every few seconds (which evhttp's idle timeout lets
 * through) has its connection freed when it runs out. */
#include "metrics_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

typedef struct mconn {
    struct dtf_metrics_http *srv;
    struct bufferevent *bev;        /* NULL: slot free */
    struct evhttp_connection *evc;  /* NULL until adopted */
    struct event *timer;            /* first: adopt; then the request deadline */
    double since;                   /* accepted, or its last request answered */
} mconn;

struct dtf_metrics_http {
    dtf_metrics *reg;
    dtf_metrics_serve_config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *lev; /* owned by http once bound */
    struct event *wake_ev, *retry_ev;
    int wake[2];
    pthread_t thread;
    int port;
    mconn *conns;       /* cfg.max_connections slots */
    _Atomic int nconns;
    int paused;         /* the listener is disabled: at the cap, or after accept failed */
    int stopping;       /* evhttp_free is running: the listener is gone */
};

/* ---- connections -------------------------------------------------------------- */

static struct timeval tv_of(double s)
{
    struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
    return tv;
}

static void arm_deadline(mconn *c)
{
    struct timeval tv = tv_of(c->srv->cfg.request_timeout);
    evtimer_add(c->timer, &tv);
}

static int all_new(const struct dtf_metrics_http *h);

static void resume_listener(struct dtf_metrics_http *h)
{
    if (h->paused && !h->stopping && !all_new(h)) {
        evconnlistener_enable(h->lev);
        h->paused = 0;
    }
}

static void release(mconn *c)
{
    struct dtf_metrics_http *h = c->srv;
    if (c->timer)
        event_free(c->timer);
    c->timer = NULL;
    c->bev = NULL;
    c->evc = NULL;
    atomic_fetch_sub(&h->nconns, 1);
    resume_listener(h);
}

/* evhttp is freeing the connection (closed, failed, timed out, or the
 * whole server going away). */
static void conn_closed(struct evhttp_connection *evc, void *arg)
{
    release(arg);
}

/* Frees c's connection and its slot (conn_closed does, unless evhttp
 * skipped the close callback: then here). */
static void drop(mconn *c)
{
    struct evhttp_connection *evc = c->evc;
    evhttp_connection_free(evc);
    if (c->bev && c->evc == evc)
        release(c);
}

/* The slot's timer: once right after the accept (adopt the connection),
 * then the deadline of each request. */
static void conn_timer(evutil_socket_t fd, short what, void *arg)
{
    mconn *c = arg;
    if (c->evc) { /* out of time */
        drop(c);
        return;
    }
    bufferevent_event_cb ecb = NULL;
    void *evc = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, &ecb, &evc);
    struct bufferevent *bev = c->bev;
    if (!ecb || !evc) { /* evhttp gave up on it already */
        release(c);
        bufferevent_decref(bev);
        return;
    }
    c->evc = evc;
    evhttp_connection_set_closecb(c->evc, conn_closed, c);
    arm_deadline(c);
    bufferevent_decref(bev); /* evhttp's alone now */
    resume_listener(c->srv); /* it can be evicted now */
}

/* A free slot, or the one whose connection has waited longest for a
 * request freed for the newcomer; NULL when every slot is a connection not
 * adopted yet. */
static mconn *take_slot(struct dtf_metrics_http *h)
{
    mconn *oldest = NULL;
    for (int i = 0; i < h->cfg.max_connections; i++) {
        mconn *c = &h->conns[i];
        if (!c->bev)
            return c;
        if (c->evc && (!oldest || c->since < oldest->since))
            oldest = c;
    }
    if (!oldest)
        return NULL;
    drop(oldest);
    return oldest;
}

/* 1 when no slot could be freed for another newcomer. */
static int all_new(const struct dtf_metrics_http *h)
{
    for (int i = 0; i < h->cfg.max_connections; i++)
        if (!h->conns[i].bev || h->conns[i].evc)
            return 0;
    return 1;
}

/* evhttp's bevcb: the bufferevent of a new connection. */
static struct bufferevent *new_conn(struct event_base *base, void *arg)
{
    struct dtf_metrics_http *h = arg;
    mconn *c = take_slot(h);
    if (!c) /* cannot happen: the listener pauses before */
        return NULL;
    c->srv = h;
    c->evc = NULL;
    c->since = dtf_now();
    c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(base, conn_timer, c);
    if (!c->bev || !c->timer) {
        if (c->bev)
            bufferevent_free(c->bev);
        if (c->timer)
            event_free(c->timer);
        c->bev = NULL;
        c->timer = NULL;
        return NULL; /* evhttp makes a plain one: this connection is not counted */
    }
    /* held until conn_timer adopts the connection evhttp builds on it */
    bufferevent_incref(c->bev);
    struct timeval now = {0, 0};
    evtimer_add(c->timer, &now);
    atomic_fetch_add(&h->nconns, 1);
    if (all_new(h)) {
        evconnlistener_disable(h->lev);
        h->paused = 1;
    }
    return c->bev;
}

/* accept() failed (out of descriptors): pause a second instead of spinning. */
static void accept_error(struct evconnlistener *lev, void *arg)
{
    struct dtf_metrics_http *h = arg;
    evconnlistener_disable(lev);
    h->paused = 1;
    struct timeval tv = {1, 0};
    evtimer_add(h->retry_ev, &tv);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    resume_listener(arg);
}

/* ---- requests ------------------------------------------------------------------ */

static void handle(struct evhttp_request *req, void *arg)
{
    struct dtf_metrics_http *h = arg;
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    struct evhttp_connection *evc = evhttp_request_get_connection(req);
    for (int i = 0; evc && i < h->cfg.max_connections; i++)
        if (h->conns[i].evc == evc) { /* a whole request came: time for the next */
            h->conns[i].since = dtf_now();
            arm_deadline(&h->conns[i]);
        }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        /* by hand: evhttp_send_error would drop the Allow header */
        struct evbuffer *b = evbuffer_new();
        if (b)
            evbuffer_add_printf(b, "405 Method Not Allowed: only GET /metrics\n");
        evhttp_add_header(hdr, "Allow", "GET");
        evhttp_add_header(hdr, "Content-Type", "text/plain; charset=utf-8");
        evhttp_add_header(hdr, "Connection", "close");
        evhttp_send_reply(req, 405, "Method Not Allowed", b);
        if (b)
            evbuffer_free(b);
        return;
    }
    if (!path || strcmp(path, "/metrics") != 0) {
        evhttp_send_error(req, HTTP_NOTFOUND, "Not Found (the metrics are at /metrics)");
        return;
    }
    size_t len;
    char *text = dtf_metrics_render(h->reg, &len);
    struct evbuffer *body = evbuffer_new();
    if (!text || !body || evbuffer_add(body, text, len) < 0) {
        free(text);
        if (body)
            evbuffer_free(body);
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    free(text);
    evhttp_add_header(hdr, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void *run(void *arg)
{
    struct dtf_metrics_http *h = arg;
    event_base_dispatch(h->base);
    return NULL;
}

/* ---- setup ---------------------------------------------------------------------- */

/* A listening socket on host:port (host NULL: every address, IPv6 with
 * IPv4 mapped, or IPv4 alone where IPv6 is off). -1 with dtf_error(). */
static int listen_on(const char *host, int port)
{
    struct addrinfo hints, *ai = NULL;
    char ps[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    hints.ai_family = host ? AF_UNSPEC : AF_INET6;
    snprintf(ps, sizeof ps, "%d", port);
    int gai = getaddrinfo(host, ps, &hints, &ai);
    if (gai != 0 && !host) {
        hints.ai_family = AF_INET;
        gai = getaddrinfo(NULL, ps, &hints, &ai);
    }
    if (gai != 0) {
        dtf_seterr("metrics host %s: %s", host ? host : "(any)", gai_strerror(gai));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 && !host && ai->ai_family == AF_INET6) { /* no IPv6 in this kernel */
        freeaddrinfo(ai);
        hints.ai_family = AF_INET;
        if ((gai = getaddrinfo(NULL, ps, &hints, &ai)) != 0) {
            dtf_seterr("metrics port %d: %s", port, gai_strerror(gai));
            return -1;
        }
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    }
    int one = 1, zero = 0;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6 && !host)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    }
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        dtf_seterr("metrics port %d: %s", port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void free_http(struct dtf_metrics_http *h)
{
    h->stopping = 1;
    /* Connections not adopted yet: evhttp_free frees them, we drop our hold. */
    for (int i = 0; h->conns && i < h->cfg.max_connections; i++)
        if (h->conns[i].bev && !h->conns[i].evc) {
            bufferevent_decref(h->conns[i].bev);
            release(&h->conns[i]);
        }
    if (h->http)
        evhttp_free(h->http); /* frees the listener and every connection */
    else if (h->lev)
        evconnlistener_free(h->lev);
    if (h->wake_ev)
        event_free(h->wake_ev);
    if (h->retry_ev)
        event_free(h->retry_ev);
    if (h->base)
        event_base_free(h->base);
    if (h->wake[0] >= 0)
        close(h->wake[0]);
    if (h->wake[1] >= 0)
        close(h->wake[1]);
    free(h->conns);
    free(h);
}

static int setup(struct dtf_metrics_http *h, int fd)
{
    const dtf_metrics_serve_config *c = &h->cfg;
    if (!(h->base = event_base_new()) || !(h->http = evhttp_new(h->base)) ||
        !(h->conns = calloc((size_t)c->max_connections, sizeof *h->conns)))
        return -1;
    h->lev = evconnlistener_new(h->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, 0, fd);
    if (!h->lev) {
        close(fd);
        return -1;
    }
    /* Every method evhttp parses reaches handle(), which answers 405, not
     * evhttp's 501. */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(h->http, (ev_ssize_t)c->max_header_bytes);
    evhttp_set_max_body_size(h->http, (ev_ssize_t)c->max_body_bytes);
    struct timeval tv = tv_of(c->request_timeout);
    evhttp_set_timeout_tv(h->http, &tv);
    evhttp_set_bevcb(h->http, new_conn, h);
    evhttp_set_gencb(h->http, handle, h);
    if (!evhttp_bind_listener(h->http, h->lev))
        return -1;
    evconnlistener_set_error_cb(h->lev, accept_error);
    if (pipe2(h->wake, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    h->wake_ev = event_new(h->base, h->wake[0], EV_READ, wake_cb, h->base);
    h->retry_ev = evtimer_new(h->base, retry_cb, h);
    if (!h->wake_ev || !h->retry_ev || event_add(h->wake_ev, NULL) < 0)
        return -1;
    return 0;
}

int dtf_metrics_serve(dtf_metrics *r, const dtf_metrics_serve_config *cfg)
{
    if (r->http) {
        dtf_seterr("metrics: already serving on port %d", r->http->port);
        return -1;
    }
    struct dtf_metrics_http *h = calloc(1, sizeof *h);
    if (!h) {
        dtf_seterr("out of memory");
        return -1;
    }
    h->reg = r;
    h->cfg = *cfg;
    h->wake[0] = h->wake[1] = -1;
    if (h->cfg.max_connections <= 0)
        h->cfg.max_connections = 32;
    if (h->cfg.max_header_bytes == 0)
        h->cfg.max_header_bytes = 8192;
    if (h->cfg.max_body_bytes == 0)
        h->cfg.max_body_bytes = 1024;
    if (!(h->cfg.request_timeout > 0))
        h->cfg.request_timeout = 10;
    int fd = listen_on(cfg->host, cfg->port);
    if (fd < 0) {
        free(h);
        return -1;
    }
    h->port = bound_port(fd);
    h->cfg.host = NULL; /* not kept: the caller's string */
    if (setup(h, fd) < 0) {
        free_http(h);
        dtf_seterr("metrics port %d: cannot set up the endpoint (out of memory?)", cfg->port);
        return -1;
    }
    /* The thread blocks every signal: they stay with the task's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&h->thread, NULL, run, h);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        free_http(h);
        dtf_seterr("metrics: cannot start a thread: %s", strerror(e));
        return -1;
    }
    r->http = h;
    return 0;
}

int dtf_metrics_port(const dtf_metrics *r)
{
    return r->http ? r->http->port : 0;
}

int dtf_metrics_connections(const dtf_metrics *r)
{
    return r->http ? atomic_load(&r->http->nconns) : 0;
}

void dtf_metrics_stop(dtf_metrics *r)
{
    struct dtf_metrics_http *h = r->http;
    if (!h)
        return;
    char c = 0;
    while (write(h->wake[1], &c, 1) < 0 && errno == EINTR) {
    }
    pthread_join(h->thread, NULL);
    r->http = NULL;
    free_http(h);
}
