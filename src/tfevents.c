/* tfevents: TensorBoard event files (see tfevents.h). */
#include "tfevents.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- CRC32C ----------------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1; /* Castagnoli, reflected */
        crc_table[i] = c;
    }
}

uint32_t dtf_crc32c(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t dtf_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* ---- little-endian and protobuf encoding ------------------------------------- */

/* An output cursor: writes what fits, counts everything. */
typedef struct enc {
    uint8_t *p;
    size_t cap, len;
} enc;

static void put(enc *e, const void *src, size_t n)
{
    if (e->len < e->cap) {
        size_t k = e->cap - e->len < n ? e->cap - e->len : n;
        memcpy(e->p + e->len, src, k);
    }
    e->len += n;
}

static void put_le(enc *e, uint64_t v, int bytes)
{
    uint8_t b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(e, b, (size_t)bytes);
}

static void put_varint(enc *e, uint64_t v)
{
    uint8_t b[10];
    int n = 0;
    do {
        b[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            b[n] |= 0x80;
        n++;
    } while (v);
    put(e, b, (size_t)n);
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >>= 7)
        n++;
    return n;
}

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static void put_key(enc *e, int field, int wt)
{
    put_varint(e, (uint64_t)field << 3 | (uint64_t)wt);
}

static void put_double(enc *e, int field, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, 8);
    put_key(e, field, WT_I64);
    put_le(e, bits, 8);
}

static void put_bytes(enc *e, int field, const void *s, size_t n)
{
    put_key(e, field, WT_LEN);
    put_varint(e, n);
    put(e, s, n);
}

size_t dtf_event_encode_version(uint8_t *out, size_t cap, double wall, const char *version)
{
    enc e = {out, cap, 0};
    put_double(&e, 1, wall);
    put_bytes(&e, 3, version, strlen(version));
    return e.len;
}

size_t dtf_event_encode_scalar(uint8_t *out, size_t cap, double wall, int64_t step,
                               const char *tag, float value)
{
    size_t tl = strlen(tag);
    /* Value { tag = 1; simple_value = 2 } */
    size_t value_len = 1 + varint_len(tl) + tl + 1 + 4;
    /* Summary { value = 1 } */
    size_t summary_len = 1 + varint_len(value_len) + value_len;
    enc e = {out, cap, 0};
    put_double(&e, 1, wall);
    put_key(&e, 2, WT_VARINT);
    put_varint(&e, (uint64_t)step); /* int64: negative steps take 10 bytes */
    put_key(&e, 5, WT_LEN);
    put_varint(&e, summary_len);
    put_key(&e, 1, WT_LEN);
    put_varint(&e, value_len);
    put_bytes(&e, 1, tag, tl);
    uint32_t bits;
    memcpy(&bits, &value, 4);
    put_key(&e, 2, WT_I32);
    put_le(&e, bits, 4);
    return e.len;
}

size_t dtf_tfrecord_frame(uint8_t *out, size_t cap, const uint8_t *rec, size_t n)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)n >> (8 * i));
    enc e = {out, cap, 0};
    put(&e, len, 8);
    put_le(&e, dtf_crc32c_mask(dtf_crc32c(0, len, 8)), 4);
    put(&e, rec, n);
    put_le(&e, dtf_crc32c_mask(dtf_crc32c(0, rec, n)), 4);
    return e.len;
}

/* ---- writer -------------------------------------------------------------------- */

#define QUEUE_MAX (1u << 20)

struct dtf_tfevents {
    int fd;
    char *path;
    uint8_t *q; /* framed records waiting for flush */
    size_t qlen, qcap;
};

