/* Unit tests for wire.c: every message round-trips; truncated, oversized
 * and corrupted frames are rejected, each as soon as the bad byte is
 * buffered; decoding byte by byte gives the same frames; bf16 bodies, the
 * wire dtype at HELLO and a mixed cluster's refusal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "harness.h"
#include "util.h"
#include "wire.h"

#define CAP (1u << 20)

static uint8_t buf[1 << 16];

/* One valid frame of each type into buf; returns its size. */
static size_t make_frame(int type, uint8_t *out, size_t cap)
{
    static float f[5] = {1.5f, -2.25f, 0.0f, 3e-8f, 1e30f};
    uint8_t p[512];
    uint32_t plen = 0;
    dtf_wire_hdr h = dtf_wire_make(type, 77, 0, 0, 0, 0);
    switch (type) {
    case DTF_MSG_HELLO: {
        dtf_wire_hello m = {DTF_ROLE_WORKER, 3, 79510, 0x0123456789abcdefULL, "s3cret", 6,
                            DTF_DTYPE_FP32};
        plen = (uint32_t)dtf_wire_encode_hello(p, sizeof p, &m);
        break;
    }
    case DTF_MSG_HELLO_REPLY: {
        dtf_wire_hello_reply m = {1, 2, 2, 2, 79510};
        plen = (uint32_t)dtf_wire_encode_hello_reply(p, sizeof p, &m);
        h.offset = 39755;
        h.count = 39755;
        h.step = 12;
        h.aux = 1;
        break;
    }
    case DTF_MSG_PULL:
        h.offset = 100;
        h.count = 5;
        h.step = 41;
        break;
    case DTF_MSG_PULL_REPLY:
    case DTF_MSG_PUSH:
        h.offset = 100;
        h.count = 5;
        h.step = -1;
        dtf_wire_put_floats(p, f, 5);
        plen = 20;
        break;
    case DTF_MSG_PUSH_REPLY:
        h.aux = DTF_PUSH_STALE;
        h.step = 99;
        break;
    case DTF_MSG_STATS_REPLY:
        plen = (uint32_t)snprintf((char *)p, sizeof p, "index=0\nstep=3\n");
        break;
    case DTF_MSG_ERROR:
        plen = (uint32_t)snprintf((char *)p, sizeof p, "wrong token");
        break;
    default:
        h.step = 7;
        break;
    }
    return dtf_wire_frame(out, cap, &h, p, plen);
}

TEST(every_message_round_trips)
{
    for (int type = 1; type <= DTF_MSG_MAX; type++) {
        size_t n = make_frame(type, buf, sizeof buf);
        CHECK(n >= DTF_WIRE_HDR);
        dtf_wire_hdr h;
        const uint8_t *pl = NULL;
        size_t used = 0;
        int r = dtf_wire_decode(buf, n, CAP, &h, &pl, &used);
        if (r != DTF_WIRE_FRAME) {
            FAIL("%s: %s", dtf_msg_name(type), dtf_error());
            continue;
        }
        CHECK_EQ_INT(used, n);
        CHECK_EQ_INT(h.type, type);
        CHECK_EQ_INT(h.id, 77);
        CHECK_EQ_INT(h.version, DTF_WIRE_VERSION);
        CHECK(pl == buf + DTF_WIRE_HDR);
        if (type == DTF_MSG_HELLO) {
            dtf_wire_hello m;
            CHECK_EQ_INT(dtf_wire_decode_hello(pl, h.len, &m), 0);
            CHECK_EQ_INT(m.role, DTF_ROLE_WORKER);
            CHECK_EQ_INT(m.index, 3);
            CHECK_EQ_INT(m.P, 79510);
            CHECK(m.checksum == 0x0123456789abcdefULL);
            CHECK_EQ_INT(m.token_len, 6);
            CHECK(memcmp(m.token, "s3cret", 6) == 0);
        } else if (type == DTF_MSG_HELLO_REPLY) {
            dtf_wire_hello_reply m;
            CHECK_EQ_INT(dtf_wire_decode_hello_reply(pl, h.len, &m), 0);
            CHECK_EQ_INT(m.index, 1);
            CHECK_EQ_INT(m.nps, 2);
            CHECK_EQ_INT(m.workers, 2);
            CHECK_EQ_INT(m.replicas, 2);
            CHECK_EQ_INT(m.P, 79510);
            CHECK_EQ_INT(h.offset, 39755);
            CHECK_EQ_INT(h.count, 39755);
            CHECK_EQ_INT(h.step, 12);
            CHECK_EQ_INT(h.aux, 1);
        } else if (type == DTF_MSG_PUSH || type == DTF_MSG_PULL_REPLY) {
            float g[5];
            CHECK_EQ_INT(h.len, 20);
            CHECK_EQ_INT(h.offset, 100);
            CHECK_EQ_INT(h.count, 5);
            CHECK_EQ_INT(h.step, -1);
            dtf_wire_get_floats(g, pl, 5);
            CHECK(g[0] == 1.5f && g[1] == -2.25f && g[3] == 3e-8f && g[4] == 1e30f);
        } else if (type == DTF_MSG_PUSH_REPLY) {
            CHECK_EQ_INT(h.aux, DTF_PUSH_STALE);
            CHECK_EQ_INT(h.step, 99);
        } else if (type == DTF_MSG_STATS_REPLY) {
            CHECK_EQ_INT(h.len, 15);
            CHECK(memcmp(pl, "index=0\nstep=3\n", 15) == 0);
        }
    }
}

