/* net_server: the ps's libevent server (net.h): HELLO and the token, PULL
 * (parked until its step in sync mode), PUSH into the shard, the global step,
 * WORKER_DONE and STATS; caps on frames, connections and queued replies.
 *
 * A peer whose queued replies pass the server's out_mark (2 shards +
 * 256 KiB) is not read from until it has read them (backpressure). */
#include "net.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "net_io.h"
#include "pswatch.h"
#include "util.h"
#include "wire.h"

#define SRV_READ_CHUNK (16u << 10) /* the ps reads at most this per callback: float
                                    * bodies bypass the input buffer (net_read_body), so
                                    * more would only let a flood of small frames in */
#define SRV_TEXT_MAX 4096          /* the longest text (ERROR) the ps takes from a peer */
#define OUT_SLACK (256u << 10)     /* output mark: 2 shards (a worker's pull in flight
                                    * and one more) plus this */
#define QUEUE_SLACK (4u << 20)     /* all connections' queued replies: 2 shards per
                                    * worker (and 2 more) plus this */
#define CLOSE_GRACE 2.0            /* s to flush an ERROR frame before closing */
#define FINISH_GRACE 2.0           /* s to flush the last replies once all workers are done */
#define MAX_PARKED 8               /* PULLs one connection may have waiting for a step */

static void addr_str(const struct sockaddr *sa, char *buf, size_t n)
{
    char host[48] = "?"; /* INET6_ADDRSTRLEN is 46 */
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(buf, n, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        port = ntohs(in6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) { /* an IPv4 peer of a dual-stack socket */
            evutil_inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
            snprintf(buf, n, "%s:%d", host, port);
        } else {
            evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            snprintf(buf, n, "[%s]:%d", host, port);
        }
    } else {
        snprintf(buf, n, "?");
    }
}

static void human_bytes(double b, char *buf, size_t n)
{
    if (b < 1024)
        snprintf(buf, n, "%.0f B", b);
    else if (b < 1024.0 * 1024)
        snprintf(buf, n, "%.1f KB", b / 1024);
    else if (b < 1024.0 * 1024 * 1024)
        snprintf(buf, n, "%.1f MB", b / (1024.0 * 1024));
    else
        snprintf(buf, n, "%.1f GB", b / (1024.0 * 1024 * 1024));
}

typedef struct sconn sconn;

typedef struct parked {
    struct parked *next;
    sconn *c;
    uint32_t id;
    uint64_t off, count;
    int64_t min_step;
} parked;

struct sconn {
    dtf_server *srv;
    sconn *prev, *next;
    struct bufferevent *bev;
    char peer[64];       /* "127.0.0.1:5555" */
    char who[112];       /* "worker 1 (127.0.0.1:5555)" once known */
    int role, index;     /* from HELLO */
    int hello;           /* HELLO accepted */
    int closing;         /* flushing an ERROR frame, reading stopped */
    int paused;          /* reading stopped: our output is over the mark */
    int nparked;         /* its pulls waiting for a step (capped) */
    struct evbuffer_cb_entry *out_cb; /* counts its output into srv->queued */
    int64_t push_step;   /* sync: the step that includes its latest PUSH; -1 */
    net_fstate fs;
    float *body;         /* a PUSH body lands here (the shard's count floats) */
};

struct dtf_server {
    dtf_server_config cfg;
    char *token;
    char host[256];
    int port;
    dtf_shard *shard;
    size_t max_payload;
    size_t out_mark;     /* stop reading from a peer whose replies pile up over this */
    size_t queued;       /* bytes in every connection's output buffer */
    size_t queue_budget; /* over this, peers with replies queued are not read */
    size_t queued_peak;
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *sig_term, *sig_int, *tick, *finish_timer;
    sconn *conns;
    int nconns;
    parked *parked, **parked_tail;
    int finishing;
    char reason[32];
    double started, last_wait_log;
    uint64_t accepted, refused, bad_peers, bytes_in, bytes_out, frames_in, frames_out;
    uint64_t pauses;     /* times a peer's reading was stopped for backpressure */
    double first_done;   /* when the first worker said WORKER_DONE; 0: none yet */
    double *absent;      /* per worker: seen with no connection since; 0: connected */
    uint8_t *wire_buf;   /* bf16 wire: a PULL_REPLY body, narrowed from the shard */
};

static void DTF_PRINTF(3, 4) slog(dtf_server *s, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    net_vlog(s->cfg.log, s->cfg.log_ud, level, fmt, ap);
    va_end(ap);
}

static void conn_free(sconn *c, int level, const char *reason);
static void maybe_finish(dtf_server *s);

static void unpark_conn(dtf_server *s, sconn *c)
{
    parked **pp = &s->parked;
    s->parked_tail = &s->parked;
    while (*pp) {
        parked *p = *pp;
        if (p->c == c) {
            *pp = p->next;
            c->nparked--;
            free(p);
        } else {
            pp = &p->next;
            s->parked_tail = &p->next;
        }
    }
}

/* Frees the connection; logs "closed connection from WHO: reason" unless
 * reason is NULL (already logged). */
