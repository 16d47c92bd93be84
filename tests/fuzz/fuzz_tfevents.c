/* libFuzzer target for the TensorBoard event reader (tfevents.c), what
 * `dtf plot` runs over files it did not write: the input is a whole event
 * file, parsed record by record from memory. Every record accepted must
 * lie inside the input and have passed both CRCs (checked again here);
 * every scalar decoded must survive a re-encode and decode unchanged.
 * Build and run: tests/fuzz/build-one fuzz_tfevents OUTDIR, see
 * tests/fuzz/README. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tfevents.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);

static const uint8_t *input_end;

typedef struct again {
    int n;
    float v;
    char tag[DTF_TFEVENTS_MAX_TAG + 1];
} again;

static void record(void *ud, const dtf_event *ev, const char *tag, size_t taglen, float v)
{
    again *a = ud;
    (void)ev;
    a->n++;
    a->v = v;
    if (taglen <= DTF_TFEVENTS_MAX_TAG) {
        memcpy(a->tag, tag, taglen);
        a->tag[taglen] = 0;
    }
}

static void check_scalar(void *ud, const dtf_event *ev, const char *tag, size_t taglen, float v)
{
    (void)ud;
    if ((const uint8_t *)tag + taglen > input_end)
        abort();
    if (taglen == 0 || taglen > DTF_TFEVENTS_MAX_TAG || memchr(tag, 0, taglen))
        return; /* the writer would refuse it: nothing to re-encode */
    char t[DTF_TFEVENTS_MAX_TAG + 1];
    memcpy(t, tag, taglen);
    t[taglen] = 0;
    uint8_t rec[DTF_TFEVENTS_MAX_TAG + 64];
    size_t n = dtf_event_encode_scalar(rec, sizeof rec, ev->wall, ev->step, t, v);
    if (n > sizeof rec)
        abort();
    again a = {0, 0, ""};
    dtf_event ev2;
    if (dtf_event_decode(rec, n, &ev2, record, &a) != 0 || ev2.step != ev->step || a.n != 1)
        abort();
    if (memcmp(&ev2.wall, &ev->wall, sizeof ev->wall) != 0 || strcmp(a.tag, t) != 0)
        abort();
    if (isnan(v) ? !isnan(a.v) : memcmp(&a.v, &v, sizeof v) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    input_end = buf + len;
    size_t pos = 0;
    while (pos < len) {
        const uint8_t *rec;
        size_t rlen, used;
        int r = dtf_tfrecord_parse(buf + pos, len - pos, 1 << 16, &rec, &rlen, &used);
        if (r <= 0)
            break;
        if (rec < buf || rec + rlen > buf + len || used != rlen + 16 || pos + used > len)
            abort();
        if (dtf_crc32c_mask(dtf_crc32c(0, rec, rlen)) !=
            (uint32_t)(rec[rlen] | rec[rlen + 1] << 8 | rec[rlen + 2] << 16 |
                       (uint32_t)rec[rlen + 3] << 24))
            abort();
        dtf_event ev;
        if (dtf_event_decode(rec, rlen, &ev, check_scalar, NULL) == 0 && ev.version &&
            ((const uint8_t *)ev.version < rec ||
             (const uint8_t *)ev.version + ev.version_len > rec + rlen))
            abort();
        pos += used;
    }
    /* The record bytes alone, as one Event: the decoder must hold on any input. */
    dtf_event ev;
    dtf_event_decode(buf, len, &ev, check_scalar, NULL);
    return 0;
}
