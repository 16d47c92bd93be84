/* net_client: the worker's side (net.h): one connection per ps in one event
 * loop, HELLO, reconnecting with backoff while a ps is away, and calls that
 * look synchronous to Lua (pull, push, push_pull, step, done, stats), each
 * with a timeout; with overlap, an exchange thread that runs the loop while
 * the worker computes. */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "net_io.h"
#include "util.h"
#include "wire.h"

/* IDLE: waiting to retry; DOWN: dropped while nothing was in flight, taken
 * up again by the next call; DEAD: failed for good (err says why). */
enum { CC_IDLE, CC_CONNECTING, CC_HELLO, CC_READY, CC_DOWN, CC_DEAD };

#define CC_MAXREQ 4          /* requests in flight per ps within one call */
#define CONNECT_ATTEMPT 5.0  /* s one TCP connect may take before a retry */
#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 5.0

#define XLOG_MAX 32          /* log lines the exchange thread holds for the worker's thread */

typedef struct creq {
    int used, done;
    uint32_t id;
    uint8_t type;
    uint64_t off, count;
    int64_t step;
    const float *src;     /* PUSH body: count floats (bf16 wire: NULL when the body
                           * is in wire_buf already) */
    dtf_storage *keep;    /* retained while src sits in an output buffer */
    float *dst;           /* PULL_REPLY body lands here: count floats */
    int64_t reply_step;
    int aux;
    char *text;           /* STATS_REPLY (malloc'd) */
} creq;

typedef struct cconn {
    dtf_client *cl;
    int i;
    char addr[300], host[256], port[16];
    struct bufferevent *bev;
    struct event *retry;
    int state;
    net_fstate fs;
    uint64_t off, count;  /* the shard's range, from HELLO_REPLY */
    int have_range;
    int64_t step;         /* the shard's step in its latest reply */
    int64_t pulled_step;  /* the shard's step when its slice was last pulled; -1 */
    int64_t used_step;    /* overlap: the step of the parameters the worker computes on; -1 */
    int64_t grad_step;    /* overlap: the step of those the next pushed gradient came from; -1 */
    int last_push;
    uint32_t next_id, hello_id;
    creq req[CC_MAXREQ];
    double deadline;      /* (re)connecting: give up at this dtf_now() */
    double give_up_after; /* the timeout deadline was set from, for messages */
    double backoff;
    int reconnecting;
    char err[800];        /* why it is DEAD (or DOWN) */
    char why[256];        /* DOWN: what happened to the connection */
} cconn;

/* The exchange thread (overlap): from exchange_start to exchange_finish it
 * runs the client's event loop, so a round's bodies cross the link in both
 * directions while the worker's thread computes the next step; at finish
 * the worker's thread takes the loop back and waits there as every other
 * call does. Exactly one thread runs the loop at any time: it is handed
 * over under mu, which also orders everything the other wrote. Log lines
 * the thread produces wait in log[] for the worker's thread: a log
 * function may be Lua, which only the worker's thread may enter. */
typedef struct xthread {
    pthread_t tid;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;          /* the thread has the loop (under mu) */
    int quit;             /* under mu */
    atomic_int back;      /* the worker's thread wants the loop back */
    int wake[2];          /* a pipe: a byte ends the thread's wait in the loop */
    struct event *wake_ev;
    int nlog, dropped;    /* under mu */
    struct { int level; char msg[480]; } log[XLOG_MAX];
} xthread;

struct dtf_client {
    dtf_client_config cfg;
    char *token;
    size_t max_payload;
    struct event_base *base;
    struct event *timer;
    int n;
    cconn *c;
    int sync;
    int connecting;       /* dtf_client_connect: every ps must get READY */
    int failed, timed_out;
    double wait_for;      /* the current call's timeout */
    char err[800];
    uint8_t *wire_buf;    /* bf16 wire: pushed gradients narrowed, 2 bytes a parameter,
                           * each shard's at 2 * its offset; referenced by the output
                           * buffers until the ps has taken them */
    float *push_buf;      /* exchange_start, fp32 wire: its gradient, P floats (malloc'd
                           * on first use), what a reconnect re-sends while the worker
                           * has long overwritten its own (bf16: wire_buf is) */
    int in_flight;        /* exchange_start sent a round that exchange_finish collects */
    xthread x;
};

static void DTF_PRINTF(3, 4) client_log(dtf_client *cl, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (cl->x.started && pthread_equal(pthread_self(), cl->x.tid)) {
        xthread *x = &cl->x;
        pthread_mutex_lock(&x->mu);
        if (x->nlog < XLOG_MAX) {
            x->log[x->nlog].level = level;
            vsnprintf(x->log[x->nlog].msg, sizeof x->log[0].msg, fmt, ap);
            x->nlog++;
        } else {
            x->dropped++;
        }
        pthread_mutex_unlock(&x->mu);
    } else {
        net_vlog(cl->cfg.log, cl->cfg.log_ud, level, fmt, ap);
    }
    va_end(ap);
}

static void cc_start(cconn *cc);

static void cc_close(cconn *cc)
{
    if (cc->bev) {
        /* Frees the output buffer: referenced gradients are released. */
        bufferevent_free(cc->bev);
        cc->bev = NULL;
    }
    memset(&cc->fs, 0, sizeof cc->fs);
}

/* A failure that retrying will not cure, or that a call reports: the
 * connection is dead and the current call fails with the message. */