static void conn_free(sconn *c, int level, const char *reason)
{
    dtf_server *s = c->srv;
    if (reason)
        slog(s, level, "ps %d: closed connection from %s: %s", s->shard->cfg.index,
             c->who, reason);
    unpark_conn(s, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->out_cb)
        evbuffer_remove_cb_entry(out, c->out_cb);
    s->queued -= evbuffer_get_length(out);
    bufferevent_free(c->bev);
    free(c->body);
    free(c);
    if (s->finishing)
        maybe_finish(s);
}

/* A reply: sent at once when the socket takes it (net_send_direct). */
static void send_frame(sconn *c, dtf_wire_hdr *h, const void *payload, uint32_t len)
{
    dtf_server *s = c->srv;
    uint8_t hb[DTF_WIRE_HDR];
    h->len = len;
    dtf_wire_encode_hdr(hb, h);
    net_send_direct(c->bev, hb, payload, len, NET_BODY_BYTES, NULL);
    s->frames_out++;
    s->bytes_out += DTF_WIRE_HDR + (uint64_t)len;
}

/* A misbehaving or mismatched peer: log, send it an ERROR frame naming
 * the problem, stop reading, and close once the frame is flushed. */
static void conn_fail(sconn *c, uint32_t id, const char *msg)
{
    dtf_server *s = c->srv;
    s->bad_peers++;
    slog(s, DTF_LOG_WARNING, "ps %d: closing connection from %s: %s",
         s->shard->cfg.index, c->who, msg);
    /* Queued, not sent directly: the write callback that fires once the
     * output has drained is what closes the connection. */
    size_t n = strlen(msg);
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_ERROR, id, 0, 0, s->shard->step,
                                   (uint32_t)(n < 1000 ? n : 1000));
    uint8_t hb[DTF_WIRE_HDR];
    dtf_wire_encode_hdr(hb, &h);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, hb, DTF_WIRE_HDR);
    evbuffer_add(out, msg, h.len);
    s->frames_out++;
    s->bytes_out += DTF_WIRE_HDR + (uint64_t)h.len;
    c->closing = 1;
    unpark_conn(s, c);
    bufferevent_disable(c->bev, EV_READ);
    struct timeval tv = net_tv(CLOSE_GRACE);
    bufferevent_set_timeouts(c->bev, NULL, &tv);
}

static void reply_pull(sconn *c, uint32_t id, uint64_t off, uint64_t count)
{
    dtf_server *s = c->srv;
    dtf_shard *sh = s->shard;
    uint8_t hb[DTF_WIRE_HDR];
    int dt = s->cfg.wire_dtype;
    size_t len = dtf_wire_body_len(count, dt);
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_PULL_REPLY, id, off, count, sh->step, (uint32_t)len);
    h.aux = (uint8_t)dt;
    dtf_wire_encode_hdr(hb, &h);
    /* Straight from the shard when the socket takes it; what it does not
     * is copied, not referenced: the parameters change with the next push,
     * possibly before the rest has left. A bf16 body is narrowed first. */
    const float *src = sh->params + (off - sh->offset);
    if (dt == DTF_DTYPE_BF16) {
        dtf_wire_put_body(s->wire_buf, src, (size_t)count, dt);
        net_send_direct(c->bev, hb, s->wire_buf, len, NET_BODY_BYTES, NULL);
    } else {
        net_send_direct(c->bev, hb, src, len, NET_BODY_FLOATS, NULL);
    }
    s->frames_out++;
    s->bytes_out += DTF_WIRE_HDR + len;
}

/* Answers the parked pulls the current step satisfies (all when force). */
static void answer_parked(dtf_server *s, int force)
{
    parked **pp = &s->parked;
    s->parked_tail = &s->parked;
    while (*pp) {
        parked *p = *pp;
        if (force || s->shard->step >= p->min_step) {
            *pp = p->next;
            p->c->nparked--;
            reply_pull(p->c, p->id, p->off, p->count);
            free(p);
        } else {
            pp = &p->next;
            s->parked_tail = &p->next;
        }
    }
}

static void stepped(dtf_server *s)
{
    if (s->shard->have == 0)
        s->last_wait_log = 0;
    answer_parked(s, 0);
    if (s->cfg.on_step)
        s->cfg.on_step(s->cfg.on_step_ud, s->shard);
}

static void maybe_finish(dtf_server *s)
{
    for (sconn *c = s->conns; c; c = c->next)
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
            return;
    event_base_loopbreak(s->base);
}

static void start_finish(dtf_server *s, const char *reason)
{
    if (s->finishing)
        return;
    s->finishing = 1;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    answer_parked(s, 1); /* nobody is going to push them forward now */
    evconnlistener_disable(s->lis);
    struct timeval tv = net_tv(FINISH_GRACE);
    evtimer_add(s->finish_timer, &tv);
    maybe_finish(s);
}