TEST(header_is_little_endian_byte_for_byte)
{
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_PULL, 0x04030201u, 0x0102030405060708ULL, 9,
                                   -2, 0);
    uint8_t b[DTF_WIRE_HDR];
    dtf_wire_encode_hdr(b, &h);
    CHECK(memcmp(b, "DTFW", 4) == 0);
    CHECK(b[4] == DTF_WIRE_VERSION && b[5] == 0);
    CHECK(b[6] == DTF_MSG_PULL && b[7] == 0);
    CHECK(b[8] == 1 && b[9] == 2 && b[10] == 3 && b[11] == 4);
    CHECK(b[16] == 8 && b[23] == 1);
    CHECK(b[24] == 9);
    CHECK(b[32] == 0xfe && b[39] == 0xff); /* -2 in two's complement */
}

TEST(truncated_frames_are_incomplete)
{
    for (int type = 1; type <= DTF_MSG_MAX; type++) {
        size_t n = make_frame(type, buf, sizeof buf);
        for (size_t k = 0; k < n; k++) {
            dtf_wire_hdr h;
            const uint8_t *pl;
            size_t used;
            int r = dtf_wire_decode(buf, k, CAP, &h, &pl, &used);
            if (r != DTF_WIRE_INCOMPLETE) {
                FAIL("%s prefix of %zu/%zu bytes gave %d", dtf_msg_name(type), k, n, r);
                break;
            }
        }
    }
}

TEST(byte_by_byte_decoding_matches)
{
    /* A stream of every frame type, fed one byte at a time to a decoder
     * that keeps its own buffer, as a connection does. */
    static uint8_t stream[1 << 16];
    size_t total = 0;
    for (int type = 1; type <= DTF_MSG_MAX; type++)
        total += make_frame(type, stream + total, sizeof stream - total);
    uint8_t acc[4096];
    size_t have = 0;
    int seen = 0;
    for (size_t i = 0; i < total; i++) {
        acc[have++] = stream[i];
        dtf_wire_hdr h;
        const uint8_t *pl;
        size_t used;
        int r = dtf_wire_decode(acc, have, CAP, &h, &pl, &used);
        if (r == DTF_WIRE_ERROR) {
            FAIL("error at byte %zu: %s", i, dtf_error());
            return;
        }
        if (r == DTF_WIRE_FRAME) {
            seen++;
            CHECK_EQ_INT(h.type, seen);
            memmove(acc, acc + used, have - used);
            have -= used;
        }
    }
    CHECK_EQ_INT(seen, DTF_MSG_MAX);
    CHECK_EQ_INT(have, 0);
}

/* Corrupts byte `at` of a valid frame of `type` and checks that the header
 * decoder fails once exactly `fail_at` bytes are buffered (not earlier) and
 * that the message mentions `what`. */