static void DTF_PRINTF(2, 3) cc_fail(cconn *cc, const char *fmt, ...)
{
    dtf_client *cl = cc->cl;
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    snprintf(cc->err, sizeof cc->err, "ps %d at %s: %s", cc->i, cc->addr, m);
    cc_close(cc);
    evtimer_del(cc->retry);
    cc->state = CC_DEAD;
    if (!cl->failed) {
        cl->failed = 1;
        snprintf(cl->err, sizeof cl->err, "%s", cc->err);
    }
}

/* Connecting failed in a way that may pass (refused: the ps is not up yet;
 * the name does not resolve yet): retry with exponential backoff until the
 * deadline. */
static void cc_retry_later(cconn *cc, const char *why)
{
    dtf_client *cl = cc->cl;
    cc_close(cc);
    double left = cc->deadline - dtf_now();
    if (left <= 0) {
        cc_fail(cc, "not reachable within %g s (%s)", cc->give_up_after, why);
        return;
    }
    double d = cc->backoff < left ? cc->backoff : left;
    client_log(cl, DTF_LOG_INFO, "waiting for ps %d at %s (%s), retry in %.1f s", cc->i,
               cc->addr, why, d);
    cc->state = CC_IDLE;
    struct timeval tv = net_tv(d);
    evtimer_add(cc->retry, &tv);
    cc->backoff = cc->backoff * 2 < BACKOFF_MAX ? cc->backoff * 2 : BACKOFF_MAX;
}

static int has_undone(const cconn *cc)
{
    for (int k = 0; k < CC_MAXREQ; k++)
        if (cc->req[k].used && !cc->req[k].done)
            return 1;
    return 0;
}

static void cc_reconnect(cconn *cc, const char *why)
{
    dtf_client *cl = cc->cl;
    client_log(cl, DTF_LOG_WARNING, "lost ps %d at %s (%s); reconnecting for up to %g s",
               cc->i, cc->addr, why, cl->cfg.reconnect_timeout);
    cc_close(cc);
    cc->reconnecting = 1;
    cc->deadline = dtf_now() + cl->cfg.reconnect_timeout;
    cc->give_up_after = cl->cfg.reconnect_timeout;
    cc->backoff = BACKOFF_FIRST;
    cc_start(cc);
}

/* An established connection dropped. With requests in flight: reconnect
 * and re-send them (reconnect_timeout > 0) or fail the call. Without: a ps
 * that finished or restarted between calls; the next call deals with it. */
static void cc_lost(cconn *cc, const char *why)
{
    dtf_client *cl = cc->cl;
    if (!has_undone(cc)) {
        cc_close(cc);
        cc->state = CC_DOWN;
        snprintf(cc->why, sizeof cc->why, "%s", why);
        snprintf(cc->err, sizeof cc->err, "ps %d at %s: %s", cc->i, cc->addr, why);
        return; /* not logged: every ps closes this way at the end */
    }
    if (cl->cfg.reconnect_timeout > 0)
        cc_reconnect(cc, why);
    else
        cc_fail(cc, "%s", why);
}

static void send_req(cconn *cc, creq *r)
{
    dtf_client *cl = cc->cl;
    int dt = cl->cfg.wire_dtype;
    uint32_t len = r->type == DTF_MSG_PUSH ? (uint32_t)dtf_wire_body_len(r->count, dt) : 0;
    dtf_wire_hdr h = dtf_wire_make(r->type, r->id, r->off, r->count, r->step, len);
    if (r->type == DTF_MSG_PUSH)
        h.aux = (uint8_t)dt;
    uint8_t hb[DTF_WIRE_HDR];
    dtf_wire_encode_hdr(hb, &h);
    if (len && dt == DTF_DTYPE_BF16) {
        uint8_t *b = cl->wire_buf + 2 * r->off;
        if (r->src) /* NULL: exchange_start narrowed it into wire_buf already */
            dtf_wire_put_body(b, r->src, (size_t)r->count, dt);
        net_send_direct(cc->bev, hb, b, len,
                        cl->cfg.copy_sends ? NET_BODY_BYTES : NET_BODY_BYTES_REF, NULL);
        return;
    }
    /* A gradient goes from the worker's tensor to the socket without a
     * copy. What the socket does not take at once stays referenced: the
     * call blocks until the reply, so the memory stays put, and keep
     * guards against the tensor being collected meanwhile. */
    net_send_direct(cc->bev, hb, r->src, len,
                    cl->cfg.copy_sends ? NET_BODY_FLOATS : NET_BODY_FLOATS_REF, r->keep);
}

static void send_hello(cconn *cc)
{
    dtf_client *cl = cc->cl;
    dtf_wire_hello m = {
        .role = (uint8_t)cl->cfg.role, .index = (uint32_t)cl->cfg.index, .P = cl->cfg.P,
        .checksum = cl->cfg.checksum, .token = cl->token,
        .token_len = (uint16_t)cl->cfg.token_len, .dtype = (uint8_t)cl->cfg.wire_dtype,
    };
    uint8_t p[DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN];
    size_t n = dtf_wire_encode_hello(p, sizeof p, &m);
    cc->hello_id = ++cc->next_id;
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_HELLO, cc->hello_id, 0, 0, 0, (uint32_t)n);
    uint8_t hb[DTF_WIRE_HDR];
    dtf_wire_encode_hdr(hb, &h);
    net_send_direct(cc->bev, hb, p, n, NET_BODY_BYTES, NULL);
}

static creq *find_req(cconn *cc, uint32_t id, int reply_type)
{
    for (int k = 0; k < CC_MAXREQ; k++) {
        creq *r = &cc->req[k];
        if (r->used && !r->done && r->id == id && dtf_msg_reply_type(r->type) == reply_type)
            return r;
    }
    return NULL;
}