static int handle_hello(sconn *c)
{
    dtf_server *s = c->srv;
    dtf_shard *sh = s->shard;
    dtf_wire_hdr *h = &c->fs.h;
    uint8_t buf[DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN];
    dtf_wire_hello m;
    char msg[256];
    if (c->hello) {
        conn_fail(c, h->id, "second HELLO on one connection");
        return -1;
    }
    evbuffer_remove(bufferevent_get_input(c->bev), buf, h->len);
    dtf_wire_admit a = {s->token, s->cfg.token_len, s->cfg.checksum, sh->cfg.P,
                        (uint32_t)sh->cfg.workers, s->cfg.wire_dtype};
    int admitted = dtf_wire_admit_hello(buf, h->len, &a, &m);
    if (admitted != -1) /* decoded: the log names the peer by its role and index */
        snprintf(c->who, sizeof c->who, "%s %" PRIu32 " (%s)",
                 m.role == DTF_ROLE_WORKER ? "worker" : "observer", m.index, c->peer);
    if (admitted < 0) {
        snprintf(msg, sizeof msg, "%s", dtf_error());
        conn_fail(c, h->id, msg);
        return -1;
    }
    for (sconn *o = s->conns; o; o = o->next)
        if (o != c && o->hello && !o->closing && o->role == DTF_ROLE_WORKER &&
            m.role == DTF_ROLE_WORKER && (uint32_t)o->index == m.index)
            slog(s, DTF_LOG_WARNING, "ps %d: worker %" PRIu32 " connected again from %s "
                 "while %s is still open", sh->cfg.index, m.index, c->peer, o->peer);
    c->hello = 1;
    c->role = m.role;
    c->index = (int)m.index;
    if (m.role == DTF_ROLE_WORKER)
        dtf_shard_join(sh, c->index); /* the admission checked the index */
    struct timeval tv = net_tv(s->cfg.idle_timeout);
    bufferevent_set_timeouts(c->bev, s->cfg.idle_timeout > 0 ? &tv : NULL, NULL);

    dtf_wire_hello_reply r = {
        .index = (uint32_t)sh->cfg.index, .nps = (uint32_t)sh->cfg.nps, .P = sh->cfg.P,
        .workers = (uint32_t)sh->cfg.workers, .replicas = (uint32_t)sh->cfg.replicas,
    };
    uint8_t rb[DTF_WIRE_HELLO_REPLY_LEN];
    dtf_wire_encode_hello_reply(rb, sizeof rb, &r);
    dtf_wire_hdr rh = dtf_wire_make(DTF_MSG_HELLO_REPLY, h->id, sh->offset, sh->count,
                                    sh->step, 0);
    rh.aux = dtf_wire_hello_reply_aux(sh->cfg.sync, s->token != NULL, s->cfg.wire_dtype);
    send_frame(c, &rh, rb, sizeof rb);
    slog(s, DTF_LOG_INFO, "ps %d: %s joined at step %" PRId64, sh->cfg.index, c->who, sh->step);
    return 0;
}

/* Checks a frame from its header, before its body arrives: a PUSH must
 * come from a worker after HELLO and cover the shard's range; its body then
 * streams into c->body. 0, or -1 when the connection is closing. */
static int start_frame(sconn *c)
{
    dtf_shard *sh = c->srv->shard;
    dtf_wire_hdr *h = &c->fs.h;
    char msg[256];
    if (!c->hello && h->type != DTF_MSG_HELLO) {
        /* before its body: a stranger's 60 MB frame is not read at all */
        snprintf(msg, sizeof msg, "%s before HELLO", dtf_msg_name(h->type));
        conn_fail(c, h->id, msg);
        return -1;
    }
    switch (h->type) {
    case DTF_MSG_HELLO: case DTF_MSG_PULL: case DTF_MSG_GET_STEP: case DTF_MSG_STATS:
        return 0; /* no body, or a short one (HELLO); checked by its handler */
    case DTF_MSG_WORKER_DONE:
        if (c->role == DTF_ROLE_WORKER)
            return 0;
        conn_fail(c, h->id, "WORKER_DONE from an observer");
        return -1;
    case DTF_MSG_ERROR:
        if (h->len <= SRV_TEXT_MAX)
            return 0;
        snprintf(msg, sizeof msg, "ERROR text of %" PRIu32 " bytes (at most %d)", h->len,
                 SRV_TEXT_MAX);
        conn_fail(c, h->id, msg);
        return -1;
    case DTF_MSG_PUSH:
        break;
    default:
        /* a reply's body (up to a whole frame) is never buffered here */
        snprintf(msg, sizeof msg, "unexpected %s from a client", dtf_msg_name(h->type));
        conn_fail(c, h->id, msg);
        return -1;
    }
    if (c->role != DTF_ROLE_WORKER) {
        conn_fail(c, h->id, "PUSH from an observer");
        return -1;
    }
    if (h->offset != sh->offset || h->count != sh->count) {
        snprintf(msg, sizeof msg,
                 "PUSH of [%" PRIu64 ", %" PRIu64 ") is not this shard's range [%" PRIu64
                 ", %" PRIu64 ")", h->offset, h->offset + h->count, sh->offset,
                 sh->offset + sh->count);
        conn_fail(c, h->id, msg);
        return -1;
    }
    if (dtf_wire_check_dtype(h, c->srv->cfg.wire_dtype) < 0) {
        conn_fail(c, h->id, dtf_error());
        return -1;
    }
    if (!c->body && !(c->body = malloc(sh->count ? (size_t)sh->count * sizeof(float) : 1))) {
        conn_fail(c, h->id, "out of memory for a gradient");
        return -1;
    }
    c->fs.dst = dtf_wire_body_dst(c->body, sh->count, h->aux);
    return 0;
}

/* ---- requests (start_frame has checked the type and the sender) --------------
 * Each returns 0, or -1 when the connection is closing or gone (do not
 * touch c). The shard's rules are ps.c's; these only frame and reply. */

