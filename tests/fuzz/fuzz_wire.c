/* libFuzzer target for the frame decoder (wire.c). Build and run:
 *
 *   clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
 *         -fno-sanitize-recover=undefined -Isrc -o build/fuzz/fuzz_wire \
 *         tests/fuzz/fuzz_wire.c src/wire.c src/bf16.c src/util.c
 *   mkdir -p build/fuzz/corpus-fuzz_wire && cp -r tests/fuzz/corpus/wire/. build/fuzz/corpus-fuzz_wire/
 *   build/fuzz/fuzz_wire -max_total_time=60 -max_len=65536 build/fuzz/corpus-fuzz_wire
 *
 * The input is a byte stream as a connection would receive it. It is
 * decoded frame after frame from one buffer, and each frame's header again
 * from its every prefix, which must never be taken for a whole frame nor
 * err where the whole header does not (fuzz_netio reads the stream in
 * chunks through net_io.c's own reader). Every accepted header must re-encode
 * to the same bytes, and typed payloads are decoded too: a float body in
 * its dtype, a bf16 one three ways (out of place, in place in the upper
 * half of its destination as net_io.c receives it, and the naive twin),
 * and its bytes taken as float32s narrowed on the CPU's bf16 path against
 * the naive twin, so arbitrary bit patterns reach the conversions. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);

#define CAP (1u << 16)

#define MAXV 128

static int same_bits(float a, float b)
{
    return memcmp(&a, &b, 4) == 0;
}

static void check_body(const dtf_wire_hdr *h, const uint8_t *p)
{
    size_t n = h->count < MAXV ? (size_t)h->count : MAXV;
    float f[MAXV], g[MAXV];
    dtf_wire_get_body(f, p, n, h->aux);
    if (h->aux != DTF_DTYPE_BF16)
        return;
    memcpy(dtf_wire_body_dst(g, n, h->aux), p, 2 * n);
    dtf_wire_body_to_host(g, n, h->aux);
    for (size_t i = 0; i < n; i++) {
        uint16_t b = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
        float want = dtf_bf16_to_float_naive(b);
        if (!same_bits(f[i], g[i]) || !same_bits(f[i], want))
            abort();
    }
    /* the body's bytes as float32s, narrowed */
    size_t m = 2 * n / 4;
    uint16_t out[MAXV];
    memcpy(f, p, 4 * m);
    dtf_bf16_from_floats(out, f, m);
    for (size_t i = 0; i < m; i++)
        if (out[i] != dtf_bf16_from_float_naive(f[i]))
            abort();
}

static void check_payload(const dtf_wire_hdr *h, const uint8_t *p)
{
    if (h->type == DTF_MSG_HELLO) {
        dtf_wire_hello m;
        if (dtf_wire_decode_hello(p, h->len, &m) == 0) {
            uint8_t out[DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN];
            size_t n = dtf_wire_encode_hello(out, sizeof out, &m);
            if (n != h->len || memcmp(out, p, n) != 0)
                abort();
        }
    } else if (h->type == DTF_MSG_HELLO_REPLY) {
        dtf_wire_hello_reply m;
        if (dtf_wire_decode_hello_reply(p, h->len, &m) == 0) {
            uint8_t out[DTF_WIRE_HELLO_REPLY_LEN];
            if (dtf_wire_encode_hello_reply(out, sizeof out, &m) != h->len ||
                memcmp(out, p, h->len) != 0)
                abort();
        }
    } else if (h->type == DTF_MSG_PUSH || h->type == DTF_MSG_PULL_REPLY) {
        if (h->aux > DTF_DTYPE_MAX || h->len != dtf_wire_body_len(h->count, h->aux))
            abort();
        check_body(h, p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    /* Pass 1: whole frames from one buffer. */
    int frames1 = 0;
    size_t pos = 0;
    while (pos < len) {
        dtf_wire_hdr h;
        const uint8_t *p;
        size_t used;
        int r = dtf_wire_decode(buf + pos, len - pos, CAP, &h, &p, &used);
        if (r != DTF_WIRE_FRAME)
            break;
        if (used != DTF_WIRE_HDR + (size_t)h.len || used > len - pos || h.len > CAP)
            abort();
        uint8_t hb[DTF_WIRE_HDR];
        dtf_wire_encode_hdr(hb, &h);
        if (memcmp(hb, buf + pos, DTF_WIRE_HDR) != 0)
            abort();
        check_payload(&h, p);
        frames1++;
        pos += used;
    }

    /* Every header prefix the stream's frames start with, up to the first
     * bad one: a prefix is never a whole frame, and an error found in a
     * prefix (fields are checked as soon as they are buffered) stands once
     * the whole header is there. Reading the stream in chunks, as a
     * connection does, is fuzz_netio's: it drives net_io.c itself. */
    for (size_t at = 0, k = 0; at < len && k <= (size_t)frames1; k++) {
        size_t avail = len - at < DTF_WIRE_HDR ? len - at : DTF_WIRE_HDR;
        dtf_wire_hdr h;
        int whole = dtf_wire_decode_hdr(buf + at, avail, CAP, &h);
        for (size_t n = 0; n < avail; n++) {
            dtf_wire_hdr hp;
            int r = dtf_wire_decode_hdr(buf + at, n, CAP, &hp);
            if (r == DTF_WIRE_FRAME || (r == DTF_WIRE_ERROR && whole != DTF_WIRE_ERROR))
                abort();
        }
        if (whole != DTF_WIRE_FRAME)
            break;
        at += DTF_WIRE_HDR + (size_t)h.len;
    }
    return 0;
}
