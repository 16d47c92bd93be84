/* net: the ps server and the worker-side client over libevent (net.h).
 *
 * Reading frames (both sides): the parse state lives in the connection
 * (fstate), so a partial frame resumes on the next read. The header is
 * copied out with evbuffer_copyout and decoded by wire.c, which checks each
 * field as soon as it is buffered. A float body (PUSH at the ps, PULL_REPLY
 * at the worker) is checked from its header, then received straight into
 * its destination (the connection's gradient buffer, the worker's parameter
 * tensor): what the bufferevent already read, then recv() on the socket.
 * Other bodies are small and wait in the input buffer (read low watermark).
 *
 * Writing: a frame goes out with one sendmsg straight from its memory (the
 * shard's parameters, the worker's gradients) when nothing is queued before
 * it; what the socket does not take is queued in the output buffer, by
 * reference for gradients, copied for parameters (they change with the next
 * push). A peer whose queued replies pass the server's out_mark (2 shards +
 * 256 KiB) is not read from until it has read them (backpressure). */
#include "net.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#include "util.h"
#include "wire.h"

#define IO_CHUNK (1u << 20)      /* largest single read/write per callback (client) */
#define SRV_READ_CHUNK (16u << 10) /* the ps reads at most this per callback: float
                                  * bodies bypass the input buffer (read_body), so
                                  * more would only let a flood of small frames in */
#define SRV_TEXT_MAX 4096        /* the longest text (ERROR) the ps takes from a peer */
#define OUT_SLACK (256u << 10)   /* output mark: 2 shards (a worker's pull in flight
                                  * and one more) plus this */
#define QUEUE_SLACK (4u << 20)   /* all connections' queued replies: 2 shards per
                                  * worker (and 2 more) plus this */
#define KEEPALIVE_DEFAULT 25.0   /* s: a peer gone without a FIN is noticed */
#define CLOSE_GRACE 2.0          /* s to flush an ERROR frame before closing */
#define FINISH_GRACE 2.0         /* s to flush the last replies once all workers are done */
#define MAX_PARKED 8             /* PULLs one connection may have waiting for a step */

/* ============================================================================
 * Shared
 * ========================================================================== */

/* A write to a peer that has gone must fail with EPIPE, not kill the
 * process: libevent's writes do not pass MSG_NOSIGNAL. Only a default
 * disposition is changed; a handler someone installed stays. */
static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