static int handle_pull(sconn *c)
{
    dtf_server *s = c->srv;
    dtf_wire_hdr *h = &c->fs.h;
    int64_t wait_for;
    int ready = dtf_shard_pull(s->shard, h->offset, h->count, h->step, c->push_step, &wait_for);
    if (ready < 0) {
        conn_fail(c, h->id, dtf_error());
        return -1;
    }
    c->push_step = -1;
    if (ready) {
        reply_pull(c, h->id, h->offset, h->count);
        return 0;
    }
    /* A worker has one pull in flight per call; a peer that parks more
     * is flooding (each would become a whole shard of output). */
    if (c->nparked >= MAX_PARKED) {
        char msg[64];
        snprintf(msg, sizeof msg, "more than %d PULLs waiting for a step", MAX_PARKED);
        conn_fail(c, h->id, msg);
        return -1;
    }
    parked *p = calloc(1, sizeof *p);
    if (!p) {
        conn_free(c, DTF_LOG_ERROR, "out of memory");
        return -1;
    }
    *p = (parked){.c = c, .id = h->id, .off = h->offset, .count = h->count, .min_step = wait_for};
    c->nparked++;
    *s->parked_tail = p;
    s->parked_tail = &p->next;
    return 0;
}

static int handle_push(sconn *c)
{
    dtf_server *s = c->srv;
    dtf_shard *sh = s->shard;
    dtf_wire_hdr *h = &c->fs.h;
    dtf_push_outcome o;
    dtf_wire_body_to_host(c->body, h->count, h->aux); /* start_frame streamed it here */
    if (dtf_shard_push(sh, c->index, h->id, h->step, c->body, &o) < 0) {
        conn_fail(c, h->id, dtf_error());
        return -1;
    }
    if (o.result == DTF_PUSH_APPLIED || o.result == DTF_PUSH_PENDING)
        dtf_pswatch_applied(s->cfg.watch, o.behind);
    dtf_pswatch_step(s->cfg.watch, sh); /* step, updates, stale, duplicates */
    c->push_step = o.includes;
    dtf_wire_hdr rh = dtf_wire_make(DTF_MSG_PUSH_REPLY, h->id, 0, 0, sh->step, 0);
    rh.aux = (uint8_t)o.result;
    send_frame(c, &rh, NULL, 0);
    if (o.advanced)
        stepped(s);
    return 0;
}

static int handle_get_step(sconn *c)
{
    dtf_wire_hdr rh = dtf_wire_make(DTF_MSG_STEP_REPLY, c->fs.h.id, 0, 0, c->srv->shard->step, 0);
    send_frame(c, &rh, NULL, 0);
    return 0;
}

static int handle_done(sconn *c)
{
    dtf_server *s = c->srv;
    dtf_shard *sh = s->shard;
    dtf_wire_hdr *h = &c->fs.h;
    int newly;
    int advanced = dtf_shard_worker_done(sh, c->index, &newly);
    if (advanced < 0) {
        conn_fail(c, h->id, dtf_error());
        return -1;
    }
    dtf_wire_hdr rh = dtf_wire_make(DTF_MSG_DONE_REPLY, h->id, 0, 0, sh->step, 0);
    send_frame(c, &rh, NULL, 0);
    if (s->first_done == 0)
        s->first_done = dtf_now();
    if (newly)
        slog(s, DTF_LOG_INFO, "ps %d: worker %d is done at its step %" PRId64
             " (%d of %d workers done, global step %" PRId64 ")", sh->cfg.index,
             c->index, h->step, sh->ndone, sh->cfg.workers, sh->step);
    if (advanced)
        stepped(s);
    if (dtf_shard_all_done(sh)) {
        slog(s, DTF_LOG_INFO, "ps %d: all %d workers are done; stopping at step %" PRId64,
             sh->cfg.index, sh->cfg.workers, sh->step);
        start_finish(s, "done");
    }
    return 0;
}

static int handle_stats(sconn *c)
{
    dtf_server *s = c->srv;
    size_t n = dtf_server_stats(s, NULL, 0) + 1;
    char *text = malloc(n);
    if (!text) {
        conn_free(c, DTF_LOG_ERROR, "out of memory");
        return -1;
    }
    dtf_server_stats(s, text, n);
    dtf_wire_hdr rh = dtf_wire_make(DTF_MSG_STATS_REPLY, c->fs.h.id, 0, 0, s->shard->step, 0);
    send_frame(c, &rh, text, (uint32_t)strlen(text));
    free(text);
    return 0;
}

static int handle_error(sconn *c)
{
    char text[400], msg[512];
    net_remove_text(bufferevent_get_input(c->bev), c->fs.h.len, text, sizeof text);
    snprintf(msg, sizeof msg, "it sent an error: %s", text);
    conn_free(c, DTF_LOG_WARNING, msg);
    return -1;
}

/* The frame in c->fs.h, its body buffered, to its handler. start_frame let
 * through only these types, and nothing but HELLO before HELLO. */