static void check_corrupt(int type, size_t at, uint8_t val, size_t fail_at, const char *what)
{
    size_t n = make_frame(type, buf, sizeof buf);
    buf[at] = val;
    for (size_t k = 1; k <= n && k <= DTF_WIRE_HDR; k++) {
        dtf_wire_hdr h;
        int r = dtf_wire_decode_hdr(buf, k, CAP, &h);
        if (k < fail_at && r != DTF_WIRE_INCOMPLETE) {
            FAIL("%s: byte %zu = %u: gave %d with %zu bytes (%s)", dtf_msg_name(type), at, val,
                 r, k, dtf_error());
            return;
        }
        if (k == fail_at) {
            if (r != DTF_WIRE_ERROR)
                FAIL("%s: byte %zu = %u: not rejected at %zu bytes", dtf_msg_name(type), at,
                     val, k);
            else
                CHECK_STR_CONTAINS(dtf_error(), what);
            return;
        }
    }
    FAIL("%s: byte %zu = %u: never rejected", dtf_msg_name(type), at, val);
}

TEST(corrupted_headers_fail_on_their_byte)
{
    check_corrupt(DTF_MSG_PULL, 0, 'G', 1, "magic");          /* "GET / HTTP" */
    check_corrupt(DTF_MSG_PULL, 3, 'X', 4, "magic");
    check_corrupt(DTF_MSG_PULL, 4, 9, 6, "version");
    check_corrupt(DTF_MSG_PULL, 5, 1, 6, "version");
    check_corrupt(DTF_MSG_PULL, 6, 0, 7, "unknown message type 0");
    check_corrupt(DTF_MSG_PULL, 6, 14, 7, "unknown message type 14");
    check_corrupt(DTF_MSG_PULL, 7, 1, 8, "aux");
    check_corrupt(DTF_MSG_PUSH_REPLY, 7, 4, 8, "aux");
    check_corrupt(DTF_MSG_PUSH, 7, 2, 8, "aux");              /* no wire dtype 2 */
    check_corrupt(DTF_MSG_PULL_REPLY, 7, 0x80, 8, "aux");
    check_corrupt(DTF_MSG_HELLO_REPLY, 7, 8, 8, "aux");       /* sync, token bits, dtypes 0-1 */
    check_corrupt(DTF_MSG_PULL, 7, DTF_DTYPE_BF16, 8, "aux"); /* a PULL has no body */
    /* bf16 named, but the 20 bytes of 5 float32s: caught once count is in */
    check_corrupt(DTF_MSG_PUSH, 7, DTF_DTYPE_BF16, 40, "does not hold its 5 bf16 values");
    check_corrupt(DTF_MSG_PULL, 12, 4, 16, "expected none");  /* PULL with a body */
    check_corrupt(DTF_MSG_STATS, 12, 1, 16, "expected none");
    check_corrupt(DTF_MSG_HELLO_REPLY, 12, 23, 16, "HELLO_REPLY");
    check_corrupt(DTF_MSG_HELLO, 12, 3, 16, "HELLO payload");
    check_corrupt(DTF_MSG_PUSH, 24, 6, 40, "does not hold"); /* count != len / 4 */
    check_corrupt(DTF_MSG_PULL_REPLY, 24, 4, 40, "does not hold");
}