static struct timeval tv_of(double s)
{
    struct timeval tv;
    if (s < 0)
        s = 0;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

/* The parse state of one connection. */
typedef struct fstate {
    dtf_wire_hdr h;
    int have_hdr;    /* h is decoded and drained; its body is on its way */
    int low_set;     /* the read low watermark is raised for a body */
    uint8_t *dst;    /* a float body streams here; NULL: it waits in the input */
    size_t got;      /* body bytes in dst so far */
    size_t high;     /* the input buffer's cap (read high watermark) */
} fstate;

/* A peer that vanished without a FIN (pod deleted, node down, cable
 * pulled) is noticed after about `keepalive` seconds whatever the
 * connection is doing: idle, keepalive probes (10 s + 3 x 5 s for 25 s);
 * with data unacknowledged, TCP_USER_TIMEOUT. Without these a request
 * waiting on a half-open connection would wait for its own timeout (a sync
 * pull: wait_timeout) and a ps would keep such a worker for ever. */
static void tune_socket(evutil_socket_t fd, double keepalive)
{
    int one = 1;
    /* Small frames (headers, replies) must not wait for Nagle. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (keepalive <= 0)
        keepalive = KEEPALIVE_DEFAULT;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#ifdef TCP_KEEPIDLE
    int idle = (int)(keepalive * 0.4), intvl = (int)(keepalive * 0.2), cnt = 3;
    if (idle < 1)
        idle = 1;
    if (intvl < 1)
        intvl = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
#endif
#ifdef TCP_USER_TIMEOUT
    unsigned ms = (unsigned)(keepalive * 1000);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
#endif
}

/* The input buffer cap: the largest body that waits in it (float bodies
 * stream past it), one read, a header. */
static size_t read_high(size_t text_max, size_t chunk)
{
    return DTF_WIRE_HDR + text_max + chunk;
}

static void tune_bev(struct bufferevent *bev, fstate *fs, size_t text_max, size_t chunk)
{
    /* libevent reads and writes 16 KiB per callback by default: a 160 KB
     * shard would cost ten trips through the loop. */
    bufferevent_set_max_single_read(bev, chunk);
    bufferevent_set_max_single_write(bev, IO_CHUNK);
    /* The per-connection input cap: reading stops while this much is
     * buffered (it never is unless frames are not being consumed). */
    fs->high = read_high(text_max, chunk);
    bufferevent_setwatermark(bev, EV_READ, 0, fs->high);
}

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
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(buf, n, "[%s]:%d", host, port);
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

static void fstate_next(fstate *fs)
{
    fs->have_hdr = 0;
    fs->dst = NULL;
    fs->got = 0;
}

/* 1: a header was decoded into fs->h and drained from the input; 0: need
 * more bytes; -1: the bytes are not a valid frame (dtf_error() says why). */
static int read_hdr(struct bufferevent *bev, fstate *fs, size_t max_payload)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    uint8_t hb[DTF_WIRE_HDR];
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return 0;
    if (n > DTF_WIRE_HDR)
        n = DTF_WIRE_HDR;
    if (evbuffer_copyout(in, hb, n) != (ev_ssize_t)n) {
        dtf_seterr("cannot read the input buffer");
        return -1;
    }
    int r = dtf_wire_decode_hdr(hb, n, max_payload, &fs->h);
    if (r != DTF_WIRE_FRAME)
        return r == DTF_WIRE_INCOMPLETE ? 0 : -1;
    evbuffer_drain(in, DTF_WIRE_HDR);
    fs->have_hdr = 1;
    fs->dst = NULL;
    fs->got = 0;
    return 1;
}

/* Receives the body of fs->h. With fs->dst set, the bytes go straight
 * there: first what the bufferevent already read, then recv() on the
 * socket until it would block (libevent 2.1 reads 4 KiB per callback; a
 * 160 KB gradient would cost 40 trips through the loop and a copy). Small
 * bodies wait in the input buffer (read low watermark). 1: the body is
 * complete; 0: need more; -1: the peer closed or the socket failed
 * (dtf_error() says which). */
static int read_body(struct bufferevent *bev, fstate *fs)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = fs->h.len;
    if (!fs->dst) {
        if (evbuffer_get_length(in) < len) {
            bufferevent_setwatermark(bev, EV_READ, len, fs->high);
            fs->low_set = 1;
            return 0;
        }
        if (fs->low_set) {
            bufferevent_setwatermark(bev, EV_READ, 0, fs->high);
            fs->low_set = 0;
        }
        return 1;
    }
    size_t have = evbuffer_get_length(in);
    if (have && fs->got < len) {
        size_t k = have < len - fs->got ? have : len - fs->got;
        evbuffer_remove(in, fs->dst + fs->got, k);
        fs->got += k;
    }
    evutil_socket_t fd = bufferevent_getfd(bev);
    while (fs->got < len) {
        ssize_t k = recv(fd, fs->dst + fs->got, len - fs->got, MSG_DONTWAIT);
        if (k > 0) {
            fs->got += (size_t)k;
        } else if (k == 0) {
            dtf_seterr("closed");
            return -1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else if (errno != EINTR) {
            dtf_seterr("%s", evutil_socket_error_to_string(errno));
            return -1;
        }
    }
    return 1;
}

/* Adds n floats as little-endian bytes to out (a copy). */
static void add_floats(struct evbuffer *out, const float *f, size_t n)
{
    if (n == 0)
        return;
    if (dtf_wire_host_is_le()) {
        evbuffer_add(out, f, n * 4);
        return;
    }
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)(n * 4), &v, 1) < 1)
        return;
    dtf_wire_put_floats(v.iov_base, f, n);
    v.iov_len = n * 4;
    evbuffer_commit_space(out, &v, 1);
}

static void unref_storage(const void *data, size_t len, void *extra)
{
    (void)data;
    (void)len;
    dtf_storage_release(extra);
}