static int dispatch(sconn *c)
{
    switch (c->fs.h.type) {
    case DTF_MSG_HELLO: return handle_hello(c);
    case DTF_MSG_PULL: return handle_pull(c);
    case DTF_MSG_PUSH: return handle_push(c);
    case DTF_MSG_GET_STEP: return handle_get_step(c);
    case DTF_MSG_WORKER_DONE: return handle_done(c);
    case DTF_MSG_STATS: return handle_stats(c);
    default: return handle_error(c); /* DTF_MSG_ERROR */
    }
}

static void s_read(struct bufferevent *bev, void *arg)
{
    sconn *c = arg;
    dtf_server *s = c->srv;
    while (!c->closing) {
        /* Backpressure (le-proxy.c): a peer that does not read its replies
         * gets no more requests served until it does; and while all the
         * replies queued pass the budget, no peer with replies of its own
         * still queued is served (those that read theirs go on). */
        size_t own = evbuffer_get_length(bufferevent_get_output(bev));
        if (own > s->out_mark || (own > 0 && s->queued > s->queue_budget)) {
            if (!c->paused) {
                c->paused = 1;
                s->pauses++;
                bufferevent_disable(bev, EV_READ);
            }
            return;
        }
        if (!c->fs.have_hdr) {
            int r = net_read_hdr(bev, &c->fs, s->max_payload);
            if (r == 0)
                return;
            if (r < 0) {
                conn_fail(c, 0, dtf_error());
                return;
            }
            s->frames_in++;
            s->bytes_in += DTF_WIRE_HDR + (uint64_t)c->fs.h.len;
            if (start_frame(c) < 0)
                return;
        }
        net_read r = net_read_body(bev, &c->fs);
        if (r == NET_READ_MORE)
            return;
        if (r != NET_READ_DONE) {
            char why[256];
            if (r == NET_READ_CLOSED)
                snprintf(why, sizeof why, "disconnected mid-frame (%s body: %zu of %" PRIu32
                         " bytes)", dtf_msg_name(c->fs.h.type), c->fs.got, c->fs.h.len);
            else
                snprintf(why, sizeof why, "connection error (%s)", dtf_error());
            s->bad_peers++;
            conn_free(c, DTF_LOG_WARNING, why);
            return;
        }
        net_fstate_next(&c->fs);
        if (dispatch(c) < 0)
            return;
    }
}

static void s_write(struct bufferevent *bev, void *arg)
{
    sconn *c = arg;
    dtf_server *s = c->srv;
    if (c->closing) {
        conn_free(c, 0, NULL);
        return;
    }
    if (s->finishing)
        maybe_finish(s);
    if (c->paused) {
        c->paused = 0;
        bufferevent_enable(bev, EV_READ);
        s_read(bev, c); /* what piled up while paused */
    }
}

static void s_event(struct bufferevent *bev, short events, void *arg)
{
    sconn *c = arg;
    dtf_server *s = c->srv;
    char why[256];
    (void)bev;
    if (c->closing) {
        conn_free(c, 0, NULL);
        return;
    }
    int level = DTF_LOG_WARNING;
    size_t buffered = evbuffer_get_length(bufferevent_get_input(c->bev));
    if (events & BEV_EVENT_TIMEOUT) {
        if (c->hello)
            snprintf(why, sizeof why, "idle for %.0f s", s->cfg.idle_timeout);
        else
            snprintf(why, sizeof why, "no HELLO within %.0f s", s->cfg.hello_timeout);
        s->bad_peers++;
    } else if (c->fs.have_hdr || buffered) {
        if (c->fs.have_hdr)
            snprintf(why, sizeof why, "disconnected mid-frame (%s body: %zu of %" PRIu32
                     " bytes)", dtf_msg_name(c->fs.h.type), buffered + c->fs.got, c->fs.h.len);
        else if (buffered < DTF_WIRE_HDR)
            snprintf(why, sizeof why, "disconnected mid-frame (%zu of %d header bytes)",
                     buffered, DTF_WIRE_HDR);
        else
            snprintf(why, sizeof why, "disconnected with %zu bytes of requests unserved "
                     "(%s)", buffered, c->paused ? "it did not read its replies" : "mid-frame");
        s->bad_peers++;
    } else if (events & BEV_EVENT_ERROR) {
        int e = EVUTIL_SOCKET_ERROR();
        snprintf(why, sizeof why, "connection error (%s)", evutil_socket_error_to_string(e));
    } else {
        snprintf(why, sizeof why, "peer closed");
        if (c->hello)
            level = DTF_LOG_INFO;
    }
    conn_free(c, level, why);
}