static int handle_hello_reply(cconn *cc)
{
    dtf_client *cl = cc->cl;
    dtf_wire_hdr *h = &cc->fs.h;
    uint8_t b[DTF_WIRE_HELLO_REPLY_LEN];
    dtf_wire_hello_reply m;
    if (cc->state != CC_HELLO || h->id != cc->hello_id) {
        cc_fail(cc, "unexpected HELLO_REPLY");
        return -1;
    }
    evbuffer_remove(bufferevent_get_input(cc->bev), b, sizeof b);
    if (dtf_wire_decode_hello_reply(b, sizeof b, &m) < 0) {
        cc_fail(cc, "%s", dtf_error());
        return -1;
    }
    if (m.index != (uint32_t)cc->i || m.nps != (uint32_t)cl->n) {
        cc_fail(cc, "it says it is ps %" PRIu32 " of %" PRIu32 ", but this worker was given "
                "%d ps addresses with it at position %d", m.index, m.nps, cl->n, cc->i);
        return -1;
    }
    uint64_t off, count;
    dtf_shard_range(cl->cfg.P, cl->n, cc->i, &off, &count);
    if (m.P != cl->cfg.P || h->offset != off || h->count != count) {
        cc_fail(cc, "it serves [%" PRIu64 ", %" PRIu64 ") of %" PRIu64 " parameters; shard %d "
                "of %d over %" PRIu64 " is [%" PRIu64 ", %" PRIu64 ")", h->offset,
                h->offset + h->count, m.P, cc->i, cl->n, cl->cfg.P, off, off + count);
        return -1;
    }
    if (cl->cfg.token_len && !(h->aux & DTF_HELLO_TOKEN)) {
        cc_fail(cc, "it does not ask for a token and this %s has one: a ps of another cluster, "
                "or one started without the token; refusing it",
                cl->cfg.role == DTF_ROLE_WORKER ? "worker" : "client");
        return -1;
    }
    cc->off = h->offset;
    cc->count = h->count;
    cc->have_range = 1;
    if (dtf_wire_check_hello_reply(h->aux, cl->cfg.wire_dtype) < 0) {
        cc_fail(cc, "%s", dtf_error());
        return -1;
    }
    cc->step = h->step;
    cl->sync = (h->aux & DTF_HELLO_SYNC) != 0;
    cc->state = CC_READY;
    int resend = 0;
    /* A gradient this call pushed and the lost ps acknowledged is gone too
     * when the ps came back from a checkpoint older than the step that
     * included it (its PULL, still in flight, would otherwise wait for a
     * step nobody pushes): send it again. A ps that kept it (a dropped
     * connection, a checkpoint that has it) does not see it twice. */
    if (cc->reconnecting)
        for (int k = 0; k < CC_MAXREQ; k++) {
            creq *q = &cc->req[k];
            if (!q->used || !q->done || q->type != DTF_MSG_PUSH || q->aux == DTF_PUSH_STALE)
                continue;
            int64_t included = q->aux == DTF_PUSH_APPLIED ? q->reply_step : q->reply_step + 1;
            if (h->step < included)
                q->done = 0;
        }
    for (int k = 0; k < CC_MAXREQ; k++)
        if (cc->req[k].used && !cc->req[k].done) {
            send_req(cc, &cc->req[k]);
            resend++;
        }
    if (cc->reconnecting)
        client_log(cl, DTF_LOG_WARNING, "reconnected to ps %d at %s (step %" PRId64 ")%s",
                   cc->i, cc->addr, h->step, resend ? "; re-sent what was in flight" : "");
    else
        client_log(cl, DTF_LOG_INFO, "connected to ps %d at %s: parameters [%" PRIu64 ", %"
                   PRIu64 "), step %" PRId64 ", %s", cc->i, cc->addr, cc->off,
                   cc->off + cc->count, h->step, cl->sync ? "sync" : "async");
    cc->reconnecting = 0;
    return 0;
}

/* Handles the buffered frame in cc->fs.h. -1 when the connection is gone. */
static int cc_handle(cconn *cc)
{
    dtf_wire_hdr *h = &cc->fs.h;
    struct evbuffer *in = bufferevent_get_input(cc->bev);
    creq *r;
    switch (h->type) {
    case DTF_MSG_HELLO_REPLY:
        return handle_hello_reply(cc);
    case DTF_MSG_ERROR: {
        char text[512];
        net_remove_text(in, h->len, text, sizeof text);
        cc_fail(cc, "%s", text);
        return -1;
    }
    case DTF_MSG_PULL_REPLY:
    case DTF_MSG_PUSH_REPLY:
    case DTF_MSG_STEP_REPLY:
    case DTF_MSG_DONE_REPLY:
    case DTF_MSG_STATS_REPLY:
        if (cc->state != CC_READY || !(r = find_req(cc, h->id, h->type))) {
            cc_fail(cc, "%s for no request in flight (id %" PRIu32 ")", dtf_msg_name(h->type),
                    h->id);
            return -1;
        }
        if (h->type == DTF_MSG_PULL_REPLY) {
            /* already in the worker's tensor (cc_start_frame, net_read_body) */
            dtf_wire_body_to_host(r->dst, r->count, h->aux);
        } else if (h->type == DTF_MSG_STATS_REPLY) {
            r->text = malloc((size_t)h->len + 1);
            if (!r->text) {
                cc_fail(cc, "out of memory");
                return -1;
            }
            evbuffer_remove(in, r->text, h->len);
            r->text[h->len] = 0;
        }
        r->done = 1;
        r->reply_step = h->step;
        r->aux = h->aux;
        cc->step = h->step;
        if (h->type == DTF_MSG_PULL_REPLY)
            cc->pulled_step = h->step;
        if (h->type == DTF_MSG_PUSH_REPLY)
            cc->last_push = h->aux;
        return 0;
    default:
        cc_fail(cc, "unexpected %s from the ps", dtf_msg_name(h->type));
        return -1;
    }
}