/* Opens a fresh file under dir; sets w->fd and w->path. */
static int create_file(dtf_tfevents *w, const char *dir, const char *host)
{
    char hbuf[256], path[4096];
    if (!host) {
        if (gethostname(hbuf, sizeof hbuf) != 0)
            snprintf(hbuf, sizeof hbuf, "localhost");
        hbuf[sizeof hbuf - 1] = 0;
    } else {
        snprintf(hbuf, sizeof hbuf, "%s", host);
    }
    for (char *c = hbuf; *c; c++)
        if (*c == '/')
            *c = '_';
    long long t = (long long)dtf_wallclock();
    for (int k = 0; k < 100; k++) {
        int n = k == 0 ? snprintf(path, sizeof path, "%s/events.out.tfevents.%lld.%s.%d", dir, t,
                                  hbuf, (int)getpid())
                       : snprintf(path, sizeof path, "%s/events.out.tfevents.%lld.%s.%d.%d", dir,
                                  t, hbuf, (int)getpid(), k);
        if (n >= (int)sizeof path) {
            dtf_seterr("TensorBoard directory '%s': path too long", dir);
            return -1;
        }
        w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
        if (w->fd >= 0) {
            w->path = strdup(path);
            if (!w->path) {
                dtf_seterr("out of memory");
                return -1;
            }
            return 0;
        }
        if (errno != EEXIST) {
            dtf_seterr("%s: %s", path, strerror(errno));
            return -1;
        }
    }
    dtf_seterr("%s: every name is taken", path);
    return -1;
}

static int queue_record(dtf_tfevents *w, const uint8_t *rec, size_t n)
{
    size_t need = 16 + n;
    if (w->qlen + need > QUEUE_MAX && dtf_tfevents_flush(w) < 0)
        return -1;
    if (w->qlen + need > w->qcap) {
        size_t cap = w->qcap ? w->qcap : 4096;
        while (cap < w->qlen + need)
            cap *= 2;
        uint8_t *q = realloc(w->q, cap);
        if (!q) {
            dtf_seterr("out of memory");
            return -1;
        }
        w->q = q;
        w->qcap = cap;
    }
    w->qlen += dtf_tfrecord_frame(w->q + w->qlen, w->qcap - w->qlen, rec, n);
    return 0;
}

dtf_tfevents *dtf_tfevents_open(const char *dir, const char *host)
{
    if (dtf_mkdirs(dir) < 0)
        return NULL;
    dtf_tfevents *w = calloc(1, sizeof *w);
    if (!w) {
        dtf_seterr("out of memory");
        return NULL;
    }
    w->fd = -1;
    uint8_t rec[64];
    size_t n = dtf_event_encode_version(rec, sizeof rec, dtf_wallclock(), DTF_TFEVENTS_VERSION);
    if (create_file(w, dir, host) < 0 || queue_record(w, rec, n) < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dtf_error());
        dtf_tfevents_close(w);
        dtf_seterr("%s", msg);
        return NULL;
    }
    return w;
}

const char *dtf_tfevents_path(const dtf_tfevents *w)
{
    return w->path;
}

int dtf_tfevents_scalar(dtf_tfevents *w, const char *tag, int64_t step, double value)
{
    size_t tl = strlen(tag);
    if (tl == 0 || tl > DTF_TFEVENTS_MAX_TAG) {
        dtf_seterr("TensorBoard tag '%.40s' must have 1 to %d bytes", tag, DTF_TFEVENTS_MAX_TAG);
        return -1;
    }
    uint8_t rec[DTF_TFEVENTS_MAX_TAG + 64];
    size_t n = dtf_event_encode_scalar(rec, sizeof rec, dtf_wallclock(), step, tag, (float)value);
    return queue_record(w, rec, n);
}

int dtf_tfevents_flush(dtf_tfevents *w)
{
    size_t done = 0;
    int rc = 0;
    while (done < w->qlen) {
        ssize_t k = write(w->fd, w->q + done, w->qlen - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            dtf_seterr("%s: %s", w->path, k < 0 ? strerror(errno) : "short write");
            rc = -1;
            break;
        }
        done += (size_t)k;
    }
    w->qlen = 0;
    return rc;
}