/* Sends a frame: its header hb and a body of len bytes (float32s when
 * floats, else raw bytes). When nothing is queued before it, one sendmsg
 * sends it straight from the caller's memory, which the socket usually
 * takes whole; the rest goes through the output buffer, by reference when
 * by_ref (keep, if not NULL, is retained until it is sent) or copied. */
static void send_direct(struct bufferevent *bev, const uint8_t *hb, const void *body,
                        size_t len, int floats, int by_ref, dtf_storage *keep)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t sent = 0;
    int le = dtf_wire_host_is_le();
    if (evbuffer_get_length(out) == 0 && (le || !floats)) {
        struct iovec iov[2] = {{(void *)hb, DTF_WIRE_HDR}, {(void *)body, len}};
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = len ? 2 : 1;
        ssize_t k;
        do
            k = sendmsg(bufferevent_getfd(bev), &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (k < 0 && errno == EINTR);
        if (k > 0) /* an error is left for the bufferevent to report */
            sent = (size_t)k;
    }
    if (sent < DTF_WIRE_HDR)
        evbuffer_add(out, hb + sent, DTF_WIRE_HDR - sent);
    size_t bsent = sent > DTF_WIRE_HDR ? sent - DTF_WIRE_HDR : 0;
    if (bsent >= len)
        return;
    const uint8_t *rest = (const uint8_t *)body + bsent;
    if (floats && !le) {
        add_floats(out, body, len / 4); /* nothing was sent directly */
    } else if (by_ref) {
        if (keep)
            dtf_storage_retain(keep);
        if (evbuffer_add_reference(out, rest, len - bsent, unref_storage, keep) < 0 && keep)
            dtf_storage_release(keep);
    } else {
        evbuffer_add(out, rest, len - bsent);
    }
}

/* Reads a text body of len bytes (keeping at most cap-1) into buf. */
static void remove_text(struct evbuffer *in, uint32_t len, char *buf, size_t cap)
{
    size_t keep = len < cap - 1 ? len : cap - 1;
    evbuffer_remove(in, buf, keep);
    buf[keep] = 0;
    evbuffer_drain(in, len - keep);
    for (size_t i = 0; i < keep; i++) /* a peer's text goes into our logs */
        if ((unsigned char)buf[i] < 32 && buf[i] != '\n')
            buf[i] = '?';
}

/* ============================================================================
 * Server
 * ========================================================================== */

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
    fstate fs;
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
    double started, step_started, last_wait_log;
    uint64_t accepted, refused, bad_peers, bytes_in, bytes_out, frames_in, frames_out;
    uint64_t pauses;     /* times a peer's reading was stopped for backpressure */
    struct last_push {   /* async: each worker's latest PUSH (id, step tag), so one */
        uint32_t id;     /* re-sent over a new connection is not applied twice */
        int64_t tag;
        int valid;
    } *last;             /* shard->cfg.workers entries */
};

/* Formats a log line and hands it to the server's or client's callback. */
static void DTF_PRINTF(4, 0) vlog_to(dtf_log_fn fn, void *ud, int level, const char *fmt,
                                    va_list ap)
{
    if (!fn)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fn(ud, level, msg);
}