/* A reply's header is in: a PULL_REPLY must answer a pull in flight with
 * its range; its body then streams into the worker's tensor. */
static int cc_start_frame(cconn *cc)
{
    dtf_wire_hdr *h = &cc->fs.h;
    creq *r;
    if (h->type != DTF_MSG_PULL_REPLY)
        return 0;
    if (cc->state != CC_READY || !(r = find_req(cc, h->id, h->type))) {
        cc_fail(cc, "PULL_REPLY for no pull in flight (id %" PRIu32 ")", h->id);
        return -1;
    }
    if (h->offset != r->off || h->count != r->count) {
        cc_fail(cc, "PULL_REPLY for [%" PRIu64 ", +%" PRIu64 "), asked for [%" PRIu64
                ", +%" PRIu64 ")", h->offset, h->count, r->off, r->count);
        return -1;
    }
    if (dtf_wire_check_dtype(h, cc->cl->cfg.wire_dtype) < 0) {
        cc_fail(cc, "%s", dtf_error());
        return -1;
    }
    cc->fs.dst = dtf_wire_body_dst(r->dst, r->count, h->aux);
    return 0;
}

static void c_read(struct bufferevent *bev, void *arg)
{
    cconn *cc = arg;
    (void)bev;
    while (cc->bev) {
        if (!cc->fs.have_hdr) {
            int r = net_read_hdr(cc->bev, &cc->fs, cc->cl->max_payload);
            if (r == 0)
                return;
            if (r < 0) {
                cc_fail(cc, "bad frame: %s", dtf_error());
                return;
            }
            if (cc_start_frame(cc) < 0)
                return;
        }
        net_read r = net_read_body(cc->bev, &cc->fs);
        if (r == NET_READ_MORE)
            return;
        if (r != NET_READ_DONE) {
            cc_lost(cc, r == NET_READ_CLOSED ? "connection closed" : dtf_error());
            return;
        }
        net_fstate_next(&cc->fs);
        if (cc_handle(cc) < 0)
            return;
    }
}

static void c_event(struct bufferevent *bev, short events, void *arg)
{
    cconn *cc = arg;
    char why[256];
    if (events & BEV_EVENT_CONNECTED) {
        net_tune_socket(bufferevent_getfd(bev), cc->cl->cfg.keepalive);
        bufferevent_set_timeouts(bev, NULL, NULL);
        cc->state = CC_HELLO;
        send_hello(cc);
        return;
    }
    if (events & BEV_EVENT_TIMEOUT) {
        snprintf(why, sizeof why, "%s timed out",
                 cc->state == CC_CONNECTING ? "connecting" : "connection");
    } else if (events & BEV_EVENT_ERROR) {
        int e = EVUTIL_SOCKET_ERROR();
        char err[128];
        snprintf(err, sizeof err, "%s", e ? evutil_socket_error_to_string(e) : "error");
        if (err[0] >= 'A' && err[0] <= 'Z') /* "Connection refused" -> "connection refused" */
            err[0] = (char)(err[0] - 'A' + 'a');
        if (cc->state == CC_CONNECTING)
            snprintf(why, sizeof why, "%s", err);
        else
            snprintf(why, sizeof why, "connection lost (%s)", err);
    } else {
        snprintf(why, sizeof why, "connection closed");
    }
    if (cc->state == CC_CONNECTING || cc->state == CC_HELLO)
        cc_retry_later(cc, why);   /* not up yet, or restarting */
    else
        cc_lost(cc, why);
}

static void on_retry(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    cc_start(arg);
}

static void cc_start(cconn *cc)
{
    dtf_client *cl = cc->cl;
    struct evutil_addrinfo hints, *res = NULL;
    char why[300];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int e = evutil_getaddrinfo(cc->host, cc->port, &hints, &res);
    if (e != 0) {
        /* On Kubernetes a headless service's name resolves only once its
         * pod is up: keep trying. */
        snprintf(why, sizeof why, "%s does not resolve: %s", cc->host, evutil_gai_strerror(e));
        cc_retry_later(cc, why);
        return;
    }
    cc->bev = bufferevent_socket_new(cl->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!cc->bev) {
        evutil_freeaddrinfo(res);
        cc_fail(cc, "out of memory");
        return;
    }
    bufferevent_setcb(cc->bev, c_read, NULL, c_event, cc);
    net_tune_bev(cc->bev, &cc->fs, DTF_WIRE_MAX_TEXT, IO_CHUNK);
    struct timeval tv = net_tv(CONNECT_ATTEMPT);
    bufferevent_set_timeouts(cc->bev, NULL, &tv);
    bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
    cc->state = CC_CONNECTING;
    if (bufferevent_socket_connect(cc->bev, res->ai_addr, (int)res->ai_addrlen) < 0) {
        int err = EVUTIL_SOCKET_ERROR();
        evutil_freeaddrinfo(res);
        snprintf(why, sizeof why, "%s", evutil_socket_error_to_string(err));
        cc_retry_later(cc, why);
        return;
    }
    evutil_freeaddrinfo(res);
}