/* Keeps srv->queued, the bytes waiting in every output buffer. */
static void out_counted(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    dtf_server *s = arg;
    (void)buf;
    s->queued += info->n_added;
    s->queued -= info->n_deleted;
    if (s->queued > s->queued_peak)
        s->queued_peak = s->queued;
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    dtf_server *s = arg;
    char peer[64];
    (void)lis;
    (void)salen;
    addr_str(sa, peer, sizeof peer);
    int max = s->cfg.max_connections > 0 ? s->cfg.max_connections : 256;
    if (s->nconns >= max) {
        s->refused++;
        slog(s, DTF_LOG_WARNING, "ps %d: refusing connection from %s: %d connections "
             "open (max_connections)", s->shard->cfg.index, peer, s->nconns);
        evutil_closesocket(fd);
        return;
    }
    net_tune_socket(fd, s->cfg.keepalive);
    sconn *c = calloc(1, sizeof *c);
    struct bufferevent *bev = c ? bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (!bev) {
        free(c);
        evutil_closesocket(fd);
        slog(s, DTF_LOG_ERROR, "ps %d: out of memory accepting %s", s->shard->cfg.index, peer);
        return;
    }
    c->srv = s;
    c->bev = bev;
    c->index = -1;
    c->push_step = -1;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    snprintf(c->who, sizeof c->who, "%s", peer);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->accepted++;
    net_tune_bev(bev, &c->fs, SRV_TEXT_MAX, SRV_READ_CHUNK);
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), out_counted, s);
    bufferevent_setcb(bev, s_read, s_write, s_event, c);
    struct timeval tv = net_tv(s->cfg.hello_timeout);
    bufferevent_set_timeouts(bev, s->cfg.hello_timeout > 0 ? &tv : NULL, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    slog(s, DTF_LOG_INFO, "ps %d: accepted connection from %s", s->shard->cfg.index, peer);
}

static void on_accept_error(struct evconnlistener *lis, void *arg)
{
    dtf_server *s = arg;
    int e = EVUTIL_SOCKET_ERROR();
    (void)lis;
    /* EMFILE and friends: keep serving the connections we have. */
    slog(s, DTF_LOG_WARNING, "ps %d: accept failed: %s", s->shard->cfg.index,
         evutil_socket_error_to_string(e));
}

static void on_signal(evutil_socket_t sig, short ev, void *arg)
{
    dtf_server *s = arg;
    (void)ev;
    slog(s, DTF_LOG_WARNING, "ps %d: caught %s; stopping at step %" PRId64,
         s->shard->cfg.index, sig == SIGTERM ? "SIGTERM" : "SIGINT", s->shard->step);
    snprintf(s->reason, sizeof s->reason, "signal");
    event_base_loopbreak(s->base);
}

static void on_finish_timer(evutil_socket_t fd, short ev, void *arg)
{
    dtf_server *s = arg;
    (void)fd;
    (void)ev;
    event_base_loopbreak(s->base);
}

/* Sync mode: say whom a step waits for, and drop workers that keep it
 * waiting past sync_timeout. */
static void sync_tick(dtf_server *s)
{
    dtf_shard *sh = s->shard;
    if (!sh->cfg.sync || sh->have == 0 || sh->pending_since == 0)
        return;
    int ids[64];
    int k = dtf_shard_waiting(sh, ids, 64);
    if (k == 0)
        return;
    double now = dtf_now(), waited = now - sh->pending_since;
    char list[512];
    size_t len = 0;
    list[0] = 0;
    for (int i = 0; i < k && i < 64 && len < sizeof list - 16; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", i ? ", " : "", ids[i]);
    if (k > 64)
        snprintf(list + len, sizeof list - len, ", ...");
    int timed_out = s->cfg.sync_timeout > 0 && waited >= s->cfg.sync_timeout;
    if (!timed_out && waited >= 10 && now - s->last_wait_log >= 10) {
        s->last_wait_log = now;
        slog(s, DTF_LOG_INFO, "ps %d: step %" PRId64 " has waited %.0f s for worker%s %s "
             "(%d of %d gradients in)", sh->cfg.index, sh->step, waited, k > 1 ? "s" : "",
             list, sh->have, dtf_shard_needed(sh));
    }
    if (timed_out) {
        slog(s, DTF_LOG_WARNING, "ps %d: step %" PRId64 " waited %.0f s (sync_timeout) for "
             "worker%s %s; dropping %s from the replicas until %s pushes again",
             sh->cfg.index, sh->step, waited, k > 1 ? "s" : "", list,
             k > 1 ? "them" : "it", k > 1 ? "each" : "it");
        int advanced = 0;
        for (int i = 0; i < k && i < 64; i++)
            advanced |= dtf_shard_drop_worker(sh, ids[i]) > 0;
        if (advanced)
            stepped(s);
    }
}

/* Once a worker has said done the training is over; the ps still waits for
 * the others' WORKER_DONE (a connected one is finishing its step, a
 * restarted one comes back and finds the end). A worker with no connection
 * for done_timeout after that (dead for good, never started) is given up
 * on, so a finished job does not leave its ps running for ever. */
static void done_tick(dtf_server *s)
{
    dtf_shard *sh = s->shard;
    double now = dtf_now();
    for (int i = 0; i < sh->cfg.workers; i++)
        s->absent[i] = s->absent[i] ? s->absent[i] : now;
    for (sconn *c = s->conns; c; c = c->next)
        if (c->hello && !c->closing && c->role == DTF_ROLE_WORKER && c->index >= 0 &&
            c->index < sh->cfg.workers)
            s->absent[c->index] = 0;
    if (s->first_done == 0 || s->cfg.done_timeout <= 0 || sh->ndone == sh->cfg.workers)
        return;
    char list[512];
    size_t len = 0;
    int gone = 0;
    list[0] = 0;
    for (int i = 0; i < sh->cfg.workers; i++) {
        if (sh->w[i].done)
            continue;
        double since = s->absent[i] > s->first_done ? s->absent[i] : s->first_done;
        if (s->absent[i] == 0 || now - since < s->cfg.done_timeout)
            return; /* connected, or not away long enough: wait */
        gone++;
        if (len < sizeof list - 16)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", gone > 1 ? ", " : "", i);
    }
    slog(s, DTF_LOG_WARNING, "ps %d: %d of %d workers are done; worker%s %s ha%s had no "
         "connection for %.0f s since (done_timeout); stopping at step %" PRId64,
         sh->cfg.index, sh->ndone, sh->cfg.workers, gone > 1 ? "s" : "", list,
         gone > 1 ? "ve" : "s", s->cfg.done_timeout, sh->step);
    start_finish(s, "done_timeout");
}

/* Once a second. */
static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
    dtf_server *s = arg;
    (void)fd;
    (void)ev;
    if (s->finishing)
        return;
    int workers = 0;
    for (sconn *c = s->conns; c; c = c->next)
        workers += c->hello && !c->closing && c->role == DTF_ROLE_WORKER;
    dtf_pswatch_traffic(s->cfg.watch, s->bytes_in, s->bytes_out, workers);
    sync_tick(s);
    done_tick(s);
}

