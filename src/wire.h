/* wire: the frame format between workers and parameter servers.
 *
 * Pure functions over bytes: no I/O, no libevent, no allocation. Everything
 * is little-endian and encoded/decoded byte by byte (never cast into a
 * buffer). A frame is a fixed 40-byte header followed by len payload bytes:
 *
 *   off size field
 *    0   4   magic    "DTFW" (0x57465444 read as a little-endian u32)
 *    4   2   version  DTF_WIRE_VERSION
 *    6   1   type     dtf_msg_type
 *    7   1   aux      PUSH_REPLY: dtf_push_result; PUSH, PULL_REPLY: the
 *                     body's dtf_wire_dtype; HELLO_REPLY: DTF_HELLO_* bits, and
 *                     bits 2 on the ps's wire dtype (dtf_wire_hello_reply_aux); else 0
 *    8   4   id       request id; a reply echoes its request's id
 *   12   4   len      payload bytes, <= the receiver's cap (checked first)
 *   16   8   offset   first float of the range (PULL, PUSH and their replies,
 *                     HELLO_REPLY: the shard's range)
 *   24   8   count    floats in the range
 *   32   8   step     PULL: min_step; PUSH/WORKER_DONE: the worker's step;
 *                     replies: the shard's step (ps 0's is the global step)
 *
 * Payloads:
 *   HELLO        24 + token_len bytes: u8 role, u8 wire dtype, u16 token_len,
 *                u32 index, u64 P, u64 layout checksum, token bytes
 *   HELLO_REPLY  24 bytes: u32 ps index, u32 nps, u64 P, u32 workers,
 *                u32 replicas (sync: gradients averaged per step)
 *   PULL_REPLY, PUSH   count values in the dtype aux names: float32
 *                (len == 4 * count) or bfloat16 (len == 2 * count), little-endian
 *   STATS_REPLY  text, "key=value\n" lines
 *   ERROR        text: why the request (id) failed; the ps closes after it
 *   others       empty
 *
 * The wire dtype (wire_dtype=fp32|bf16) is agreed at HELLO: the worker says
 * its own, a ps with another refuses it (a mixed cluster) and one with the
 * same answers with it in HELLO_REPLY's aux. Only the float bodies change:
 * a bf16 body halves the bytes of every push and pull, while the ps keeps
 * its parameters and optimizer slots (and checkpoints) in float32, widening
 * what it receives and narrowing what it sends (bf16.h rounds to nearest
 * even). An fp32 wire is byte for byte the protocol that had no dtype (its
 * byte and bits were zero), and a peer that predates bf16 refuses a bf16
 * one at its first frame (a nonzero reserved byte or aux). */
#ifndef DTF_WIRE_H
#define DTF_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define DTF_WIRE_MAGIC 0x57465444u       /* bytes 'D' 'T' 'F' 'W' */
#define DTF_WIRE_VERSION 1
#define DTF_WIRE_HDR 40                  /* header bytes */
#define DTF_WIRE_MAX_PAYLOAD (64u << 20) /* default cap: 64 MiB */
#define DTF_WIRE_MAX_TOKEN 255
#define DTF_WIRE_HELLO_FIXED 24
#define DTF_WIRE_HELLO_REPLY_LEN 24
#define DTF_WIRE_MAX_TEXT (1u << 20)     /* ERROR and STATS_REPLY texts */

typedef enum {
    DTF_MSG_HELLO = 1,
    DTF_MSG_HELLO_REPLY = 2,
    DTF_MSG_PULL = 3,
    DTF_MSG_PULL_REPLY = 4,
    DTF_MSG_PUSH = 5,
    DTF_MSG_PUSH_REPLY = 6,
    DTF_MSG_GET_STEP = 7,
    DTF_MSG_STEP_REPLY = 8,
    DTF_MSG_WORKER_DONE = 9,
    DTF_MSG_DONE_REPLY = 10,
    DTF_MSG_STATS = 11,
    DTF_MSG_STATS_REPLY = 12,
    DTF_MSG_ERROR = 13
} dtf_msg_type;
#define DTF_MSG_MAX 13

/* What a ps did with a pushed gradient (PUSH_REPLY's aux). */
typedef enum {
    DTF_PUSH_APPLIED = 0,   /* applied (async), or completed a sync step */
    DTF_PUSH_PENDING = 1,   /* sync: summed, waiting for the other replicas */
    DTF_PUSH_STALE = 2,     /* sync: for a step already taken; dropped */
    DTF_PUSH_DUPLICATE = 3  /* sync: this worker already pushed this step; async: a
                             * re-sent push already applied; dropped */
} dtf_push_result;
#define DTF_PUSH_RESULT_MAX 3