static int pending(const dtf_client *cl)
{
    for (int i = 0; i < cl->n; i++) {
        const cconn *cc = &cl->c[i];
        if (cc->state == CC_DEAD)
            continue;
        if (cl->connecting ? cc->state != CC_READY : has_undone(cc))
            return 1;
    }
    return 0;
}

static void on_timer(evutil_socket_t fd, short ev, void *arg)
{
    dtf_client *cl = arg;
    (void)fd;
    (void)ev;
    /* A connection being (re)established has its own deadline: wait for it,
     * then give the request its time. */
    double now = dtf_now(), extra = 0;
    for (int i = 0; i < cl->n; i++) {
        cconn *cc = &cl->c[i];
        int opening = cc->state == CC_IDLE || cc->state == CC_CONNECTING ||
                      cc->state == CC_HELLO;
        if (opening && (cl->connecting || has_undone(cc)) && cc->deadline - now > extra)
            extra = cc->deadline - now;
    }
    if (extra > 0) {
        struct timeval tv = net_tv(extra + cl->wait_for);
        evtimer_add(cl->timer, &tv);
        return;
    }
    cl->timed_out = 1;
}

/* Runs the loop until every ps has answered (or is connected, during
 * connect), one fails, or timeout s pass. 0, or -1 with dtf_error(). */
static int cl_wait(dtf_client *cl, double timeout)
{
    cl->wait_for = timeout;
    if (!cl->failed && pending(cl)) {
        struct timeval tv = net_tv(timeout);
        evtimer_add(cl->timer, &tv);
        while (!cl->failed && !cl->timed_out && pending(cl)) {
            /* checked each time the loop wakes: a reply, a reconnect's
             * backoff, a timeout (a signal alone does not wake it) */
            if (cl->cfg.stop && *cl->cfg.stop) {
                cl->failed = 1;
                snprintf(cl->err, sizeof cl->err, "stopped by signal %d while waiting for %s",
                         (int)*cl->cfg.stop, cl->connecting ? "the ps tasks to come up" : "the ps tasks");
                break;
            }
            if (event_base_loop(cl->base, EVLOOP_ONCE) < 0) {
                cl->failed = 1;
                snprintf(cl->err, sizeof cl->err, "event loop failed");
                break;
            }
        }
        evtimer_del(cl->timer);
    }
    if (cl->timed_out && !cl->failed) {
        /* Close what did not answer: a late reply must not be taken for
         * the next call's. */
        for (int i = 0; i < cl->n; i++) {
            cconn *cc = &cl->c[i];
            if (cc->state == CC_DEAD || cc->state == CC_DOWN)
                continue;
            if (cl->connecting && cc->state != CC_READY) {
                cc_fail(cc, "not connected within %g s", timeout);
                continue;
            }
            for (int k = 0; k < CC_MAXREQ; k++)
                if (cc->req[k].used && !cc->req[k].done) {
                    cc_fail(cc, "no reply to %s within %g s%s", dtf_msg_name(cc->req[k].type),
                            timeout, cc->state == CC_READY ? "" : " (reconnecting)");
                    break;
                }
        }
    }
    cl->timed_out = 0;
    if (cl->failed) {
        cl->failed = 0;
        dtf_seterr("%s", cl->err);
        return -1;
    }
    return 0;
}

static void clear_reqs(dtf_client *cl)
{
    for (int i = 0; i < cl->n; i++)
        for (int k = 0; k < CC_MAXREQ; k++) {
            free(cl->c[i].req[k].text);
            memset(&cl->c[i].req[k], 0, sizeof(creq));
        }
}

/* Starts a call: a dead connection fails it at once; one that dropped
 * since the last call is reconnected (its requests go out after HELLO) or,
 * without reconnect_timeout, fails it. */
static int begin_op(dtf_client *cl)
{
    if (cl->in_flight) {
        dtf_seterr("an exchange is in flight: exchange_finish() it before another call");
        return -1;
    }
    clear_reqs(cl);
    for (int i = 0; i < cl->n; i++) {
        cconn *cc = &cl->c[i];
        if (cc->state == CC_DOWN) {
            if (cl->cfg.reconnect_timeout > 0) {
                char why[sizeof cc->why];
                memcpy(why, cc->why, sizeof why);
                cc_reconnect(cc, why);
            } else {
                cc->state = CC_DEAD;
            }
        }
        if (cc->state == CC_DEAD) {
            dtf_seterr("%s", cc->err);
            return -1;
        }
    }
    return 0;
}

static creq *add_req(cconn *cc, int type, uint64_t off, uint64_t count, int64_t step,
                     const float *src, dtf_storage *keep, float *dst)
{
    creq *r = NULL;
    for (int k = 0; k < CC_MAXREQ && !r; k++)
        if (!cc->req[k].used)
            r = &cc->req[k];
    /* begin_op cleared the slots and a call adds at most two. */
    r->used = 1;
    r->id = ++cc->next_id;
    r->type = (uint8_t)type;
    r->off = off;
    r->count = count;
    r->step = step;
    r->src = src;
    r->keep = keep;
    r->dst = dst;
    if (cc->state == CC_READY)
        send_req(cc, r);   /* otherwise sent once HELLO_REPLY arrives */
    return r;
}