int dtf_tfevents_close(dtf_tfevents *w)
{
    if (!w)
        return 0;
    int rc = 0;
    if (w->fd >= 0) {
        rc = dtf_tfevents_flush(w);
        close(w->fd);
    }
    free(w->q);
    free(w->path);
    free(w);
    return rc;
}

/* ---- reader -------------------------------------------------------------------- */

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int dtf_tfrecord_parse(const uint8_t *buf, size_t len, size_t max, const uint8_t **rec,
                       size_t *rlen, size_t *used)
{
    if (len < 12)
        return 0;
    uint32_t want = (uint32_t)get_le(buf + 8, 4);
    if (dtf_crc32c_mask(dtf_crc32c(0, buf, 8)) != want) {
        dtf_seterr("bad length CRC");
        return -1;
    }
    uint64_t n = get_le(buf, 8);
    if (n > max) {
        dtf_seterr("record of %llu bytes (at most %zu)", (unsigned long long)n, max);
        return -1;
    }
    if (len - 12 < n + 4) /* n <= max is small: no overflow */
        return 0;
    want = (uint32_t)get_le(buf + 12 + n, 4);
    if (dtf_crc32c_mask(dtf_crc32c(0, buf + 12, (size_t)n)) != want) {
        dtf_seterr("bad data CRC");
        return -1;
    }
    *rec = buf + 12;
    *rlen = (size_t)n;
    *used = 12 + (size_t)n + 4;
    return 1;
}

/* A protobuf input cursor. */
typedef struct dec {
    const uint8_t *p, *end;
} dec;