static void DTF_PRINTF(3, 4) slog(dtf_server *s, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_to(s->cfg.log, s->cfg.log_ud, level, fmt, ap);
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

/* A reply: sent at once when the socket takes it (send_direct). */
static void send_frame(sconn *c, dtf_wire_hdr *h, const void *payload, uint32_t len)
{
    dtf_server *s = c->srv;
    uint8_t hb[DTF_WIRE_HDR];
    h->len = len;
    dtf_wire_encode_hdr(hb, h);
    send_direct(c->bev, hb, payload, len, 0, 0, NULL);
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
    struct timeval tv = tv_of(CLOSE_GRACE);
    bufferevent_set_timeouts(c->bev, NULL, &tv);
}

static void reply_pull(sconn *c, uint32_t id, uint64_t off, uint64_t count)
{
    dtf_server *s = c->srv;
    dtf_shard *sh = s->shard;
    uint8_t hb[DTF_WIRE_HDR];
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_PULL_REPLY, id, off, count, sh->step,
                                   (uint32_t)(count * 4));
    dtf_wire_encode_hdr(hb, &h);
    /* Straight from the shard when the socket takes it; what it does not
     * is copied, not referenced: the parameters change with the next push,
     * possibly before the rest has left. */
    send_direct(c->bev, hb, sh->params + (off - sh->offset), (size_t)count * 4, 1, 0, NULL);
    s->frames_out++;
    s->bytes_out += DTF_WIRE_HDR + count * 4;
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
    if (s->shard->have == 0) {
        s->step_started = 0;
        s->last_wait_log = 0;
    }
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
    struct timeval tv = tv_of(FINISH_GRACE);
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
                        (uint32_t)sh->cfg.workers};
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
    if (m.role == DTF_ROLE_WORKER && m.index < (uint32_t)sh->cfg.workers)
        sh->w[m.index].joined = 1;
    struct timeval tv = tv_of(s->cfg.idle_timeout);
    bufferevent_set_timeouts(c->bev, s->cfg.idle_timeout > 0 ? &tv : NULL, NULL);

    dtf_wire_hello_reply r = {
        .index = (uint32_t)sh->cfg.index, .nps = (uint32_t)sh->cfg.nps, .P = sh->cfg.P,
        .workers = (uint32_t)sh->cfg.workers, .replicas = (uint32_t)sh->cfg.replicas,
    };
    uint8_t rb[DTF_WIRE_HELLO_REPLY_LEN];
    dtf_wire_encode_hello_reply(rb, sizeof rb, &r);
    dtf_wire_hdr rh = dtf_wire_make(DTF_MSG_HELLO_REPLY, h->id, sh->offset, sh->count,
                                    sh->step, 0);
    rh.aux = (uint8_t)(sh->cfg.sync ? 1 : 0);
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
    case DTF_MSG_HELLO: case DTF_MSG_PULL: case DTF_MSG_GET_STEP:
    case DTF_MSG_WORKER_DONE: case DTF_MSG_STATS:
        return 0; /* no body, or a short one (HELLO); checked in handle_frame */
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
    if (!c->body && !(c->body = malloc(sh->count ? (size_t)sh->count * sizeof(float) : 1))) {
        conn_fail(c, h->id, "out of memory for a gradient");
        return -1;
    }
    c->fs.dst = (uint8_t *)c->body;
    return 0;
}

/* Handles the frame in c->fs.h whose body is buffered. 0, or -1 when the
 * connection is closing or gone (do not touch c). */