typedef enum { DTF_ROLE_WORKER = 1, DTF_ROLE_OBSERVER = 2 } dtf_role;

/* What a float body carries (PUSH and PULL_REPLY aux, HELLO byte 1). */
typedef enum { DTF_DTYPE_FP32 = 0, DTF_DTYPE_BF16 = 1 } dtf_wire_dtype;
#define DTF_DTYPE_MAX 1

typedef enum {
    DTF_WIRE_ERROR = -1,      /* malformed: dtf_error() says why */
    DTF_WIRE_INCOMPLETE = 0,  /* valid so far; need more bytes */
    DTF_WIRE_FRAME = 1        /* a whole header (or frame) decoded */
} dtf_wire_status;

typedef struct dtf_wire_hdr {
    uint8_t type, aux;
    uint16_t version;
    uint32_t id;
    uint32_t len;
    uint64_t offset, count;
    int64_t step;
} dtf_wire_hdr;

typedef struct dtf_wire_hello {
    uint8_t role;            /* dtf_role */
    uint32_t index;
    uint64_t P;
    uint64_t checksum;       /* the parameter layout's checksum */
    const char *token;       /* token_len bytes, not NUL-terminated; decode
                              * points it into the payload */
    uint16_t token_len;
    uint8_t dtype;           /* dtf_wire_dtype the peer speaks */
} dtf_wire_hello;

typedef struct dtf_wire_hello_reply {
    uint32_t index, nps, workers, replicas;
    uint64_t P;
} dtf_wire_hello_reply;

const char *dtf_msg_name(int type); /* "PULL"; "?" when unknown */
const char *dtf_push_result_name(int r);
const char *dtf_wire_dtype_name(int dtype); /* "fp32", "bf16"; "?" when unknown */
/* "fp32" or "bf16" to its dtf_wire_dtype; -1 with dtf_error() set. */
int dtf_wire_dtype_parse(const char *name);
size_t dtf_wire_dtype_size(int dtype);     /* bytes a value: 4, 2 */

/* HELLO_REPLY's aux bits: what the ps says of itself. */
#define DTF_HELLO_SYNC 1u   /* it runs in sync mode */
#define DTF_HELLO_TOKEN 2u  /* it checked the HELLO's token (it has one) */
#define DTF_HELLO_DTYPE_SHIFT 2 /* bits 2 on: its dtf_wire_dtype */
/* The reply a request type gets (DTF_MSG_PULL -> DTF_MSG_PULL_REPLY, ...);
 * 0 for a type that is not a request. */
int dtf_msg_reply_type(int request_type);

/* A header with version and magic implied, everything else given. */
dtf_wire_hdr dtf_wire_make(int type, uint32_t id, uint64_t offset,
                           uint64_t count, int64_t step, uint32_t len);

/* Writes the 40 header bytes. */
void dtf_wire_encode_hdr(uint8_t out[DTF_WIRE_HDR], const dtf_wire_hdr *h);

/* Decodes a header from the n bytes at buf (n may be less than or more than
 * DTF_WIRE_HDR). Each field is checked as soon as its bytes are there, so
 * garbage is rejected after its first bytes: magic, version, type, aux,
 * then len against max_payload and against the type's rules (e.g. PUSH:
 * len == count * the size of aux's dtype; PULL: len == 0), all before
 * anything is allocated.
 * Returns DTF_WIRE_FRAME when the header is whole and valid, INCOMPLETE
 * when the bytes so far are valid but fewer than DTF_WIRE_HDR, ERROR with
 * dtf_error() set otherwise. */
int dtf_wire_decode_hdr(const void *buf, size_t n, size_t max_payload,
                        dtf_wire_hdr *h);

/* Decodes a whole frame: FRAME sets *h, *payload (pointing into buf) and
 * *used = DTF_WIRE_HDR + h->len; INCOMPLETE while the header or the payload
 * is not all there; ERROR with dtf_error() set. Typed payloads (HELLO,
 * HELLO_REPLY) are checked too. */
int dtf_wire_decode(const void *buf, size_t n, size_t max_payload,
                    dtf_wire_hdr *h, const uint8_t **payload, size_t *used);

