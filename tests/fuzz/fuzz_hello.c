/* libFuzzer target for the ps's HELLO handling: dtf_wire_admit_hello
 * (wire.c), which net_server.c calls on the first frame of every connection.
 * Build and run (tests/fuzz/run does both):
 *
 *   tests/fuzz/build-one fuzz_hello build/fuzz
 *   build/fuzz/fuzz_hello -max_total_time=60 build/fuzz/corpus-fuzz_hello
 *
 * Input: a mode byte, the ps's side (token length and bytes, layout
 * checksum, P, workers), then the HELLO payload a peer sent. Mode bit 2 is
 * the ps's wire dtype. With mode bit 0 the payload is patched to carry the
 * ps's own token, checksum and P and the wire dtype of mode bit 3, so the
 * admitted path, the dtype check and the index check are reached as often
 * as the refusals. Checked: the verdict agrees with a plain
 * re-implementation of the rules; a decoded HELLO re-encodes to the same
 * bytes; a refusal's message never quotes either token; a refusal for the
 * dtype alone names both dtypes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Only a token with a byte that no message's fixed text or number can
 * contain is looked for in the message. */
static int leaks(const char *msg, const char *tok, size_t n)
{
    int odd = 0;
    for (size_t i = 0; i < n; i++)
        odd |= (unsigned char)tok[i] < 0x20 || (unsigned char)tok[i] > 0x7e;
    return odd && n > 0 && memmem(msg, strlen(msg), tok, n) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    if (len < 2)
        return 0;
    uint8_t mode = buf[0];
    size_t tl = buf[1] % 40u;
    size_t fixed = 2 + tl + 8 + 8 + 4;
    if (len < fixed)
        return 0;
    char token[40];
    memcpy(token, buf + 2, tl);
    const uint8_t *q = buf + 2 + tl;
    dtf_wire_admit a = {tl ? token : NULL, tl, get64(q), get64(q + 8),
                        (uint32_t)(q[16] | q[17] << 8) % 300u, (mode >> 2) & 1};
    size_t n = len - fixed;
    if (n > DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN + 8)
        return 0;
    uint8_t p[DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN + 8];
    memcpy(p, buf + fixed, n);
    if ((mode & 1) && n >= DTF_WIRE_HELLO_FIXED) {
        /* the ps's own token, checksum and P; role and index as given */
        uint8_t own[DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN];
        dtf_wire_hello h = {(uint8_t)(mode & 2 ? DTF_ROLE_OBSERVER : DTF_ROLE_WORKER),
                            dtf_get_u32(p + 4), a.P, a.checksum, token, (uint16_t)tl,
                            (uint8_t)((mode >> 3) & 1)};
        n = dtf_wire_encode_hello(own, sizeof own, &h);
        memcpy(p, own, n);
    }

    dtf_wire_hello m, d;
    int r = dtf_wire_admit_hello(p, n, &a, &m);
    int dr = dtf_wire_decode_hello(p, n, &d);
    if (r != 0 && r != -1 && r != -2)
        abort();
    if ((r == -1) != (dr < 0))
        abort();
    if (r == -1)
        return 0;
    if (m.role != d.role || m.index != d.index || m.P != d.P || m.checksum != d.checksum ||
        m.token_len != d.token_len || m.token != d.token || m.dtype != d.dtype)
        abort();
    uint8_t re[DTF_WIRE_HELLO_FIXED + DTF_WIRE_MAX_TOKEN];
    if (dtf_wire_encode_hello(re, sizeof re, &m) != n || memcmp(re, p, n) != 0)
        abort();
    /* the rules, written out plainly */
    int ok = 1;
    if (tl && (m.token_len != tl || memcmp(m.token, token, tl) != 0))
        ok = 0;
    if (m.checksum != a.checksum || m.P != a.P)
        ok = 0;
    int only_dtype = ok && m.dtype != a.dtype;
    if (m.dtype != a.dtype)
        ok = 0;
    if (m.role == DTF_ROLE_WORKER && m.index >= a.workers)
        ok = 0;
    if (ok != (r == 0))
        abort();
    if (only_dtype) {
        char want[64];
        snprintf(want, sizeof want, "wire_dtype=%s but this ps uses wire_dtype=%s",
                 dtf_wire_dtype_name(m.dtype), dtf_wire_dtype_name(a.dtype));
        if (!strstr(dtf_error(), want))
            abort();
    }
    if (r == -2) {
        const char *msg = dtf_error();
        if (!*msg || leaks(msg, token, tl) || leaks(msg, m.token, m.token_len))
            abort();
    }
    return 0;
}
