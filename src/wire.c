/* wire: encode and decode frames (see wire.h for the format). Pure
 * functions over bytes; every length from the wire is checked against what
 * is buffered and against the cap before it is used. */
#include "wire.h"

#include <inttypes.h>
#include <string.h>

#include "bf16.h"
#include "util.h"

/* ---- scalars ------------------------------------------------------------- */

void dtf_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void dtf_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void dtf_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint16_t dtf_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

uint32_t dtf_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t dtf_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int dtf_wire_host_is_le(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static uint32_t bswap32(uint32_t v)
{
    return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
}

void dtf_wire_floats_to_host(float *f, size_t n)
{
    if (dtf_wire_host_is_le())
        return;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        u = bswap32(u);
        memcpy(&f[i], &u, 4);
    }
}

void dtf_wire_put_floats(uint8_t *out, const float *f, size_t n)
{
    if (dtf_wire_host_is_le()) {
        memcpy(out, f, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        dtf_put_u32(out + 4 * i, u);
    }
}

void dtf_wire_get_floats(float *f, const uint8_t *in, size_t n)
{
    if (dtf_wire_host_is_le()) {
        memcpy(f, in, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u = dtf_get_u32(in + 4 * i);
        memcpy(&f[i], &u, 4);
    }
}

/* ---- names ---------------------------------------------------------------- */

const char *dtf_msg_name(int type)
{
    static const char *const names[] = {
        "?", "HELLO", "HELLO_REPLY", "PULL", "PULL_REPLY", "PUSH",
        "PUSH_REPLY", "GET_STEP", "STEP_REPLY", "WORKER_DONE", "DONE_REPLY",
        "STATS", "STATS_REPLY", "ERROR",
    };
    return type >= 1 && type <= DTF_MSG_MAX ? names[type] : "?";
}

const char *dtf_push_result_name(int r)
{
    static const char *const names[] = {"applied", "pending", "stale", "duplicate"};
    return r >= 0 && r <= DTF_PUSH_RESULT_MAX ? names[r] : "?";
}

const char *dtf_wire_dtype_name(int dtype)
{
    static const char *const names[] = {"fp32", "bf16"};
    return dtype >= 0 && dtype <= DTF_DTYPE_MAX ? names[dtype] : "?";
}

int dtf_wire_dtype_parse(const char *name)
{
    for (int d = 0; d <= DTF_DTYPE_MAX; d++)
        if (strcmp(name, dtf_wire_dtype_name(d)) == 0)
            return d;
    dtf_seterr("wire_dtype '%.40s' is not fp32 or bf16", name);
    return -1;
}

size_t dtf_wire_dtype_size(int dtype)
{
    return dtype == DTF_DTYPE_BF16 ? 2 : 4;
}

/* ---- header ---------------------------------------------------------------- */

dtf_wire_hdr dtf_wire_make(int type, uint32_t id, uint64_t offset,
                           uint64_t count, int64_t step, uint32_t len)
{
    dtf_wire_hdr h;
    memset(&h, 0, sizeof h);
    h.version = DTF_WIRE_VERSION;
    h.type = (uint8_t)type;
    h.id = id;
    h.offset = offset;
    h.count = count;
    h.step = step;
    h.len = len;
    return h;
}

void dtf_wire_encode_hdr(uint8_t out[DTF_WIRE_HDR], const dtf_wire_hdr *h)
{
    dtf_put_u32(out + 0, DTF_WIRE_MAGIC);
    dtf_put_u16(out + 4, h->version);
    out[6] = h->type;
    out[7] = h->aux;
    dtf_put_u32(out + 8, h->id);
    dtf_put_u32(out + 12, h->len);
    dtf_put_u64(out + 16, h->offset);
    dtf_put_u64(out + 24, h->count);
    dtf_put_u64(out + 32, (uint64_t)h->step);
}

/* Checks len against the type once len (and, for float bodies, count) are
 * known. Returns 0 or -1 with dtf_error() set. */
static int check_len(const dtf_wire_hdr *h, size_t max_payload)
{
    const char *name = dtf_msg_name(h->type);
    if (h->len > max_payload) {
        dtf_seterr("%s frame of %" PRIu32 " payload bytes is over the cap of %zu bytes",
                   name, h->len, max_payload);
        return -1;
    }
    switch (h->type) {
    case DTF_MSG_HELLO:
        if (h->len < DTF_WIRE_HELLO_FIXED || h->len > DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN) {
            dtf_seterr("HELLO payload of %" PRIu32 " bytes (expected %d to %d)", h->len,
                       DTF_WIRE_HELLO_FIXED, DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN);
            return -1;
        }
        return 0;
    case DTF_MSG_HELLO_REPLY:
        if (h->len != DTF_WIRE_HELLO_REPLY_LEN) {
            dtf_seterr("HELLO_REPLY payload of %" PRIu32 " bytes (expected %d)", h->len,
                       DTF_WIRE_HELLO_REPLY_LEN);
            return -1;
        }
        return 0;
    case DTF_MSG_STATS_REPLY:
    case DTF_MSG_ERROR:
        if (h->len > DTF_WIRE_MAX_TEXT) {
            dtf_seterr("%s text of %" PRIu32 " bytes is over %u bytes", name, h->len,
                       DTF_WIRE_MAX_TEXT);
            return -1;
        }
        return 0;
    default:
        if (h->len != 0) {
            dtf_seterr("%s frame with a payload of %" PRIu32 " bytes (expected none)",
                       name, h->len);
            return -1;
        }
        return 0;
    case DTF_MSG_PULL_REPLY:
    case DTF_MSG_PUSH:
        return 0; /* checked against count once count is decoded */
    }
}

static int check_range(const dtf_wire_hdr *h)
{
    if (h->offset > UINT64_MAX - h->count) {
        dtf_seterr("%s range [%" PRIu64 ", +%" PRIu64 ") overflows", dtf_msg_name(h->type),
                   h->offset, h->count);
        return -1;
    }
    if (h->type == DTF_MSG_PULL_REPLY || h->type == DTF_MSG_PUSH) {
        size_t size = dtf_wire_dtype_size(h->aux);
        if (h->count > UINT32_MAX / size || h->len != size * h->count) {
            dtf_seterr("%s payload of %" PRIu32 " bytes does not hold its %" PRIu64 " %s values",
                       dtf_msg_name(h->type), h->len, h->count, dtf_wire_dtype_name(h->aux));
            return -1;
        }
    }
    return 0;
}

int dtf_wire_decode_hdr(const void *buf, size_t n, size_t max_payload, dtf_wire_hdr *h)
{
    const uint8_t *b = buf;
    /* Each field is checked as soon as it is buffered (as ws.c's
     * get_ws_frame does), so garbage fails on its first bytes. */
    if (n < 4) {
        /* A prefix of the magic is still valid. */
        uint8_t m[4];
        dtf_put_u32(m, DTF_WIRE_MAGIC);
        if (memcmp(b, m, n) != 0) {
            dtf_seterr("bad magic (not a dtf peer?)");
            return DTF_WIRE_ERROR;
        }
        return DTF_WIRE_INCOMPLETE;
    }
    uint32_t magic = dtf_get_u32(b);
    if (magic != DTF_WIRE_MAGIC) {
        dtf_seterr("bad magic 0x%08" PRIx32 " (not a dtf peer?)", magic);
        return DTF_WIRE_ERROR;
    }
    if (n < 6)
        return DTF_WIRE_INCOMPLETE;
    h->version = dtf_get_u16(b + 4);
    if (h->version != DTF_WIRE_VERSION) {
        dtf_seterr("protocol version %u, this side speaks version %d", h->version,
                   DTF_WIRE_VERSION);
        return DTF_WIRE_ERROR;
    }
    if (n < 7)
        return DTF_WIRE_INCOMPLETE;
    h->type = b[6];
    if (h->type < 1 || h->type > DTF_MSG_MAX) {
        dtf_seterr("unknown message type %u", h->type);
        return DTF_WIRE_ERROR;
    }
    if (n < 8)
        return DTF_WIRE_INCOMPLETE;
    h->aux = b[7];
    if (h->type == DTF_MSG_PUSH_REPLY ? h->aux > DTF_PUSH_RESULT_MAX
        : h->type == DTF_MSG_HELLO_REPLY ? (h->aux >> DTF_HELLO_DTYPE_SHIFT) > DTF_DTYPE_MAX
        : h->type == DTF_MSG_PUSH || h->type == DTF_MSG_PULL_REPLY ? h->aux > DTF_DTYPE_MAX
        : h->aux != 0) {
        dtf_seterr("%s frame with aux byte %u", dtf_msg_name(h->type), h->aux);
        return DTF_WIRE_ERROR;
    }
    if (n < 12)
        return DTF_WIRE_INCOMPLETE;
    h->id = dtf_get_u32(b + 8);
    if (n < 16)
        return DTF_WIRE_INCOMPLETE;
    h->len = dtf_get_u32(b + 12);
    if (check_len(h, max_payload) < 0)
        return DTF_WIRE_ERROR;
    if (n < DTF_WIRE_HDR)
        return DTF_WIRE_INCOMPLETE;
    h->offset = dtf_get_u64(b + 16);
    h->count = dtf_get_u64(b + 24);
    h->step = (int64_t)dtf_get_u64(b + 32);
    if (check_range(h) < 0)
        return DTF_WIRE_ERROR;
    return DTF_WIRE_FRAME;
}

int dtf_wire_decode(const void *buf, size_t n, size_t max_payload,
                    dtf_wire_hdr *h, const uint8_t **payload, size_t *used)
{
    int r = dtf_wire_decode_hdr(buf, n, max_payload, h);
    if (r != DTF_WIRE_FRAME)
        return r;
    if (n - DTF_WIRE_HDR < h->len)
        return DTF_WIRE_INCOMPLETE;
    const uint8_t *p = (const uint8_t *)buf + DTF_WIRE_HDR;
    if (h->type == DTF_MSG_HELLO) {
        dtf_wire_hello m;
        if (dtf_wire_decode_hello(p, h->len, &m) < 0)
            return DTF_WIRE_ERROR;
    } else if (h->type == DTF_MSG_HELLO_REPLY) {
        dtf_wire_hello_reply m;
        if (dtf_wire_decode_hello_reply(p, h->len, &m) < 0)
            return DTF_WIRE_ERROR;
    }
    *payload = p;
    *used = DTF_WIRE_HDR + (size_t)h->len;
    return DTF_WIRE_FRAME;
}

/* ---- payloads ------------------------------------------------------------------ */

size_t dtf_wire_encode_hello(uint8_t *out, size_t cap, const dtf_wire_hello *m)
{
    if (m->token_len > DTF_WIRE_MAX_TOKEN) {
        dtf_seterr("token of %u bytes is over %d bytes", m->token_len, DTF_WIRE_MAX_TOKEN);
        return 0;
    }
    size_t need = DTF_WIRE_HELLO_FIXED + (size_t)m->token_len;
    if (cap < need) {
        dtf_seterr("HELLO needs %zu bytes, buffer has %zu", need, cap);
        return 0;
    }
    if (m->dtype > DTF_DTYPE_MAX) {
        dtf_seterr("HELLO with unknown wire dtype %u", m->dtype);
        return 0;
    }
    out[0] = m->role;
    out[1] = m->dtype;
    dtf_put_u16(out + 2, m->token_len);
    dtf_put_u32(out + 4, m->index);
    dtf_put_u64(out + 8, m->P);
    dtf_put_u64(out + 16, m->checksum);
    if (m->token_len)
        memcpy(out + DTF_WIRE_HELLO_FIXED, m->token, m->token_len);
    return need;
}

int dtf_wire_decode_hello(const uint8_t *p, size_t n, dtf_wire_hello *m)
{
    if (n < DTF_WIRE_HELLO_FIXED) {
        dtf_seterr("HELLO of %zu bytes is shorter than %d", n, DTF_WIRE_HELLO_FIXED);
        return -1;
    }
    m->role = p[0];
    if (m->role != DTF_ROLE_WORKER && m->role != DTF_ROLE_OBSERVER) {
        dtf_seterr("HELLO with unknown role %u", m->role);
        return -1;
    }
    m->dtype = p[1];
    if (m->dtype > DTF_DTYPE_MAX) {
        dtf_seterr("HELLO with unknown wire dtype %u", m->dtype);
        return -1;
    }
    m->token_len = dtf_get_u16(p + 2);
    if (m->token_len > DTF_WIRE_MAX_TOKEN || n != DTF_WIRE_HELLO_FIXED + (size_t)m->token_len) {
        dtf_seterr("HELLO of %zu bytes does not hold its %u-byte token", n, m->token_len);
        return -1;
    }
    m->index = dtf_get_u32(p + 4);
    m->P = dtf_get_u64(p + 8);
    m->checksum = dtf_get_u64(p + 16);
    m->token = (const char *)p + DTF_WIRE_HELLO_FIXED;
    return 0;
}

/* Compares without an early exit so the time taken does not tell how much
 * of a guessed token was right; depends only on the expected length. */
static int token_equal(const char *want, size_t nwant, const char *got, size_t ngot)
{
    unsigned diff = (unsigned)(nwant != ngot);
    for (size_t i = 0; i < nwant; i++) {
        unsigned char g = i < ngot ? (unsigned char)got[i] : 0;
        diff |= (unsigned)((unsigned char)want[i] ^ g);
    }
    return diff == 0;
}

int dtf_wire_admit_hello(const uint8_t *p, size_t n, const dtf_wire_admit *a,
                         dtf_wire_hello *m)
{
    if (dtf_wire_decode_hello(p, n, m) < 0)
        return -1;
    const char *role = m->role == DTF_ROLE_WORKER ? "worker" : "observer";
    if (a->token && a->token_len &&
        !token_equal(a->token, a->token_len, m->token, m->token_len)) {
        dtf_seterr("%s", m->token_len ? "wrong token" : "this ps needs a token");
        return -2;
    }
    if (m->checksum != a->checksum || m->P != a->P) {
        if (m->P != a->P)
            dtf_seterr("%s runs a different model: layout checksum %016" PRIx64 ", ps has %016"
                       PRIx64 " (%" PRIu64 " parameters, ps has %" PRIu64 ")", role,
                       m->checksum, a->checksum, m->P, a->P);
        else
            dtf_seterr("%s runs a different model: layout checksum %016" PRIx64 ", ps has %016"
                       PRIx64, role, m->checksum, a->checksum);
        return -2;
    }
    if (m->dtype != a->dtype) {
        dtf_seterr("%s %" PRIu32 " uses wire_dtype=%s but this ps uses wire_dtype=%s (a mixed "
                   "cluster): every task of a training must set the same wire_dtype", role, m->index,
                   dtf_wire_dtype_name(m->dtype), dtf_wire_dtype_name(a->dtype));
        return -2;
    }
    if (m->role == DTF_ROLE_WORKER && m->index >= a->workers) {
        dtf_seterr("worker index %" PRIu32 " out of range: this ps serves %" PRIu32 " workers",
                   m->index, a->workers);
        return -2;
    }
    return 0;
}

size_t dtf_wire_encode_hello_reply(uint8_t *out, size_t cap, const dtf_wire_hello_reply *m)
{
    if (cap < DTF_WIRE_HELLO_REPLY_LEN) {
        dtf_seterr("HELLO_REPLY needs %d bytes, buffer has %zu", DTF_WIRE_HELLO_REPLY_LEN, cap);
        return 0;
    }
    dtf_put_u32(out + 0, m->index);
    dtf_put_u32(out + 4, m->nps);
    dtf_put_u64(out + 8, m->P);
    dtf_put_u32(out + 16, m->workers);
    dtf_put_u32(out + 20, m->replicas);
    return DTF_WIRE_HELLO_REPLY_LEN;
}

int dtf_wire_decode_hello_reply(const uint8_t *p, size_t n, dtf_wire_hello_reply *m)
{
    if (n != DTF_WIRE_HELLO_REPLY_LEN) {
        dtf_seterr("HELLO_REPLY of %zu bytes (expected %d)", n, DTF_WIRE_HELLO_REPLY_LEN);
        return -1;
    }
    m->index = dtf_get_u32(p + 0);
    m->nps = dtf_get_u32(p + 4);
    m->P = dtf_get_u64(p + 8);
    m->workers = dtf_get_u32(p + 16);
    m->replicas = dtf_get_u32(p + 20);
    if (m->nps == 0 || m->index >= m->nps) {
        dtf_seterr("HELLO_REPLY from ps %" PRIu32 " of %" PRIu32, m->index, m->nps);
        return -1;
    }
    return 0;
}

uint8_t dtf_wire_hello_reply_aux(int sync, int token, int dtype)
{
    return (uint8_t)((sync ? DTF_HELLO_SYNC : 0) | (token ? DTF_HELLO_TOKEN : 0) |
                     ((unsigned)dtype << DTF_HELLO_DTYPE_SHIFT));
}

int dtf_wire_hello_reply_dtype(uint8_t aux)
{
    return aux >> DTF_HELLO_DTYPE_SHIFT;
}

int dtf_wire_check_hello_reply(uint8_t aux, int want)
{
    int d = dtf_wire_hello_reply_dtype(aux);
    if (d == want)
        return 0;
    dtf_seterr("this ps uses wire_dtype=%s but this task uses wire_dtype=%s (a mixed cluster): "
               "every task of a training must set the same wire_dtype", dtf_wire_dtype_name(d),
               dtf_wire_dtype_name(want));
    return -1;
}

size_t dtf_wire_frame(uint8_t *out, size_t cap, dtf_wire_hdr *h,
                      const void *payload, uint32_t payload_len)
{
    size_t need = DTF_WIRE_HDR + (size_t)payload_len;
    if (cap < need) {
        dtf_seterr("frame needs %zu bytes, buffer has %zu", need, cap);
        return 0;
    }
    h->len = payload_len;
    dtf_wire_encode_hdr(out, h);
    if (payload_len)
        memcpy(out + DTF_WIRE_HDR, payload, payload_len);
    return need;
}

int dtf_msg_reply_type(int request_type)
{
    switch (request_type) {
    case DTF_MSG_HELLO: return DTF_MSG_HELLO_REPLY;
    case DTF_MSG_PULL: return DTF_MSG_PULL_REPLY;
    case DTF_MSG_PUSH: return DTF_MSG_PUSH_REPLY;
    case DTF_MSG_GET_STEP: return DTF_MSG_STEP_REPLY;
    case DTF_MSG_WORKER_DONE: return DTF_MSG_DONE_REPLY;
    case DTF_MSG_STATS: return DTF_MSG_STATS_REPLY;
    default: return 0;
    }
}

/* ---- float bodies ------------------------------------------------------------------- */

size_t dtf_wire_body_len(uint64_t count, int dtype)
{
    return (size_t)count * dtf_wire_dtype_size(dtype);
}

uint8_t *dtf_wire_body_dst(float *f, uint64_t n, int dtype)
{
    uint8_t *b = (uint8_t *)f;
    return dtype == DTF_DTYPE_BF16 ? b + 2 * (size_t)n : b;
}

void dtf_wire_body_to_host(float *f, uint64_t n, int dtype)
{
    if (dtype != DTF_DTYPE_BF16) {
        dtf_wire_floats_to_host(f, (size_t)n);
        return;
    }
    const uint8_t *src = dtf_wire_body_dst(f, n, dtype);
    if (dtf_wire_host_is_le()) {
        dtf_bf16_to_floats(f, (const uint16_t *)(const void *)src, (size_t)n);
        return;
    }
    /* front to back: value i is read before bytes 4i..4i+3 are written */
    for (size_t i = 0; i < n; i++) {
        float v = dtf_bf16_to_float(dtf_get_u16(src + 2 * i));
        memcpy((uint8_t *)f + 4 * i, &v, 4);
    }
}

void dtf_wire_put_body(uint8_t *out, const float *f, size_t n, int dtype)
{
    if (dtype != DTF_DTYPE_BF16) {
        dtf_wire_put_floats(out, f, n);
    } else if (dtf_wire_host_is_le()) {
        dtf_bf16_from_floats((uint16_t *)(void *)out, f, n);
    } else {
        for (size_t i = 0; i < n; i++)
            dtf_put_u16(out + 2 * i, dtf_bf16_from_float(f[i]));
    }
}

void dtf_wire_get_body(float *f, const uint8_t *in, size_t n, int dtype)
{
    if (dtype != DTF_DTYPE_BF16) {
        dtf_wire_get_floats(f, in, n);
    } else if (dtf_wire_host_is_le()) {
        dtf_bf16_to_floats(f, (const uint16_t *)(const void *)in, n);
    } else {
        for (size_t i = 0; i < n; i++)
            f[i] = dtf_bf16_to_float(dtf_get_u16(in + 2 * i));
    }
}

int dtf_wire_check_dtype(const dtf_wire_hdr *h, int agreed)
{
    if (h->aux == agreed)
        return 0;
    dtf_seterr("%s in %s on a connection that agreed wire_dtype=%s", dtf_msg_name(h->type),
               dtf_wire_dtype_name(h->aux), dtf_wire_dtype_name(agreed));
    return -1;
}