/* A socket bound to sa (SO_REUSEADDR; dual: an IPv6 socket that takes IPv4
 * peers too, whatever net.ipv6.bindv6only says). -1 with errno set. */
static evutil_socket_t bind_addr(const struct sockaddr *sa, socklen_t len, int dual)
{
    int one = 1, zero = 0;
    evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if ((!dual || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) == 0) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 && bind(fd, sa, len) == 0)
        return fd;
    int err = errno;
    evutil_closesocket(fd);
    errno = err;
    return -1;
}

/* The listening socket: on host, or with host "" on every address, IPv6 and
 * IPv4 (IPv4 alone where the kernel or the pod has no IPv6). -1 with
 * dtf_error() set. */
static evutil_socket_t bind_listener(const char *host, int port)
{
    evutil_socket_t fd;
    if (!*host) {
        struct sockaddr_in6 a6;
        memset(&a6, 0, sizeof a6);
        a6.sin6_family = AF_INET6;
        a6.sin6_addr = in6addr_any;
        a6.sin6_port = htons((uint16_t)port);
        fd = bind_addr((struct sockaddr *)&a6, sizeof a6, 1);
        if (fd < 0) {
            struct sockaddr_in a4;
            memset(&a4, 0, sizeof a4);
            a4.sin_family = AF_INET;
            a4.sin_addr.s_addr = htonl(INADDR_ANY);
            a4.sin_port = htons((uint16_t)port);
            fd = bind_addr((struct sockaddr *)&a4, sizeof a4, 0);
        }
    } else {
        char sport[16];
        snprintf(sport, sizeof sport, "%d", port);
        struct evutil_addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = EVUTIL_AI_PASSIVE;
        int e = evutil_getaddrinfo(host, sport, &hints, &res);
        if (e != 0) {
            dtf_seterr("cannot listen on %s:%d: %s", host, port, evutil_gai_strerror(e));
            return -1;
        }
        fd = bind_addr(res->ai_addr, (socklen_t)res->ai_addrlen, 0);
        evutil_freeaddrinfo(res);
    }
    if (fd < 0)
        dtf_seterr("cannot listen on %s:%d: %s", *host ? host : "*", port,
                   evutil_socket_error_to_string(errno));
    return fd;
}