static int get_varint(dec *d, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (d->p >= d->end) {
            dtf_seterr("truncated varint");
            return -1;
        }
        uint8_t b = *d->p++;
        if (shift == 63 && (b & 0x7e)) {
            dtf_seterr("varint over 64 bits");
            return -1;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    dtf_seterr("varint longer than 10 bytes");
    return -1;
}

/* One field: its number and wire type; for LEN, *sub holds its bytes; for
 * I64/I32 and VARINT, *num its value. Skips nothing: the caller decides. */
static int get_field(dec *d, int *field, int *wt, uint64_t *num, dec *sub)
{
    uint64_t key;
    if (get_varint(d, &key) < 0)
        return -1;
    if (key >> 3 == 0 || key >> 3 > 0x1fffffff) {
        dtf_seterr("bad field number %llu", (unsigned long long)(key >> 3));
        return -1;
    }
    *field = (int)(key >> 3);
    *wt = (int)(key & 7);
    size_t left = (size_t)(d->end - d->p);
    switch (*wt) {
    case WT_VARINT:
        return get_varint(d, num);
    case WT_I64:
    case WT_I32: {
        size_t k = *wt == WT_I64 ? 8 : 4;
        if (left < k) {
            dtf_seterr("truncated fixed-width field %d", *field);
            return -1;
        }
        *num = get_le(d->p, (int)k);
        d->p += k;
        return 0;
    }
    case WT_LEN: {
        uint64_t n;
        if (get_varint(d, &n) < 0)
            return -1;
        if (n > (uint64_t)(d->end - d->p)) {
            dtf_seterr("field %d of %llu bytes overruns its message", *field,
                       (unsigned long long)n);
            return -1;
        }
        sub->p = d->p;
        sub->end = d->p + n;
        d->p += n;
        return 0;
    }
    default:
        dtf_seterr("unsupported wire type %d (field %d)", *wt, *field);
        return -1;
    }
}

/* Summary.Value: calls fn when it holds a tag and a simple_value. */
static int decode_value(dec d, const dtf_event *ev, dtf_scalar_fn fn, void *ud)
{
    const char *tag = NULL;
    size_t taglen = 0;
    int have = 0;
    float v = 0;
    while (d.p < d.end) {
        int field, wt;
        uint64_t num = 0;
        dec sub = {NULL, NULL};
        if (get_field(&d, &field, &wt, &num, &sub) < 0)
            return -1;
        if (field == 1 && wt == WT_LEN) {
            tag = (const char *)sub.p;
            taglen = (size_t)(sub.end - sub.p);
        } else if (field == 2 && wt == WT_I32) {
            uint32_t bits = (uint32_t)num;
            memcpy(&v, &bits, 4);
            have = 1;
        }
    }
    if (have && tag && fn)
        fn(ud, ev, tag, taglen, v);
    return 0;
}

static int decode_summary(dec d, const dtf_event *ev, dtf_scalar_fn fn, void *ud)
{
    while (d.p < d.end) {
        int field, wt;
        uint64_t num = 0;
        dec sub = {NULL, NULL};
        if (get_field(&d, &field, &wt, &num, &sub) < 0)
            return -1;
        if (field == 1 && wt == WT_LEN && decode_value(sub, ev, fn, ud) < 0)
            return -1;
    }
    return 0;
}

int dtf_event_decode(const uint8_t *rec, size_t n, dtf_event *ev, dtf_scalar_fn fn, void *ud)
{
    memset(ev, 0, sizeof *ev);
    dec d = {rec, rec + n}, summary = {NULL, NULL};
    while (d.p < d.end) {
        int field, wt;
        uint64_t num = 0;
        dec sub = {NULL, NULL};
        if (get_field(&d, &field, &wt, &num, &sub) < 0)
            return -1;
        if (field == 1 && wt == WT_I64) {
            memcpy(&ev->wall, &num, 8);
        } else if (field == 2 && wt == WT_VARINT) {
            ev->step = (int64_t)num;
        } else if (field == 3 && wt == WT_LEN) {
            ev->version = (const char *)sub.p;
            ev->version_len = (size_t)(sub.end - sub.p);
        } else if (field == 5 && wt == WT_LEN) {
            summary = sub; /* decoded once wall_time and step are known */
        }
    }
    if (summary.p && decode_summary(summary, ev, fn, ud) < 0)
        return -1;
    return 0;
}

int dtf_tfevents_read(const char *path, dtf_scalar_fn fn, void *ud, int *truncated)
{
    *truncated = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        dtf_seterr("%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0, pos = 0;
    uint64_t base = 0; /* file offset of buf[0] */
    uint8_t *buf = malloc(cap);
    int rc = 0, eof = 0;
    if (!buf) {
        fclose(f);
        dtf_seterr("out of memory");
        return -1;
    }
    while (rc == 0) {
        const uint8_t *rec;
        size_t rlen, used;
        int r = dtf_tfrecord_parse(buf + pos, len - pos, DTF_TFRECORD_MAX, &rec, &rlen, &used);
        if (r < 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", dtf_error());
            dtf_seterr("%s: record at byte %llu: %s", path, (unsigned long long)(base + pos), msg);
            rc = -1;
        } else if (r > 0) {
            dtf_event ev;
            if (dtf_event_decode(rec, rlen, &ev, fn, ud) < 0) {
                char msg[256];
                snprintf(msg, sizeof msg, "%s", dtf_error());
                dtf_seterr("%s: event at byte %llu: %s", path, (unsigned long long)(base + pos),
                           msg);
                rc = -1;
            }
            pos += used;
        } else if (eof) {
            *truncated = pos < len;
            break;
        } else {
            /* keep the partial record, make room for the rest of it */
            memmove(buf, buf + pos, len - pos);
            base += pos;
            len -= pos;
            pos = 0;
            if (len == cap) {
                uint8_t *nb = cap < DTF_TFRECORD_MAX + 16 ? realloc(buf, cap * 2) : NULL;
                if (!nb) {
                    dtf_seterr("%s: out of memory", path);
                    rc = -1;
                    break;
                }
                buf = nb;
                cap *= 2;
            }
            size_t k = fread(buf + len, 1, cap - len, f);
            len += k;
            if (k == 0) {
                if (ferror(f)) {
                    dtf_seterr("%s: %s", path, strerror(errno));
                    rc = -1;
                }
                eof = 1;
            }
        }
    }
    free(buf);
    fclose(f);
    return rc;
}