TEST(oversized_frames_fail_before_allocation)
{
    /* A PUSH announcing 1 GiB: rejected from the 16 header bytes that hold
     * its length, before any body could be read or allocated. */
    uint8_t b[DTF_WIRE_HDR];
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_PUSH, 1, 0, 1u << 28, 0, 0);
    h.len = 1u << 30;
    dtf_wire_encode_hdr(b, &h);
    dtf_wire_hdr d;
    CHECK_EQ_INT(dtf_wire_decode_hdr(b, 16, DTF_WIRE_MAX_PAYLOAD, &d), DTF_WIRE_ERROR);
    CHECK_STR_CONTAINS(dtf_error(), "over the cap");
    /* Right at the cap is fine; one float over is not. */
    h = dtf_wire_make(DTF_MSG_PUSH, 1, 0, CAP / 4, 0, CAP);
    dtf_wire_encode_hdr(b, &h);
    CHECK_EQ_INT(dtf_wire_decode_hdr(b, DTF_WIRE_HDR, CAP, &d), DTF_WIRE_FRAME);
    h = dtf_wire_make(DTF_MSG_PUSH, 1, 0, CAP / 4 + 1, 0, CAP + 4);
    dtf_wire_encode_hdr(b, &h);
    CHECK_EQ_INT(dtf_wire_decode_hdr(b, DTF_WIRE_HDR, CAP, &d), DTF_WIRE_ERROR);
    /* Texts have their own cap. */
    h = dtf_wire_make(DTF_MSG_ERROR, 1, 0, 0, 0, DTF_WIRE_MAX_TEXT + 1);
    dtf_wire_encode_hdr(b, &h);
    CHECK_EQ_INT(dtf_wire_decode_hdr(b, DTF_WIRE_HDR, DTF_WIRE_MAX_PAYLOAD, &d), DTF_WIRE_ERROR);
    /* count * 4 overflowing 32 bits cannot sneak past len == 4 * count. */
    h = dtf_wire_make(DTF_MSG_PUSH, 1, 0, (1ULL << 62) + 1, 0, 4);
    dtf_wire_encode_hdr(b, &h);
    CHECK_EQ_INT(dtf_wire_decode_hdr(b, DTF_WIRE_HDR, CAP, &d), DTF_WIRE_ERROR);
    /* A range running past 2^64. */
    h = dtf_wire_make(DTF_MSG_PULL, 1, UINT64_MAX - 2, 5, 0, 0);
    dtf_wire_encode_hdr(b, &h);
    CHECK_EQ_INT(dtf_wire_decode_hdr(b, DTF_WIRE_HDR, CAP, &d), DTF_WIRE_ERROR);
    CHECK_STR_CONTAINS(dtf_error(), "overflows");
}

TEST(hello_payload_checks)
{
    uint8_t p[300];
    dtf_wire_hello m = {DTF_ROLE_OBSERVER, 0, 10, 1, "", 0, DTF_DTYPE_FP32}, d;
    size_t n = dtf_wire_encode_hello(p, sizeof p, &m);
    CHECK_EQ_INT(n, DTF_WIRE_HELLO_FIXED);
    CHECK_EQ_INT(dtf_wire_decode_hello(p, n, &d), 0);
    CHECK_EQ_INT(d.role, DTF_ROLE_OBSERVER);
    CHECK_EQ_INT(d.token_len, 0);
    /* token length not matching the payload */
    dtf_put_u16(p + 2, 5);
    CHECK_EQ_INT(dtf_wire_decode_hello(p, n, &d), -1);
    CHECK_STR_CONTAINS(dtf_error(), "token");
    dtf_put_u16(p + 2, 0);
    p[0] = 9;
    CHECK_EQ_INT(dtf_wire_decode_hello(p, n, &d), -1);
    CHECK_STR_CONTAINS(dtf_error(), "role");
    p[0] = DTF_ROLE_WORKER;
    CHECK_EQ_INT(dtf_wire_decode_hello(p, n - 1, &d), -1);
    /* a too-long token cannot be encoded */
    char tok[300];
    memset(tok, 'a', sizeof tok);
    dtf_wire_hello big = {DTF_ROLE_WORKER, 0, 10, 1, tok, 256, DTF_DTYPE_FP32};
    CHECK_EQ_INT(dtf_wire_encode_hello(p, sizeof p, &big), 0);
    /* buffer too small */
    CHECK_EQ_INT(dtf_wire_encode_hello(p, 10, &m), 0);
    /* a HELLO_REPLY naming a ps index beyond nps */
    dtf_wire_hello_reply r = {2, 2, 2, 2, 10}, rd;
    dtf_wire_encode_hello_reply(p, sizeof p, &r);
    CHECK_EQ_INT(dtf_wire_decode_hello_reply(p, DTF_WIRE_HELLO_REPLY_LEN, &rd), -1);
    /* whole-frame decode checks the HELLO payload too */
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_HELLO, 1, 0, 0, 0, 0);
    m.role = 7;
    uint8_t hp[64];
    n = dtf_wire_encode_hello(hp, sizeof hp, &m);
    size_t fn = dtf_wire_frame(buf, sizeof buf, &h, hp, (uint32_t)n);
    dtf_wire_hdr dh;
    const uint8_t *pl;
    size_t used;
    CHECK_EQ_INT(dtf_wire_decode(buf, fn, CAP, &dh, &pl, &used), DTF_WIRE_ERROR);
}