dtf_server *dtf_server_new(const dtf_server_config *cfg, dtf_shard *shard)
{
    net_ignore_sigpipe();
    dtf_server *s = calloc(1, sizeof *s);
    if (!s) {
        dtf_seterr("out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->shard = shard;
    s->parked_tail = &s->parked;
    s->absent = calloc((size_t)shard->cfg.workers, sizeof *s->absent);
    if (!s->absent) {
        free(s);
        dtf_seterr("out of memory");
        return NULL;
    }
    s->max_payload = cfg->max_payload ? cfg->max_payload : DTF_WIRE_MAX_PAYLOAD;
    s->out_mark = 2 * (size_t)shard->count * sizeof(float) + OUT_SLACK;
    s->queue_budget = 2 * (size_t)shard->count * sizeof(float) * ((size_t)shard->cfg.workers + 2) +
                      QUEUE_SLACK;
    snprintf(s->reason, sizeof s->reason, "running");
    snprintf(s->host, sizeof s->host, "%s", cfg->host && *cfg->host ? cfg->host : "");
    s->cfg.host = s->host;
    s->cfg.token = NULL;
    if (cfg->token) {
        s->token = malloc(cfg->token_len + 1);
        if (!s->token) {
            free(s->absent);
            free(s);
            dtf_seterr("out of memory");
            return NULL;
        }
        memcpy(s->token, cfg->token, cfg->token_len);
        s->token[cfg->token_len] = 0;
    }
    if (cfg->wire_dtype == DTF_DTYPE_BF16 &&
        !(s->wire_buf = malloc(dtf_wire_body_len(shard->count, DTF_DTYPE_BF16) + 1))) {
        dtf_seterr("out of memory");
        goto fail;
    }
    if ((uint64_t)shard->count * 4 > s->max_payload) {
        dtf_seterr("shard of %" PRIu64 " floats does not fit a frame of %zu bytes "
                   "(use more ps tasks or raise max_frame)", shard->count, s->max_payload);
        goto fail;
    }
    s->base = event_base_new();
    if (!s->base) {
        dtf_seterr("cannot create an event loop");
        goto fail;
    }
    evutil_socket_t fd = bind_listener(s->host, cfg->port);
    if (fd < 0)
        goto fail;
    s->lis = evconnlistener_new(s->base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                -1, fd);
    if (!s->lis) {
        int err = EVUTIL_SOCKET_ERROR();
        evutil_closesocket(fd);
        dtf_seterr("cannot listen on %s:%d: %s", *s->host ? s->host : "*", cfg->port,
                   evutil_socket_error_to_string(err));
        goto fail;
    }
    evconnlistener_set_error_cb(s->lis, on_accept_error);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    s->port = cfg->port;
    if (getsockname(evconnlistener_get_fd(s->lis), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    s->finish_timer = evtimer_new(s->base, on_finish_timer, s);
    s->tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    if (!s->finish_timer || !s->tick) {
        dtf_seterr("out of memory");
        goto fail;
    }
    return s;
fail:
    dtf_server_free(s);
    return NULL;
}

int dtf_server_port(const dtf_server *s)
{
    return s->port;
}

const char *dtf_server_reason(const dtf_server *s)
{
    return s->reason;
}

void dtf_server_stop(dtf_server *s)
{
    snprintf(s->reason, sizeof s->reason, "stopped");
    event_base_loopbreak(s->base);
}

int dtf_server_run(dtf_server *s)
{
    dtf_shard *sh = s->shard;
    if (s->cfg.handle_signals && !s->sig_term) {
        s->sig_term = evsignal_new(s->base, SIGTERM, on_signal, s);
        s->sig_int = evsignal_new(s->base, SIGINT, on_signal, s);
        if (!s->sig_term || !s->sig_int || evsignal_add(s->sig_term, NULL) < 0 ||
            evsignal_add(s->sig_int, NULL) < 0) {
            dtf_seterr("cannot handle SIGTERM/SIGINT");
            return -1;
        }
    }
    struct timeval tick = net_tv(1.0);
    evtimer_add(s->tick, &tick);
    char size[32];
    human_bytes((double)sh->count * 4, size, sizeof size);
    s->started = dtf_now();
    slog(s, DTF_LOG_INFO, "ps %d: serving parameters [%" PRIu64 ", %" PRIu64 ") of %" PRIu64
         " (%s) on port %d, %s", sh->cfg.index, sh->offset, sh->offset + sh->count,
         sh->cfg.P, size, s->port,
         sh->cfg.sync ? "sync" : "async");
    if (!s->token)
        slog(s, DTF_LOG_WARNING, "ps %d: no token: any peer that reaches port %d can join and push "
             "gradients (give the cluster one with $DTF_TOKEN or --token-file)", sh->cfg.index,
             s->port);
    if (sh->cfg.sync)
        slog(s, DTF_LOG_INFO, "ps %d: sync: each step averages %d of %d workers' gradients%s",
             sh->cfg.index, sh->cfg.replicas, sh->cfg.workers,
             s->cfg.sync_timeout > 0 ? "" : " (no sync_timeout: waits for every one)");
    int r = event_base_dispatch(s->base);
    /* The signal events stay until dtf_server_free (deleting them gives the
     * signals their old handlers back, the default ones that kill): a
     * second SIGTERM, which a supervisor may send right after the first,
     * must not end the process before the last checkpoint is written. */
    evtimer_del(s->tick);
    evtimer_del(s->finish_timer);
    if (strcmp(s->reason, "running") == 0)
        snprintf(s->reason, sizeof s->reason, "stopped");
    if (r < 0) {
        dtf_seterr("event loop failed");
        return -1;
    }
    return 0;
}

size_t dtf_server_stats(const dtf_server *s, char *buf, size_t n)
{
    size_t k = dtf_shard_stats(s->shard, buf, n);
    size_t room = k < n ? n - k : 0;
    int m = snprintf(room ? buf + k : NULL, room,
                     "port=%d\nuptime=%.3f\nconnections=%" PRIu64 "\nconnections_open=%d\n"
                     "refused=%" PRIu64 "\nbad_peers=%" PRIu64 "\nframes_in=%" PRIu64
                     "\nframes_out=%" PRIu64 "\nbytes_in=%" PRIu64 "\nbytes_out=%" PRIu64
                     "\nbackpressure_pauses=%" PRIu64 "\nqueued_bytes=%zu\nqueued_peak=%zu"
                     "\nreason=%s\n",
                     s->port, s->started > 0 ? dtf_now() - s->started : 0.0, s->accepted,
                     s->nconns, s->refused, s->bad_peers, s->frames_in, s->frames_out,
                     s->bytes_in, s->bytes_out, s->pauses, s->queued, s->queued_peak, s->reason);
    return k + (m > 0 ? (size_t)m : 0);
}

void dtf_server_free(dtf_server *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_free(s->conns, 0, NULL);
    if (s->lis)
        evconnlistener_free(s->lis);
    if (s->sig_term)
        event_free(s->sig_term);
    if (s->sig_int)
        event_free(s->sig_int);
    if (s->tick)
        event_free(s->tick);
    if (s->finish_timer)
        event_free(s->finish_timer);
    if (s->base)
        event_base_free(s->base);
    free(s->token);
    free(s->absent);
    free(s->wire_buf);
    free(s);
}