dtf_client *dtf_client_connect(const dtf_client_config *cfg)
{
    if (cfg->naddrs < 1) {
        dtf_seterr("no ps addresses");
        return NULL;
    }
    if (cfg->token_len > DTF_WIRE_MAX_TOKEN) {
        dtf_seterr("token of %zu bytes is over %d bytes", cfg->token_len, DTF_WIRE_MAX_TOKEN);
        return NULL;
    }
    net_ignore_sigpipe();
    dtf_client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        dtf_seterr("out of memory");
        return NULL;
    }
    cl->cfg = *cfg;
    cl->cfg.addrs = NULL;
    cl->max_payload = cfg->max_payload ? cfg->max_payload : DTF_WIRE_MAX_PAYLOAD;
    cl->n = cfg->naddrs;
    cl->c = calloc((size_t)cl->n, sizeof *cl->c);
    cl->token = malloc(cfg->token_len + 1);
    cl->base = event_base_new();
    cl->timer = cl->base ? evtimer_new(cl->base, on_timer, cl) : NULL;
    if (cfg->wire_dtype == DTF_DTYPE_BF16)
        cl->wire_buf = malloc(dtf_wire_body_len(cfg->P, DTF_DTYPE_BF16) + 1);
    if (!cl->c || !cl->token || !cl->timer || (cfg->wire_dtype == DTF_DTYPE_BF16 && !cl->wire_buf)) {
        dtf_client_free(cl);
        dtf_seterr("out of memory");
        return NULL;
    }
    if (cfg->token_len)
        memcpy(cl->token, cfg->token, cfg->token_len);
    cl->token[cfg->token_len] = 0;
    double now = dtf_now();
    for (int i = 0; i < cl->n; i++) {
        cconn *cc = &cl->c[i];
        cc->cl = cl;
        cc->i = i;
        cc->last_push = -1;
        cc->pulled_step = cc->used_step = cc->grad_step = -1;
        snprintf(cc->addr, sizeof cc->addr, "%s", cfg->addrs[i]);
        int port;
        if (dtf_parse_hostport(cfg->addrs[i], cc->host, sizeof cc->host, &port) < 0) {
            dtf_seterr("ps %d address %s", i, dtf_error());
            dtf_client_free(cl);
            return NULL;
        }
        snprintf(cc->port, sizeof cc->port, "%d", port);
        uint64_t off, count;
        dtf_shard_range(cfg->P, cl->n, i, &off, &count);
        if (count * 4 > cl->max_payload) {
            dtf_seterr("shard %d of %" PRIu64 " floats does not fit a frame of %zu bytes "
                       "(use more ps tasks or raise max_frame)", i, count, cl->max_payload);
            dtf_client_free(cl);
            return NULL;
        }
        cc->retry = evtimer_new(cl->base, on_retry, cc);
        if (!cc->retry) {
            dtf_client_free(cl);
            dtf_seterr("out of memory");
            return NULL;
        }
        cc->deadline = now + cfg->connect_timeout;
        cc->give_up_after = cfg->connect_timeout;
        cc->backoff = BACKOFF_FIRST;
    }
    cl->connecting = 1;
    for (int i = 0; i < cl->n; i++)
        cc_start(&cl->c[i]);
    if (cl_wait(cl, cfg->timeout) < 0) {
        dtf_client_free(cl);
        return NULL;
    }
    cl->connecting = 0;
    uint64_t end = 0;
    for (int i = 0; i < cl->n; i++) {
        if (cl->c[i].off != end) {
            dtf_seterr("the ps ranges do not tile [0, %" PRIu64 "): ps %d starts at %" PRIu64
                       ", expected %" PRIu64, cfg->P, i, cl->c[i].off, end);
            dtf_client_free(cl);
            return NULL;
        }
        end += cl->c[i].count;
    }
    if (end != cfg->P) {
        dtf_seterr("the ps ranges end at %" PRIu64 ", not at P = %" PRIu64, end, cfg->P);
        dtf_client_free(cl);
        return NULL;
    }
    return cl;
}

int dtf_client_nps(const dtf_client *c)
{
    return c->n;
}

void dtf_client_range(const dtf_client *c, int i, uint64_t *offset, uint64_t *count)
{
    *offset = c->c[i].off;
    *count = c->c[i].count;
}

int dtf_client_sync(const dtf_client *c)
{
    return c->sync;
}

int dtf_client_last_push(const dtf_client *c, int i)
{
    return c->c[i].last_push;
}

/* The step a gradient for shard cc is tagged with: the shard's own step
 * when its slice was last pulled (what the gradient was computed from), so
 * that shards whose steps differ, one restored from an older checkpoint,
 * each aggregate it for the right step; step before any pull. */
static int64_t shard_step(const cconn *cc, int64_t step)
{
    return cc->pulled_step >= 0 ? cc->pulled_step : step;
}

/* A pull that landed in the worker's own parameters: the next gradient
 * comes from them (overlap's bookkeeping starts again from there). */
static void pulled_into_params(dtf_client *c)
{
    for (int i = 0; i < c->n; i++) {
        c->c[i].used_step = c->c[i].pulled_step;
        c->c[i].grad_step = -1;
    }
}

static double pull_timeout(const dtf_client *c, int64_t min_step)
{
    double t = c->cfg.timeout;
    if (min_step > 0 && c->cfg.wait_timeout > t)
        t = c->cfg.wait_timeout;
    return t;
}

int dtf_client_pull(dtf_client *c, float *params, int64_t min_step, int64_t *global_step)
{
    if (begin_op(c) < 0)
        return -1;
    creq *r0 = NULL;
    for (int i = 0; i < c->n; i++) {
        cconn *cc = &c->c[i];
        creq *r = add_req(cc, DTF_MSG_PULL, cc->off, cc->count, min_step, NULL, NULL,
                          params + cc->off);
        if (i == 0)
            r0 = r;
    }
    if (cl_wait(c, pull_timeout(c, min_step)) < 0)
        return -1;
    pulled_into_params(c);
    *global_step = r0->reply_step;
    return 0;
}