TEST(hello_admission)
{
    dtf_wire_admit a = {"sesame", 6, 0xabcdefULL, 1000, 2, DTF_DTYPE_FP32};
    uint8_t p[DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN];
    dtf_wire_hello in = {DTF_ROLE_WORKER, 1, 1000, 0xabcdefULL, "sesame", 6, DTF_DTYPE_FP32}, m;
    size_t n = dtf_wire_encode_hello(p, sizeof p, &in);
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), 0);
    CHECK_EQ_INT(m.index, 1);
    /* a wrong token, one byte short, one byte long, none: refused, never quoted */
    const char *bad[] = {"sesamE", "sesam", "sesame!", ""};
    const char *why[] = {"wrong token", "wrong token", "wrong token", "this ps needs a token"};
    for (int i = 0; i < 4; i++) {
        in.token = bad[i];
        in.token_len = (uint16_t)strlen(bad[i]);
        n = dtf_wire_encode_hello(p, sizeof p, &in);
        CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), -2);
        CHECK_STR_CONTAINS(dtf_error(), why[i]);
        CHECK(!strstr(dtf_error(), "sesam"));
    }
    in.token = "sesame";
    in.token_len = 6;
    in.checksum = 0xabcdeeULL;
    n = dtf_wire_encode_hello(p, sizeof p, &in);
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), -2);
    CHECK_STR_CONTAINS(dtf_error(), "worker runs a different model: layout checksum "
                       "0000000000abcdee, ps has 0000000000abcdef");
    in.checksum = 0xabcdefULL;
    in.P = 999;
    n = dtf_wire_encode_hello(p, sizeof p, &in);
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), -2);
    CHECK_STR_CONTAINS(dtf_error(), "(999 parameters, ps has 1000)");
    in.P = 1000;
    in.index = 2;
    n = dtf_wire_encode_hello(p, sizeof p, &in);
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), -2);
    CHECK_STR_CONTAINS(dtf_error(), "worker index 2 out of range: this ps serves 2 workers");
    in.role = DTF_ROLE_OBSERVER; /* an observer's index is not a worker's */
    n = dtf_wire_encode_hello(p, sizeof p, &in);
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), 0);
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n - 1, &a, &m), -1); /* malformed */
    /* no token configured: any token goes */
    a.token = NULL;
    a.token_len = 0;
    in.token = "whatever";
    in.token_len = 8;
    n = dtf_wire_encode_hello(p, sizeof p, &in);
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), 0);
}

/* ---- the wire dtype ------------------------------------------------------------ */

/* A bf16 PUSH or PULL_REPLY of n values from f: aux names bf16, the body is
 * 2n bytes. */
static size_t bf16_frame(int type, const float *f, uint32_t n, uint8_t *out, size_t cap)
{
    uint8_t body[256];
    dtf_wire_put_body(body, f, n, DTF_DTYPE_BF16);
    dtf_wire_hdr h = dtf_wire_make(type, 5, 1000, n, 7, 0);
    h.aux = DTF_DTYPE_BF16;
    return dtf_wire_frame(out, cap, &h, body, (uint32_t)dtf_wire_body_len(n, DTF_DTYPE_BF16));
}

