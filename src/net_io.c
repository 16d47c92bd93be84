/* net_io: socket tuning, frame reading and sending shared by the ps server
 * and the worker's client (net_io.h says how frames are read and sent). */
#include "net_io.h"

#include "net.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* A write to a peer that has gone must fail with EPIPE, not kill the
 * process: libevent's writes do not pass MSG_NOSIGNAL. Only a default
 * disposition is changed; a handler someone installed stays. */
void net_ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

struct timeval net_tv(double s)
{
    struct timeval tv;
    if (s < 0)
        s = 0;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

/* A peer that vanished without a FIN (pod deleted, node down, cable
 * pulled) is noticed after about `keepalive` seconds whatever the
 * connection is doing: idle, keepalive probes (10 s + 3 x 5 s for 25 s);
 * with data unacknowledged, TCP_USER_TIMEOUT. Without these a request
 * waiting on a half-open connection would wait for its own timeout (a sync
 * pull: wait_timeout) and a ps would keep such a worker for ever. */
void net_tune_socket(evutil_socket_t fd, double keepalive)
{
    int one = 1;
    /* Small frames (headers, replies) must not wait for Nagle. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (keepalive <= 0)
        keepalive = DTF_DEFAULT_KEEPALIVE;
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

void net_tune_bev(struct bufferevent *bev, net_fstate *fs, size_t text_max, size_t chunk)
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

void net_fstate_next(net_fstate *fs)
{
    fs->have_hdr = 0;
    fs->dst = NULL;
    fs->got = 0;
}

/* 1: a header was decoded into fs->h and drained from the input; 0: need
 * more bytes; -1: the bytes are not a valid frame (dtf_error() says why). */
int net_read_hdr(struct bufferevent *bev, net_fstate *fs, size_t max_payload)
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
 * bodies wait in the input buffer (read low watermark). */
net_read net_read_body(struct bufferevent *bev, net_fstate *fs)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = fs->h.len;
    if (!fs->dst) {
        if (evbuffer_get_length(in) < len) {
            bufferevent_setwatermark(bev, EV_READ, len, fs->high);
            fs->low_set = 1;
            return NET_READ_MORE;
        }
        if (fs->low_set) {
            bufferevent_setwatermark(bev, EV_READ, 0, fs->high);
            fs->low_set = 0;
        }
        return NET_READ_DONE;
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
            return NET_READ_CLOSED;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return NET_READ_MORE;
        } else if (errno != EINTR) {
            dtf_seterr("%s", evutil_socket_error_to_string(errno));
            return NET_READ_ERROR;
        }
    }
    return NET_READ_DONE;
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

/* Sends a frame: its header hb and a body of len bytes. When nothing is
 * queued before it, one sendmsg sends it straight from the caller's
 * memory, which the socket usually takes whole; the rest goes through the
 * output buffer as kind says. */
void net_send_direct(struct bufferevent *bev, const uint8_t *hb, const void *body, size_t len,
                     net_body kind, dtf_storage *keep)
{
    int floats = kind == NET_BODY_FLOATS || kind == NET_BODY_FLOATS_REF;
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
    } else if (kind == NET_BODY_FLOATS_REF || kind == NET_BODY_BYTES_REF) {
        if (keep)
            dtf_storage_retain(keep);
        if (evbuffer_add_reference(out, rest, len - bsent, unref_storage, keep) < 0 && keep)
            dtf_storage_release(keep);
    } else {
        evbuffer_add(out, rest, len - bsent);
    }
}

/* Reads a text body of len bytes (keeping at most cap-1) into buf. */
void net_remove_text(struct evbuffer *in, uint32_t len, char *buf, size_t cap)
{
    size_t keep = len < cap - 1 ? len : cap - 1;
    evbuffer_remove(in, buf, keep);
    buf[keep] = 0;
    evbuffer_drain(in, len - keep);
    for (size_t i = 0; i < keep; i++) /* a peer's text goes into our logs */
        if ((unsigned char)buf[i] < 32 && buf[i] != '\n')
            buf[i] = '?';
}

/* Formats a log line and hands it to the server's or client's callback. */
void net_vlog(dtf_log_fn fn, void *ud, int level, const char *fmt, va_list ap)
{
    if (!fn)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fn(ud, level, msg);
}