static int handle_frame(sconn *c)
{
    dtf_server *s = c->srv;
    dtf_shard *sh = s->shard;
    dtf_wire_hdr *h = &c->fs.h;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    char msg[512];

    if (!c->hello && h->type != DTF_MSG_HELLO) {
        snprintf(msg, sizeof msg, "%s before HELLO", dtf_msg_name(h->type));
        conn_fail(c, h->id, msg);
        return -1;
    }
    switch (h->type) {
    case DTF_MSG_HELLO:
        return handle_hello(c);

    case DTF_MSG_PULL: {
        if (h->count > sh->count || h->offset < sh->offset ||
            h->offset - sh->offset > sh->count - h->count) {
            snprintf(msg, sizeof msg,
                     "PULL of [%" PRIu64 ", %" PRIu64 ") is outside this shard's range [%"
                     PRIu64 ", %" PRIu64 ")", h->offset, h->offset + h->count, sh->offset,
                     sh->offset + sh->count);
            conn_fail(c, h->id, msg);
            return -1;
        }
        sh->pulls++;
        /* The step to wait for: what the worker asked, but never past the
         * step that includes its latest push (after a ps restart its push
         * tagged 671 may have gone into step 601), nor past the next step:
         * a worker ahead of a restarted ps must not hang. */
        int64_t want = h->step;
        if (c->push_step >= 0 && want > c->push_step)
            want = c->push_step;
        if (want > sh->step + 1)
            want = sh->step + 1;
        c->push_step = -1;
        if (want <= sh->step) {
            reply_pull(c, h->id, h->offset, h->count);
            return 0;
        }
        /* A worker has one pull in flight per call; a peer that parks more
         * is flooding (each would become a whole shard of output). */
        if (c->nparked >= MAX_PARKED) {
            snprintf(msg, sizeof msg, "more than %d PULLs waiting for a step", MAX_PARKED);
            conn_fail(c, h->id, msg);
            return -1;
        }
        parked *p = calloc(1, sizeof *p);
        if (!p) {
            conn_free(c, DTF_LOG_ERROR, "out of memory");
            return -1;
        }
        p->c = c;
        p->id = h->id;
        p->off = h->offset;
        p->count = h->count;
        p->min_step = want;
        c->nparked++;
        *s->parked_tail = p;
        s->parked_tail = &p->next;
        return 0;
    }

    case DTF_MSG_PUSH: {
        /* checked by start_frame; the body is in c->body */
        dtf_wire_floats_to_host(c->body, (size_t)h->count);
        int advanced = 0, r;
        struct last_push *lp = &s->last[c->index];
        if (!sh->cfg.sync && lp->valid && lp->id == h->id && lp->tag == h->step) {
            /* A client re-sends what was in flight after reconnecting: this
             * gradient was applied, only its reply was lost. (Sync mode
             * knows its duplicates by step.) */
            sh->w[c->index].duplicates++;
            sh->duplicates++;
            r = DTF_PUSH_DUPLICATE;
        } else {
            r = dtf_shard_push(sh, c->index, h->step, c->body, &advanced);
            lp->valid = 1;
            lp->id = h->id;
            lp->tag = h->step;
        }
        if (r < 0) {
            conn_fail(c, h->id, dtf_error());
            return -1;
        }
        /* The step whose parameters include this gradient: a pending or
         * duplicate one is in the next step, an applied one in this step. */
        c->push_step = r == DTF_PUSH_PENDING || r == DTF_PUSH_DUPLICATE ? sh->step + 1 : sh->step;
        dtf_wire_hdr rh = dtf_wire_make(DTF_MSG_PUSH_REPLY, h->id, 0, 0, sh->step, 0);
        rh.aux = (uint8_t)r;
        send_frame(c, &rh, NULL, 0);
        if (r == DTF_PUSH_PENDING && sh->have == 1)
            s->step_started = dtf_now();
        if (advanced)
            stepped(s);
        return 0;
    }

    case DTF_MSG_GET_STEP: {
        dtf_wire_hdr rh = dtf_wire_make(DTF_MSG_STEP_REPLY, h->id, 0, 0, sh->step, 0);
        send_frame(c, &rh, NULL, 0);
        return 0;
    }

    case DTF_MSG_WORKER_DONE: {
        if (c->role != DTF_ROLE_WORKER) {
            conn_fail(c, h->id, "WORKER_DONE from an observer");
            return -1;
        }
        int was_done = sh->w[c->index].done;
        int advanced = dtf_shard_worker_done(sh, c->index);
        dtf_wire_hdr rh = dtf_wire_make(DTF_MSG_DONE_REPLY, h->id, 0, 0, sh->step, 0);
        send_frame(c, &rh, NULL, 0);
        if (!was_done)
            slog(s, DTF_LOG_INFO, "ps %d: worker %d is done at its step %" PRId64
                 " (%d of %d workers done, global step %" PRId64 ")", sh->cfg.index,
                 c->index, h->step, sh->ndone, sh->cfg.workers, sh->step);
        if (advanced > 0)
            stepped(s);
        if (sh->ndone == sh->cfg.workers) {
            slog(s, DTF_LOG_INFO, "ps %d: all %d workers are done; stopping at step %" PRId64,
                 sh->cfg.index, sh->cfg.workers, sh->step);
            start_finish(s, "done");
        }
        return 0;
    }

    case DTF_MSG_STATS: {
        size_t n = dtf_server_stats(s, NULL, 0) + 1;
        char *text = malloc(n);
        if (!text) {
            conn_free(c, DTF_LOG_ERROR, "out of memory");
            return -1;
        }
        dtf_server_stats(s, text, n);
        dtf_wire_hdr rh = dtf_wire_make(DTF_MSG_STATS_REPLY, h->id, 0, 0, sh->step, 0);
        send_frame(c, &rh, text, (uint32_t)strlen(text));
        free(text);
        return 0;
    }

    case DTF_MSG_ERROR: {
        char text[400];
        remove_text(in, h->len, text, sizeof text);
        snprintf(msg, sizeof msg, "it sent an error: %s", text);
        conn_free(c, DTF_LOG_WARNING, msg);
        return -1;
    }

    default:
        snprintf(msg, sizeof msg, "unexpected %s from a client", dtf_msg_name(h->type));
        conn_fail(c, h->id, msg);
        return -1;
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
            int r = read_hdr(bev, &c->fs, s->max_payload);
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
        int r = read_body(bev, &c->fs);
        if (r == 0)
            return;
        if (r < 0) {
            char why[256];
            if (strcmp(dtf_error(), "closed") == 0)
                snprintf(why, sizeof why, "disconnected mid-frame (%s body: %zu of %" PRIu32
                         " bytes)", dtf_msg_name(c->fs.h.type), c->fs.got, c->fs.h.len);
            else
                snprintf(why, sizeof why, "connection error (%s)", dtf_error());
            s->bad_peers++;
            conn_free(c, DTF_LOG_WARNING, why);
            return;
        }
        fstate_next(&c->fs);
        if (handle_frame(c) < 0)
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
    tune_socket(fd, s->cfg.keepalive);
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
    tune_bev(bev, &c->fs, SRV_TEXT_MAX, SRV_READ_CHUNK);
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), out_counted, s);
    bufferevent_setcb(bev, s_read, s_write, s_event, c);
    struct timeval tv = tv_of(s->cfg.hello_timeout);
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