TEST(bf16_bodies_round_trip)
{
    static const float f[7] = {1.0f, -2.25f, 3.14159265f, 1e-3f, -65504.0f, 1e30f, 0.0f};
    for (int type = DTF_MSG_PULL_REPLY; type <= DTF_MSG_PUSH; type++) {
        size_t n = bf16_frame(type, f, 7, buf, sizeof buf);
        CHECK_EQ_INT(n, DTF_WIRE_HDR + 14);
        dtf_wire_hdr h;
        const uint8_t *pl;
        size_t used;
        CHECK_EQ_INT(dtf_wire_decode(buf, n, CAP, &h, &pl, &used), DTF_WIRE_FRAME);
        CHECK_EQ_INT(h.aux, DTF_DTYPE_BF16);
        CHECK_EQ_INT(h.len, 14);
        CHECK_EQ_INT(h.count, 7);
        CHECK_EQ_INT(dtf_wire_check_dtype(&h, DTF_DTYPE_BF16), 0);
        CHECK_EQ_INT(dtf_wire_check_dtype(&h, DTF_DTYPE_FP32), -1);
        CHECK_STR_CONTAINS(dtf_error(), "in bf16 on a connection that agreed wire_dtype=fp32");
        /* each value is its bf16 rounding, little-endian on the wire */
        float g[7];
        dtf_wire_get_body(g, pl, 7, h.aux);
        for (int i = 0; i < 7; i++) {
            uint16_t want = dtf_bf16_from_float_naive(f[i]);
            CHECK_EQ_INT(dtf_get_u16(pl + 2 * i), want);
            CHECK(g[i] == dtf_bf16_to_float_naive(want));
        }
        /* received into the upper half of the destination, widened in place */
        float dst[7];
        memset(dst, 0xff, sizeof dst);
        memcpy(dtf_wire_body_dst(dst, 7, h.aux), pl, h.len);
        CHECK(dtf_wire_body_dst(dst, 7, h.aux) == (uint8_t *)dst + 14);
        dtf_wire_body_to_host(dst, 7, h.aux);
        CHECK(memcmp(dst, g, sizeof g) == 0);
        /* every prefix is incomplete */
        for (size_t k = 0; k < n; k++)
            if (dtf_wire_decode(buf, k, CAP, &h, &pl, &used) != DTF_WIRE_INCOMPLETE) {
                FAIL("%s bf16 prefix of %zu bytes", dtf_msg_name(type), k);
                break;
            }
    }
    /* an fp32 body is received in place, byte order fixed in place */
    float d32[3];
    CHECK(dtf_wire_body_dst(d32, 3, DTF_DTYPE_FP32) == (uint8_t *)d32);
    uint8_t b32[12];
    dtf_wire_put_body(b32, (const float[]){1.5f, -2.0f, 7.0f}, 3, DTF_DTYPE_FP32);
    memcpy(d32, b32, 12);
    dtf_wire_body_to_host(d32, 3, DTF_DTYPE_FP32);
    CHECK(d32[0] == 1.5f && d32[1] == -2.0f && d32[2] == 7.0f);
    CHECK_EQ_INT(dtf_wire_body_len(5, DTF_DTYPE_FP32), 20);
    CHECK_EQ_INT(dtf_wire_body_len(5, DTF_DTYPE_BF16), 10);
    /* a bf16 count whose 2 * count passes 32 bits */
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_PUSH, 1, 0, (1ULL << 63) + 1, 0, 2);
    h.aux = DTF_DTYPE_BF16;
    uint8_t hb[DTF_WIRE_HDR];
    dtf_wire_encode_hdr(hb, &h);
    CHECK_EQ_INT(dtf_wire_decode_hdr(hb, DTF_WIRE_HDR, CAP, &h), DTF_WIRE_ERROR);
}

