/* libFuzzer target for net_io.c's frame reader, the one the ps server and
 * the worker's client run: net_read_hdr and net_read_body on a real
 * bufferevent over a socketpair, fed the input in chunks (sizes from its
 * last byte) while the event loop runs, a float body (PUSH, PULL_REPLY)
 * received straight into its destination as net_server.c does. Every frame
 * it reads, header and body bytes, must be the one dtf_wire_decode finds in
 * the whole input at that place; it must fail where that fails (an invalid
 * header) and read no frame past it. Build and run: tests/fuzz/build-one
 * fuzz_netio build/fuzz, then tests/fuzz/run (corpus and dictionary:
 * wire's). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "net_io.h"
#include "tensor.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);

/* net_io.c releases a referenced body's storage (net_send_direct), which
 * this target never sends: these stand in for tensor.c's. */
void dtf_storage_retain(dtf_storage *s) { (void)s; abort(); }
void dtf_storage_release(dtf_storage *s) { (void)s; abort(); }

#define CAP (1u << 16)

typedef struct reader {
    net_fstate fs;
    const uint8_t *whole; /* the input, where frame k must be */
    size_t whole_len;
    size_t pos;           /* where the next frame starts in it */
    int frames, failed, eof;
    uint8_t *body;        /* a float body's destination */
    uint8_t *small;       /* another body, taken from the input buffer */
} reader;

/* The frame just read must be the one at r->pos of the whole input. */
static void check_frame(reader *r, const uint8_t *body)
{
    dtf_wire_hdr h;
    if (dtf_wire_decode_hdr(r->whole + r->pos, r->whole_len - r->pos < DTF_WIRE_HDR
                                                    ? r->whole_len - r->pos
                                                    : DTF_WIRE_HDR,
                            CAP, &h) != DTF_WIRE_FRAME)
        abort();
    const dtf_wire_hdr *g = &r->fs.h;
    if (g->type != h.type || g->aux != h.aux || g->version != h.version || g->id != h.id ||
        g->len != h.len || g->offset != h.offset || g->count != h.count || g->step != h.step)
        abort();
    if (r->pos + DTF_WIRE_HDR + h.len > r->whole_len)
        abort();
    if (h.len && memcmp(body, r->whole + r->pos + DTF_WIRE_HDR, h.len) != 0)
        abort();
    r->pos += DTF_WIRE_HDR + h.len;
    r->frames++;
}

/* net_server.c's s_read, less the dispatch. */
static void on_read(struct bufferevent *bev, void *arg)
{
    reader *r = arg;
    while (!r->failed) {
        if (!r->fs.have_hdr) {
            int k = net_read_hdr(bev, &r->fs, CAP);
            if (k == 0)
                return;
            if (k < 0) {
                r->failed = 1;
                return;
            }
            if (r->fs.h.type == DTF_MSG_PUSH || r->fs.h.type == DTF_MSG_PULL_REPLY)
                r->fs.dst = r->body;
        }
        net_read k = net_read_body(bev, &r->fs);
        if (k == NET_READ_MORE)
            return;
        if (k != NET_READ_DONE) { /* closed mid-body: the input ended there */
            r->eof = 1;
            return;
        }
        const uint8_t *body = r->fs.dst;
        if (!body) {
            struct evbuffer *in = bufferevent_get_input(bev);
            if (r->fs.h.len && evbuffer_remove(in, r->small, r->fs.h.len) != (int)r->fs.h.len)
                abort();
            body = r->small;
        }
        check_frame(r, body);
        net_fstate_next(&r->fs);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    ((reader *)arg)->eof = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    /* What the whole input holds: frames until one is invalid or cut off. */
    int want = 0, want_err = 0;
    for (size_t pos = 0; pos < len;) {
        dtf_wire_hdr h;
        const uint8_t *p;
        size_t used;
        int k = dtf_wire_decode_hdr(buf + pos, len - pos < DTF_WIRE_HDR ? len - pos : DTF_WIRE_HDR,
                                    CAP, &h);
        if (k == DTF_WIRE_ERROR)
            want_err = 1;
        if (k != DTF_WIRE_FRAME || len - pos - DTF_WIRE_HDR < h.len)
            break;
        if (dtf_wire_decode(buf + pos, len - pos, CAP, &h, &p, &used) == DTF_WIRE_INCOMPLETE)
            abort();
        want++;
        pos += DTF_WIRE_HDR + h.len;
    }

    unsigned seed = len ? buf[len - 1] : 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return 0;
    evutil_make_socket_nonblocking(sv[0]);
    struct event_base *base = event_base_new();
    struct bufferevent *bev = base ? bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE) : NULL;
    reader r = {.whole = buf, .whole_len = len, .body = malloc(CAP), .small = malloc(CAP)};
    if (!bev || !r.body || !r.small) {
        if (base)
            event_base_free(base);
        close(sv[0]);
        close(sv[1]);
        free(r.body);
        free(r.small);
        return 0;
    }
    net_tune_bev(bev, &r.fs, DTF_WIRE_MAX_TEXT, (size_t)(seed % 7 + 1) * 512);
    net_fstate_next(&r.fs);
    bufferevent_setcb(bev, on_read, NULL, on_event, &r);
    bufferevent_enable(bev, EV_READ);

    /* Chunk sizes from the input's last byte (its first is the magic's
     * 'D' in every valid stream): from 1 byte, when a float body comes
     * through recv(), to most of the input in one write, when the
     * bufferevent has read the body with its header. */
    for (size_t fed = 0, w = 0; fed < len && !r.failed; w++) {
        size_t chunk = 1 + (size_t)((seed * 131u + w * 977u) % (seed % 4 == 0 ? 17u : len + 1));
        size_t k = len - fed < chunk ? len - fed : chunk;
        ssize_t n = write(sv[1], buf + fed, k);
        if (n > 0)
            fed += (size_t)n;
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    shutdown(sv[1], SHUT_WR);
    while (!r.failed && !r.eof)
        event_base_loop(base, EVLOOP_ONCE);

    if (r.frames != want || r.failed != want_err)
        abort();
    bufferevent_free(bev);
    event_base_free(base);
    close(sv[1]);
    free(r.body);
    free(r.small);
    return 0;
}
