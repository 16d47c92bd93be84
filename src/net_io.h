/* net_io: what the ps server (net_server.c) and the worker's client
 * (net_client.c) share, internal to them; the interface is net.h.
 *
 * Reading frames (both sides): the parse state lives in the connection
 * (net_fstate), so a partial frame resumes on the next read. The header is
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
 * push). */
#ifndef DTF_NET_IO_H
#define DTF_NET_IO_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "tensor.h"
#include "util.h"
#include "wire.h"

#define IO_CHUNK (1u << 20)    /* largest single write per callback (both sides), read (client) */

/* The parse state of one connection. */
typedef struct net_fstate {
    dtf_wire_hdr h;
    int have_hdr;    /* h is decoded and drained; its body is on its way */
    int low_set;     /* the read low watermark is raised for a body */
    uint8_t *dst;    /* a float body streams here; NULL: it waits in the input */
    size_t got;      /* body bytes in dst so far */
    size_t high;     /* the input buffer's cap (read high watermark) */
} net_fstate;

/* SIGPIPE ignored unless someone installed a handler. */
void net_ignore_sigpipe(void);
struct timeval net_tv(double seconds);
/* TCP_NODELAY, keepalive probes and TCP_USER_TIMEOUT from `keepalive` s. */
void net_tune_socket(evutil_socket_t fd, double keepalive);
/* Read/write sizes per callback and the input cap of a connection. */
void net_tune_bev(struct bufferevent *bev, net_fstate *fs, size_t text_max, size_t chunk);
/* Ready for the next frame's header. */
void net_fstate_next(net_fstate *fs);
/* 1: a header is decoded into fs->h; 0: need more bytes; -1: not a valid frame. */
int net_read_hdr(struct bufferevent *bev, net_fstate *fs, size_t max_payload);
/* What net_read_body found. */
typedef enum net_read {
    NET_READ_ERROR = -2,   /* the socket failed (dtf_error() says how) */
    NET_READ_CLOSED = -1,  /* the peer closed the connection mid-body */
    NET_READ_MORE = 0,     /* need more bytes */
    NET_READ_DONE = 1      /* fs->h's body is complete */
} net_read;
net_read net_read_body(struct bufferevent *bev, net_fstate *fs);

/* A body net_send_direct sends: what it is, and what becomes of the part
 * the socket does not take at once. */
typedef enum net_body {
    NET_BODY_BYTES,        /* raw bytes, the rest copied */
    NET_BODY_FLOATS,       /* float32s (little-endian on the wire), the rest copied:
                            * the memory may change before it has left (parameters) */
    NET_BODY_FLOATS_REF,   /* float32s, the rest referenced until sent, keep retained
                            * meanwhile (a worker's gradients: no copy) */
    NET_BODY_BYTES_REF     /* raw bytes, the rest referenced until sent: the caller
                            * keeps them put (a worker's gradients narrowed to bf16) */
} net_body;
/* Sends header hb and a body of len bytes. */
void net_send_direct(struct bufferevent *bev, const uint8_t *hb, const void *body, size_t len,
                     net_body kind, dtf_storage *keep);
/* Reads a text body of len bytes (keeping at most cap-1, control bytes as '?'). */
void net_remove_text(struct evbuffer *in, uint32_t len, char *buf, size_t cap);
/* Formats a log line and hands it to fn (NULL: nothing). */
void DTF_PRINTF(4, 0) net_vlog(dtf_log_fn fn, void *ud, int level, const char *fmt, va_list ap);

#endif