TEST(hello_carries_the_wire_dtype)
{
    uint8_t p[64];
    dtf_wire_hello m = {DTF_ROLE_WORKER, 0, 10, 1, "", 0, DTF_DTYPE_BF16}, d;
    size_t n = dtf_wire_encode_hello(p, sizeof p, &m);
    CHECK_EQ_INT(p[1], DTF_DTYPE_BF16);
    CHECK_EQ_INT(dtf_wire_decode_hello(p, n, &d), 0);
    CHECK_EQ_INT(d.dtype, DTF_DTYPE_BF16);
    p[1] = 2;
    CHECK_EQ_INT(dtf_wire_decode_hello(p, n, &d), -1);
    CHECK_STR_CONTAINS(dtf_error(), "unknown wire dtype 2");
    m.dtype = 2;
    CHECK_EQ_INT(dtf_wire_encode_hello(p, sizeof p, &m), 0);
    /* fp32 is the byte that was reserved (0): an fp32 HELLO is the old one */
    m.dtype = DTF_DTYPE_FP32;
    dtf_wire_encode_hello(p, sizeof p, &m);
    CHECK_EQ_INT(p[1], 0);
    /* HELLO_REPLY's aux: bit 0 sync, bit 1 token, then the dtype; fp32
     * leaves it as it was */
    CHECK_EQ_INT(dtf_wire_hello_reply_aux(0, 0, DTF_DTYPE_FP32), 0);
    CHECK_EQ_INT(dtf_wire_hello_reply_aux(1, 0, DTF_DTYPE_FP32), DTF_HELLO_SYNC);
    CHECK_EQ_INT(dtf_wire_hello_reply_aux(0, 1, DTF_DTYPE_FP32), DTF_HELLO_TOKEN);
    for (int sync = 0; sync < 2; sync++)
        for (int token = 0; token < 2; token++)
            for (int dt = 0; dt <= DTF_DTYPE_MAX; dt++) {
                uint8_t aux = dtf_wire_hello_reply_aux(sync, token, dt);
                CHECK_EQ_INT((aux & DTF_HELLO_SYNC) != 0, sync);
                CHECK_EQ_INT((aux & DTF_HELLO_TOKEN) != 0, token);
                CHECK_EQ_INT(dtf_wire_hello_reply_dtype(aux), dt);
                CHECK_EQ_INT(dtf_wire_check_hello_reply(aux, dt), 0);
                /* the header decoder takes every such aux */
                dtf_wire_hdr h = dtf_wire_make(DTF_MSG_HELLO_REPLY, 1, 0, 10, 0,
                                               DTF_WIRE_HELLO_REPLY_LEN);
                h.aux = aux;
                uint8_t hb[DTF_WIRE_HDR];
                dtf_wire_encode_hdr(hb, &h);
                CHECK_EQ_INT(dtf_wire_decode_hdr(hb, DTF_WIRE_HDR, CAP, &h), DTF_WIRE_FRAME);
            }
    /* and refuses a dtype past the last (aux 8: bits 2 on hold 2) */
    {
        dtf_wire_hdr h = dtf_wire_make(DTF_MSG_HELLO_REPLY, 1, 0, 10, 0, DTF_WIRE_HELLO_REPLY_LEN);
        h.aux = (uint8_t)((DTF_DTYPE_MAX + 1) << DTF_HELLO_DTYPE_SHIFT);
        uint8_t hb[DTF_WIRE_HDR];
        dtf_wire_encode_hdr(hb, &h);
        CHECK_EQ_INT(dtf_wire_decode_hdr(hb, DTF_WIRE_HDR, CAP, &h), DTF_WIRE_ERROR);
    }
    CHECK_EQ_INT(dtf_wire_check_hello_reply(dtf_wire_hello_reply_aux(1, 1, DTF_DTYPE_BF16),
                                            DTF_DTYPE_FP32), -1);
    CHECK_STR_CONTAINS(dtf_error(), "this ps uses wire_dtype=bf16 but this task uses "
                       "wire_dtype=fp32");
}

TEST(a_mixed_cluster_is_refused_at_hello)
{
    dtf_wire_admit a = {"sesame", 6, 0xabcdefULL, 1000, 2, DTF_DTYPE_FP32};
    uint8_t p[DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN];
    dtf_wire_hello in = {DTF_ROLE_WORKER, 1, 1000, 0xabcdefULL, "sesame", 6, DTF_DTYPE_BF16}, m;
    size_t n = dtf_wire_encode_hello(p, sizeof p, &in);
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), -2);
    CHECK_STR_CONTAINS(dtf_error(), "worker 1 uses wire_dtype=bf16 but this ps uses "
                       "wire_dtype=fp32 (a mixed cluster)");
    CHECK_EQ_INT(m.dtype, DTF_DTYPE_BF16);
    a.dtype = DTF_DTYPE_BF16;
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), 0);
    in.dtype = DTF_DTYPE_FP32;
    in.role = DTF_ROLE_OBSERVER;
    n = dtf_wire_encode_hello(p, sizeof p, &in);
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), -2);
    CHECK_STR_CONTAINS(dtf_error(), "observer 1 uses wire_dtype=fp32 but this ps uses "
                       "wire_dtype=bf16");
    /* a stranger learns nothing about the dtype before its token is right */
    in.token = "sesamE";
    n = dtf_wire_encode_hello(p, sizeof p, &in);
    CHECK_EQ_INT(dtf_wire_admit_hello(p, n, &a, &m), -2);
    CHECK_STR_CONTAINS(dtf_error(), "wrong token");
}