/* Sync mode, once a second: say whom a step waits for, and drop workers
 * that keep it waiting past sync_timeout. */
static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
    dtf_server *s = arg;
    dtf_shard *sh = s->shard;
    (void)fd;
    (void)ev;
    if (!sh->cfg.sync || sh->have == 0 || s->step_started == 0 || s->finishing)
        return;
    int ids[64];
    int k = dtf_shard_waiting(sh, ids, 64);
    if (k == 0)
        return;
    double now = dtf_now(), waited = now - s->step_started;
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

dtf_server *dtf_server_new(const dtf_server_config *cfg, dtf_shard *shard)
{
    ignore_sigpipe();
    dtf_server *s = calloc(1, sizeof *s);
    if (!s) {
        dtf_seterr("out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->shard = shard;
    s->parked_tail = &s->parked;
    s->last = calloc((size_t)shard->cfg.workers, sizeof *s->last);
    if (!s->last) {
        free(s);
        dtf_seterr("out of memory");
        return NULL;
    }
    s->max_payload = cfg->max_payload ? cfg->max_payload : DTF_WIRE_MAX_PAYLOAD;
    s->out_mark = 2 * (size_t)shard->count * sizeof(float) + OUT_SLACK;
    s->queue_budget = 2 * (size_t)shard->count * sizeof(float) * ((size_t)shard->cfg.workers + 2) +
                      QUEUE_SLACK;
    snprintf(s->reason, sizeof s->reason, "running");
    snprintf(s->host, sizeof s->host, "%s", cfg->host ? cfg->host : "0.0.0.0");
    s->cfg.host = s->host;
    s->cfg.token = NULL;
    if (cfg->token) {
        s->token = malloc(cfg->token_len + 1);
        if (!s->token) {
            free(s->last);
            free(s);
            dtf_seterr("out of memory");
            return NULL;
        }
        memcpy(s->token, cfg->token, cfg->token_len);
        s->token[cfg->token_len] = 0;
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
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    struct evutil_addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE;
    int e = evutil_getaddrinfo(s->host, port, &hints, &res);
    if (e != 0) {
        dtf_seterr("cannot listen on %s:%d: %s", s->host, cfg->port, evutil_gai_strerror(e));
        goto fail;
    }
    s->lis = evconnlistener_new_bind(s->base, on_accept, s,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
                                     res->ai_addr, (int)res->ai_addrlen);
    if (!s->lis) {
        int err = EVUTIL_SOCKET_ERROR();
        evutil_freeaddrinfo(res);
        dtf_seterr("cannot listen on %s:%d: %s", s->host, cfg->port,
                   evutil_socket_error_to_string(err));
        goto fail;
    }
    evutil_freeaddrinfo(res);
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
    if (s->cfg.handle_signals) {
        s->sig_term = evsignal_new(s->base, SIGTERM, on_signal, s);
        s->sig_int = evsignal_new(s->base, SIGINT, on_signal, s);
        if (!s->sig_term || !s->sig_int || evsignal_add(s->sig_term, NULL) < 0 ||
            evsignal_add(s->sig_int, NULL) < 0) {
            dtf_seterr("cannot handle SIGTERM/SIGINT");
            return -1;
        }
    }
    if (sh->cfg.sync) {
        struct timeval tv = tv_of(1.0);
        evtimer_add(s->tick, &tv);
    }
    char size[32];
    human_bytes((double)sh->count * 4, size, sizeof size);
    s->started = dtf_now();
    slog(s, DTF_LOG_INFO, "ps %d: serving parameters [%" PRIu64 ", %" PRIu64 ") of %" PRIu64
         " (%s) on port %d, %s", sh->cfg.index, sh->offset, sh->offset + sh->count,
         sh->cfg.P, size, s->port,
         sh->cfg.sync ? "sync" : "async");
    if (sh->cfg.sync)
        slog(s, DTF_LOG_INFO, "ps %d: sync: each step averages %d of %d workers' gradients%s",
             sh->cfg.index, sh->cfg.replicas, sh->cfg.workers,
             s->cfg.sync_timeout > 0 ? "" : " (no sync_timeout: waits for every one)");
    int r = event_base_dispatch(s->base);
    if (s->sig_term) {
        /* Deleting the events gives the signals their old handlers back. */
        event_free(s->sig_term);
        event_free(s->sig_int);
        s->sig_term = s->sig_int = NULL;
    }
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
    free(s->last);
    free(s);
}

/* ============================================================================
 * Client
 * ========================================================================== */

/* IDLE: waiting to retry; DOWN: dropped while nothing was in flight, taken
 * up again by the next call; DEAD: failed for good (err says why). */
enum { CC_IDLE, CC_CONNECTING, CC_HELLO, CC_READY, CC_DOWN, CC_DEAD };

#define CC_MAXREQ 4          /* requests in flight per ps within one call */
#define CONNECT_ATTEMPT 5.0  /* s one TCP connect may take before a retry */
#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 5.0

typedef struct creq {
    int used, done;
    uint32_t id;
    uint8_t type;
    uint64_t off, count;
    int64_t step;
    const float *src;     /* PUSH body: count floats */
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
    fstate fs;
    uint64_t off, count;  /* the shard's range, from HELLO_REPLY */
    int have_range;
    int64_t step;         /* the shard's step in its latest reply */
    int64_t pulled_step;  /* the shard's step when its slice was last pulled; -1 */
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
};

static void DTF_PRINTF(3, 4) client_log(dtf_client *cl, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_to(cl->cfg.log, cl->cfg.log_ud, level, fmt, ap);
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
    struct timeval tv = tv_of(d);
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
    uint32_t len = r->type == DTF_MSG_PUSH ? (uint32_t)(r->count * 4) : 0;
    dtf_wire_hdr h = dtf_wire_make(r->type, r->id, r->off, r->count, r->step, len);
    uint8_t hb[DTF_WIRE_HDR];
    dtf_wire_encode_hdr(hb, &h);
    /* A gradient goes from the worker's tensor to the socket without a
     * copy. What the socket does not take at once stays referenced: the
     * call blocks until the reply, so the memory stays put, and keep
     * guards against the tensor being collected meanwhile. */
    send_direct(cc->bev, hb, r->src, len, 1, !cl->cfg.copy_sends, r->keep);
}

static void send_hello(cconn *cc)
{
    dtf_client *cl = cc->cl;
    dtf_wire_hello m = {
        .role = (uint8_t)cl->cfg.role, .index = (uint32_t)cl->cfg.index, .P = cl->cfg.P,
        .checksum = cl->cfg.checksum, .token = cl->token,
        .token_len = (uint16_t)cl->cfg.token_len,
    };
    uint8_t p[DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN];
    size_t n = dtf_wire_encode_hello(p, sizeof p, &m);
    cc->hello_id = ++cc->next_id;
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_HELLO, cc->hello_id, 0, 0, 0, (uint32_t)n);
    uint8_t hb[DTF_WIRE_HDR];
    dtf_wire_encode_hdr(hb, &h);
    send_direct(cc->bev, hb, p, n, 0, 0, NULL);
}

static creq *find_req(cconn *cc, uint32_t id, int reply_type)
{
    for (int k = 0; k < CC_MAXREQ; k++) {
        creq *r = &cc->req[k];
        if (r->used && !r->done && r->id == id && r->type + 1 == reply_type)
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
    cc->off = h->offset;
    cc->count = h->count;
    cc->have_range = 1;
    cc->step = h->step;
    cl->sync = h->aux;
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
                   cc->off + cc->count, h->step, h->aux ? "sync" : "async");
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
        remove_text(in, h->len, text, sizeof text);
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
            /* already in the worker's tensor (cc_start_frame, read_body) */
            dtf_wire_floats_to_host(r->dst, (size_t)r->count);
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
    cc->fs.dst = (uint8_t *)r->dst;
    return 0;
}

static void c_read(struct bufferevent *bev, void *arg)
{
    cconn *cc = arg;
    (void)bev;
    while (cc->bev) {
        if (!cc->fs.have_hdr) {
            int r = read_hdr(cc->bev, &cc->fs, cc->cl->max_payload);
            if (r == 0)
                return;
            if (r < 0) {
                cc_fail(cc, "bad frame: %s", dtf_error());
                return;
            }
            if (cc_start_frame(cc) < 0)
                return;
        }
        int r = read_body(cc->bev, &cc->fs);
        if (r == 0)
            return;
        if (r < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", strcmp(dtf_error(), "closed") == 0
                     ? "connection closed" : dtf_error());
            cc_lost(cc, why);
            return;
        }
        fstate_next(&cc->fs);
        if (cc_handle(cc) < 0)
            return;
    }
}

static void c_event(struct bufferevent *bev, short events, void *arg)
{
    cconn *cc = arg;
    char why[256];
    if (events & BEV_EVENT_CONNECTED) {
        tune_socket(bufferevent_getfd(bev), cc->cl->cfg.keepalive);
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
    tune_bev(cc->bev, &cc->fs, DTF_WIRE_MAX_TEXT, IO_CHUNK);
    struct timeval tv = tv_of(CONNECT_ATTEMPT);
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
        struct timeval tv = tv_of(extra + cl->wait_for);
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
        struct timeval tv = tv_of(timeout);
        evtimer_add(cl->timer, &tv);
        while (!cl->failed && !cl->timed_out && pending(cl)) {
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

static int split_addr(const char *addr, char *host, size_t nh, char *port, size_t np)
{
    const char *colon;
    size_t hl;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':')
            return -1;
        hl = (size_t)(end - addr - 1);
        memcpy(host, addr + 1, hl < nh ? hl : 0);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - addr);
        if (hl < nh)
            memcpy(host, addr, hl);
    }
    if (hl == 0 || hl >= nh)
        return -1;
    host[hl] = 0;
    size_t pl = strlen(colon + 1);
    if (pl == 0 || pl >= np || strspn(colon + 1, "0123456789") != pl)
        return -1;
    memcpy(port, colon + 1, pl + 1);
    return 0;
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
    ignore_sigpipe();
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
    if (!cl->c || !cl->token || !cl->timer) {
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
        cc->pulled_step = -1;
        snprintf(cc->addr, sizeof cc->addr, "%s", cfg->addrs[i]);
        if (split_addr(cfg->addrs[i], cc->host, sizeof cc->host, cc->port, sizeof cc->port) < 0) {
            dtf_seterr("ps address '%s' is not host:port", cfg->addrs[i]);
            dtf_client_free(cl);
            return NULL;
        }
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
    *global_step = r0->reply_step;
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
    free(c);
}