/* Payload codecs. Encoders return the bytes written (<= cap), or 0 with
 * dtf_error() set when cap is too small or a field is out of range;
 * decoders return 0, or -1 with dtf_error() set. */
size_t dtf_wire_encode_hello(uint8_t *out, size_t cap, const dtf_wire_hello *m);
int dtf_wire_decode_hello(const uint8_t *p, size_t n, dtf_wire_hello *m);

/* What a ps admits at HELLO. */
typedef struct dtf_wire_admit {
    const char *token;       /* the cluster token; NULL (or token_len 0): any peer */
    size_t token_len;
    uint64_t checksum;       /* the model's layout checksum */
    uint64_t P;              /* and its number of parameters */
    uint32_t workers;        /* a worker's index must be below this */
    int dtype;               /* the ps's wire dtype: the peer must speak it */
} dtf_wire_admit;

/* Decodes a HELLO payload and decides whether the ps admits the peer:
 * 0 (admitted, *m filled in); -1, malformed (dtf_error() says why); -2,
 * refused: a wrong or missing token, another model, a worker index out of
 * range (dtf_error() says which; *m holds what the peer sent). The token
 * is compared in a time that depends only on its expected length, and no
 * message ever quotes it. */
int dtf_wire_admit_hello(const uint8_t *p, size_t n, const dtf_wire_admit *a,
                         dtf_wire_hello *m);

size_t dtf_wire_encode_hello_reply(uint8_t *out, size_t cap,
                                   const dtf_wire_hello_reply *m);
int dtf_wire_decode_hello_reply(const uint8_t *p, size_t n, dtf_wire_hello_reply *m);

/* HELLO_REPLY's aux byte: the ps's mode, whether it checked a token, and
 * its wire dtype (fp32 leaves the byte as it was before there was one). */
uint8_t dtf_wire_hello_reply_aux(int sync, int token, int dtype);
int dtf_wire_hello_reply_dtype(uint8_t aux);
int dtf_wire_check_hello_reply(uint8_t aux, int want);

/* A whole frame (header + payload) into out; returns its size, or 0 with
 * dtf_error() set when cap is too small. Sets h->len = payload_len. */
size_t dtf_wire_frame(uint8_t *out, size_t cap, dtf_wire_hdr *h,
                      const void *payload, uint32_t payload_len);

/* Float bodies in a wire dtype (PUSH, PULL_REPLY).
 *
 * A body is received straight into its destination, n host floats at f:
 * dtf_wire_body_dst says where its bytes go (f itself for fp32; for bf16
 * the upper half of f's memory, byte 2n on), and dtf_wire_body_to_host then
 * turns them into n host floats in place (fp32: byte order; bf16: widened
 * front to back, which never overwrites a value not yet read). */
size_t dtf_wire_body_len(uint64_t count, int dtype);   /* count * dtype size */
uint8_t *dtf_wire_body_dst(float *f, uint64_t n, int dtype);
void dtf_wire_body_to_host(float *f, uint64_t n, int dtype);
/* n floats as a body (out gets dtf_wire_body_len bytes), and back. */
void dtf_wire_put_body(uint8_t *out, const float *f, size_t n, int dtype);
void dtf_wire_get_body(float *f, const uint8_t *in, size_t n, int dtype);
/* A PUSH or PULL_REPLY header's dtype (aux) against the one the
 * connection agreed at HELLO: 0, or -1 with dtf_error() naming both. */
int dtf_wire_check_dtype(const dtf_wire_hdr *h, int agreed);

/* Float payloads are little-endian float32. On a little-endian host these
 * are plain copies; on a big-endian one they swap bytes. */
void dtf_wire_put_floats(uint8_t *out, const float *f, size_t n);
void dtf_wire_get_floats(float *f, const uint8_t *in, size_t n);
/* Converts n floats received as raw wire bytes into host order, in place
 * (nothing to do on a little-endian host). */
void dtf_wire_floats_to_host(float *f, size_t n);
int dtf_wire_host_is_le(void);

/* Little-endian scalar helpers. */
void dtf_put_u16(uint8_t *p, uint16_t v);
void dtf_put_u32(uint8_t *p, uint32_t v);
void dtf_put_u64(uint8_t *p, uint64_t v);
uint16_t dtf_get_u16(const uint8_t *p);
uint32_t dtf_get_u32(const uint8_t *p);
uint64_t dtf_get_u64(const uint8_t *p);

#endif