TEST(dtype_names)
{
    CHECK(strcmp(dtf_wire_dtype_name(DTF_DTYPE_FP32), "fp32") == 0);
    CHECK(strcmp(dtf_wire_dtype_name(DTF_DTYPE_BF16), "bf16") == 0);
    CHECK(strcmp(dtf_wire_dtype_name(2), "?") == 0);
    CHECK_EQ_INT(dtf_wire_dtype_parse("fp32"), DTF_DTYPE_FP32);
    CHECK_EQ_INT(dtf_wire_dtype_parse("bf16"), DTF_DTYPE_BF16);
    CHECK_EQ_INT(dtf_wire_dtype_parse("fp16"), -1);
    CHECK_STR_CONTAINS(dtf_error(), "wire_dtype 'fp16' is not fp32 or bf16");
    CHECK_EQ_INT(dtf_wire_dtype_size(DTF_DTYPE_FP32), 4);
    CHECK_EQ_INT(dtf_wire_dtype_size(DTF_DTYPE_BF16), 2);
}

TEST(random_corruption_never_crashes)
{
    /* Flipped bytes either fail cleanly or still decode to a frame whose
     * length fits what is buffered. (The fuzzer does this at scale.) */
    dtf_rng rng;
    dtf_rng_seed(&rng, 42);
    int errors = 0, frames = 0;
    for (int iter = 0; iter < 20000; iter++) {
        int type = 1 + (int)dtf_rng_below(&rng, DTF_MSG_MAX);
        size_t n = make_frame(type, buf, sizeof buf);
        int flips = 1 + (int)dtf_rng_below(&rng, 3);
        for (int f = 0; f < flips; f++)
            buf[dtf_rng_below(&rng, n)] ^= (uint8_t)(1 + dtf_rng_below(&rng, 255));
        dtf_wire_hdr h;
        const uint8_t *pl;
        size_t used;
        int r = dtf_wire_decode(buf, n, CAP, &h, &pl, &used);
        if (r == DTF_WIRE_ERROR)
            errors++;
        if (r == DTF_WIRE_FRAME) {
            frames++;
            CHECK(used <= n);
        }
    }
    CHECK(errors > 2000); /* most flips hit checked fields */
    CHECK(frames > 0);
}

TEST(names)
{
    CHECK(strcmp(dtf_msg_name(DTF_MSG_PUSH), "PUSH") == 0);
    CHECK(strcmp(dtf_msg_name(0), "?") == 0);
    CHECK(strcmp(dtf_msg_name(99), "?") == 0);
    CHECK(strcmp(dtf_push_result_name(DTF_PUSH_DUPLICATE), "duplicate") == 0);
}

TEST(each_request_has_its_reply_type)
{
    CHECK_EQ_INT(dtf_msg_reply_type(DTF_MSG_HELLO), DTF_MSG_HELLO_REPLY);
    CHECK_EQ_INT(dtf_msg_reply_type(DTF_MSG_PULL), DTF_MSG_PULL_REPLY);
    CHECK_EQ_INT(dtf_msg_reply_type(DTF_MSG_PUSH), DTF_MSG_PUSH_REPLY);
    CHECK_EQ_INT(dtf_msg_reply_type(DTF_MSG_GET_STEP), DTF_MSG_STEP_REPLY);
    CHECK_EQ_INT(dtf_msg_reply_type(DTF_MSG_WORKER_DONE), DTF_MSG_DONE_REPLY);
    CHECK_EQ_INT(dtf_msg_reply_type(DTF_MSG_STATS), DTF_MSG_STATS_REPLY);
    /* replies and errors are not requests */
    for (int t = 0; t <= DTF_MSG_MAX + 1; t++)
        if (t == DTF_MSG_ERROR || t == 0 || t > DTF_MSG_MAX || t % 2 == 0)
            CHECK_EQ_INT(dtf_msg_reply_type(t), 0);
}

RUN_TESTS("test_wire")