int dtf_client_push(dtf_client *c, const float *grads, dtf_storage *keep,
                    int64_t step, int64_t *global_step)
{
    if (begin_op(c) < 0)
        return -1;
    creq *r0 = NULL;
    for (int i = 0; i < c->n; i++) {
        cconn *cc = &c->c[i];
        creq *r = add_req(cc, DTF_MSG_PUSH, cc->off, cc->count, shard_step(cc, step),
                          grads + cc->off, keep, NULL);
        if (i == 0)
            r0 = r;
    }
    if (cl_wait(c, c->cfg.timeout) < 0)
        return -1;
    *global_step = r0->reply_step;
    return 0;
}

int dtf_client_push_pull(dtf_client *c, const float *grads, dtf_storage *keep,
                         float *params, int64_t step, int64_t *global_step)
{
    if (begin_op(c) < 0)
        return -1;
    creq *r0 = NULL;
    int64_t min_step = 0;
    for (int i = 0; i < c->n; i++) {
        cconn *cc = &c->c[i];
        /* TCP keeps the order and the ps handles a connection's frames in
         * order: the pull sees this push applied (or summed, in sync mode,
         * where it waits for the step to complete). */
        int64_t s = shard_step(cc, step);
        add_req(cc, DTF_MSG_PUSH, cc->off, cc->count, s, grads + cc->off, keep, NULL);
        creq *r = add_req(cc, DTF_MSG_PULL, cc->off, cc->count, c->sync ? s + 1 : 0, NULL,
                          NULL, params + cc->off);
        if (c->sync && s + 1 > min_step)
            min_step = s + 1;
        if (i == 0)
            r0 = r;
    }
    if (cl_wait(c, pull_timeout(c, min_step)) < 0)
        return -1;
    pulled_into_params(c);
    *global_step = r0->reply_step;
    return 0;
}

/* ======================================================================
 * The exchange thread
 * ==================================================================== */

static void on_wake(evutil_socket_t fd, short ev, void *arg)
{
    char b[64];
    (void)ev;
    (void)arg;
    while (read(fd, b, sizeof b) > 0) {
    }
}

static void *x_main(void *arg)
{
    dtf_client *cl = arg;
    xthread *x = &cl->x;
    pthread_mutex_lock(&x->mu);
    for (;;) {
        while (!x->running && !x->quit)
            pthread_cond_wait(&x->cv, &x->mu);
        if (x->quit)
            break;
        pthread_mutex_unlock(&x->mu);
        /* A failure waits for exchange_finish, which reports it; so does
         * a timeout (the round's timeout runs from there, as push_pull's). */
        while (!atomic_load(&x->back) && !cl->failed && pending(cl))
            if (event_base_loop(cl->base, EVLOOP_ONCE) < 0)
                break;
        pthread_mutex_lock(&x->mu);
        x->running = 0;
        pthread_cond_broadcast(&x->cv);
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* Starts the thread on the first exchange: 0, or -1 (the rounds then move
 * only while exchange_finish waits, as without overlap). Every signal is
 * blocked in it, so a handler runs on the worker's thread as before. */
static int x_start(dtf_client *cl)
{
    xthread *x = &cl->x;
    if (x->started)
        return 0;
    if (pipe2(x->wake, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    x->wake_ev = event_new(cl->base, x->wake[0], EV_READ | EV_PERSIST, on_wake, cl);
    if (!x->wake_ev || event_add(x->wake_ev, NULL) < 0)
        goto fail;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&x->tid, NULL, x_main, cl);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        pthread_cond_destroy(&x->cv);
        pthread_mutex_destroy(&x->mu);
        goto fail;
    }
    x->started = 1;
    return 0;
fail:
    if (x->wake_ev)
        event_free(x->wake_ev);
    x->wake_ev = NULL;
    close(x->wake[0]);
    close(x->wake[1]);
    return -1;
}

static void x_hand_over(dtf_client *cl)
{
    xthread *x = &cl->x;
    if (!x->started)
        return;
    pthread_mutex_lock(&x->mu);
    atomic_store(&x->back, 0);
    x->running = 1;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

/* The loop comes back to the worker's thread (a byte in the pipe ends the
 * thread's wait at once), with the log lines the thread held. */
static void x_take_back(dtf_client *cl)
{
    xthread *x = &cl->x;
    if (!x->started)
        return;
    pthread_mutex_lock(&x->mu);
    if (x->running) {
        atomic_store(&x->back, 1);
        ssize_t w = write(x->wake[1], "", 1); /* a full pipe already wakes it */
        (void)w;
        while (x->running)
            pthread_cond_wait(&x->cv, &x->mu);
    }
    int n = x->nlog, dropped = x->dropped;
    x->nlog = x->dropped = 0;
    pthread_mutex_unlock(&x->mu);
    for (int i = 0; i < n; i++)
        client_log(cl, x->log[i].level, "%s", x->log[i].msg);
    if (dropped)
        client_log(cl, DTF_LOG_WARNING, "(%d more lines from the exchange thread)", dropped);
}

static void x_stop(dtf_client *cl)
{
    xthread *x = &cl->x;
    if (!x->started)
        return;
    x_take_back(cl);
    pthread_mutex_lock(&x->mu);
    x->quit = 1;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
    pthread_join(x->tid, NULL);
    pthread_cond_destroy(&x->cv);
    pthread_mutex_destroy(&x->mu);
    event_free(x->wake_ev);
    close(x->wake[0]);
    close(x->wake[1]);
    x->started = 0;
}

/* Overlap (async only): the round of step k goes out and the call returns
 * at once; the exchange thread runs the loop while the worker computes
 * step k+1, and dtf_client_exchange_finish takes it back and waits until
 * the round is in. Each connection gets the PULL before the PUSH, so the ps
 * answers the pull at once, without this gradient, and the two bodies
 * cross the link in opposite directions at the same time instead of one
 * after the other. The gradient is copied first (bf16: narrowed): the
 * worker's own buffer is rewritten by the next step while a reconnect may
 * re-send it.
 *
 * Its tag is the step of the parameters it was computed from. The caller
 * puts each round's pull into its parameters after exchange_finish, before
 * it computes again, while the gradient it pushes next was computed before
 * that, on the previous round's: so a finish moves used_step (what the
 * parameters are about to hold) into grad_step (what the next push came
 * from). */
int dtf_client_exchange_start(dtf_client *c, const float *grads, float *params, int64_t step)
{
    if (c->sync) {
        dtf_seterr("exchange_start: the ps tasks train synchronously, where a pull must "
                   "wait for its step (push_pull)");
        return -1;
    }
    if (begin_op(c) < 0)
        return -1;
    int bf16 = c->cfg.wire_dtype == DTF_DTYPE_BF16;
    if (!bf16 && !c->push_buf &&
        !(c->push_buf = malloc(c->cfg.P ? (size_t)c->cfg.P * sizeof(float) : 1))) {
        dtf_seterr("out of memory for a gradient");
        return -1;
    }
    /* The pulls go out before the copy: the replies start that much sooner. */
    for (int i = 0; i < c->n; i++)
        add_req(&c->c[i], DTF_MSG_PULL, c->c[i].off, c->c[i].count, 0, NULL, NULL,
                params + c->c[i].off);
    /* bf16: narrowed once, straight from the worker's gradient; wire_buf is
     * what the sockets and a reconnect's re-send read from then */
    if (bf16)
        dtf_wire_put_body(c->wire_buf, grads, (size_t)c->cfg.P, DTF_DTYPE_BF16);
    else
        memcpy(c->push_buf, grads, (size_t)c->cfg.P * sizeof(float));
    for (int i = 0; i < c->n; i++) {
        cconn *cc = &c->c[i];
        int64_t tag = cc->grad_step >= 0 ? cc->grad_step : shard_step(cc, step);
        add_req(cc, DTF_MSG_PUSH, cc->off, cc->count, tag, bf16 ? NULL : c->push_buf + cc->off,
                NULL, NULL);
    }
    if (x_start(c) < 0)
        event_base_loop(c->base, EVLOOP_NONBLOCK); /* no thread: what the sockets take now */
    c->in_flight = 1;
    x_hand_over(c);
    return 0;
}

int dtf_client_exchange_finish(dtf_client *c, int64_t *global_step)
{
    if (!c->in_flight) {
        dtf_seterr("exchange_finish: no exchange in flight (exchange_start first)");
        return -1;
    }
    x_take_back(c);
    c->in_flight = 0;
    if (cl_wait(c, c->cfg.timeout) < 0)
        return -1;
    for (int i = 0; i < c->n; i++) {
        cconn *cc = &c->c[i];
        cc->grad_step = cc->used_step >= 0 ? cc->used_step : cc->pulled_step;
        cc->used_step = cc->pulled_step;
    }
    *global_step = c->c[0].req[0].reply_step; /* ps 0's PULL, added first */
    return 0;
}

int dtf_client_get_step(dtf_client *c, int64_t *global_step)
{
    if (begin_op(c) < 0)
        return -1;
    creq *r = add_req(&c->c[0], DTF_MSG_GET_STEP, 0, 0, 0, NULL, NULL, NULL);
    if (cl_wait(c, c->cfg.timeout) < 0)
        return -1;
    *global_step = r->reply_step;
    return 0;
}

int dtf_client_done(dtf_client *c, int64_t step)
{
    if (begin_op(c) < 0)
        return -1;
    for (int i = 0; i < c->n; i++)
        add_req(&c->c[i], DTF_MSG_WORKER_DONE, 0, 0, step, NULL, NULL, NULL);
    return cl_wait(c, c->cfg.timeout);
}

int dtf_client_stats(dtf_client *c, char **texts)
{
    if (begin_op(c) < 0)
        return -1;
    for (int i = 0; i < c->n; i++)
        add_req(&c->c[i], DTF_MSG_STATS, 0, 0, 0, NULL, NULL, NULL);
    if (cl_wait(c, c->cfg.timeout) < 0)
        return -1;
    for (int i = 0; i < c->n; i++)
        for (int k = 0; k < CC_MAXREQ; k++) {
            creq *q = &c->c[i].req[k];
            if (q->used && q->type == DTF_MSG_STATS) {
                texts[i] = q->text;
                q->text = NULL;
            }
        }
    return 0;
}

void dtf_client_free(dtf_client *c)
{
    if (!c)
        return;
    x_stop(c); /* before the loop and the connections it runs go */
    if (c->c) {
        clear_reqs(c);
        for (int i = 0; i < c->n; i++) {
            cc_close(&c->c[i]);
            if (c->c[i].retry)
                event_free(c->c[i].retry);
        }
    }
    if (c->timer)
        event_free(c->timer);
    if (c->base)
        event_base_free(c->base);
    free(c->c);
    free(c->token);
    free(c->wire_buf); /* after the output buffers that referenced it */
    free(c->push_buf);
    free(c);
}
