/* data: IDX readers, batches converted one at a time, epoch order, shards. */
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- IDX parsing --------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *idx_kind(uint32_t magic)
{
    return magic == DTF_IDX_IMAGES ? "images" : "labels";
}

int dtf_idx_parse_header(const void *buf, size_t len, uint32_t want,
                         const char *name, dtf_idx *out)
{
    const uint8_t *p = buf;
    size_t header = want == DTF_IDX_IMAGES ? 16 : 8;

    memset(out, 0, sizeof *out);
    if (want != DTF_IDX_IMAGES && want != DTF_IDX_LABELS) {
        dtf_seterr("%s: internal error: unknown IDX kind 0x%08x", name, want);
        return -1;
    }
    if (len == 0) {
        dtf_seterr("%s: empty file (expected an IDX %s file)", name, idx_kind(want));
        return -1;
    }
    if (len < 4) {
        dtf_seterr("%s: truncated header: %zu bytes, an IDX %s header has %zu",
                   name, len, idx_kind(want), header);
        return -1;
    }
    uint32_t magic = be32(p);
    if (magic != want) {
        const char *hint = "";
        if (magic == DTF_IDX_IMAGES || magic == DTF_IDX_LABELS)
            hint = magic == DTF_IDX_IMAGES ? "; this is an images file" : "; this is a labels file";
        else if (p[0] == 0x1f && p[1] == 0x8b)
            hint = "; gzip inside gzip?";
        dtf_seterr("%s: bad magic 0x%08x (expected an IDX %s file, 0x%08x%s)",
                   name, magic, idx_kind(want), want, hint);
        return -1;
    }
    if (len < header) {
        dtf_seterr("%s: truncated header: %zu bytes, an IDX %s header has %zu",
                   name, len, idx_kind(want), header);
        return -1;
    }
    out->magic = magic;
    out->header = header;
    out->n = be32(p + 4);
    out->rows = out->cols = 1;
    if (want == DTF_IDX_IMAGES) {
        out->rows = be32(p + 8);
        out->cols = be32(p + 12);
        if (out->rows == 0 || out->cols == 0) {
            dtf_seterr("%s: bad dimensions: images of %ux%u", name, out->rows, out->cols);
            return -1;
        }
    }
    /* 32-bit factors: the product fits in 96 bits, so check step by step. */
    uint64_t per = (uint64_t)out->rows * out->cols;
    if (per > DTF_IDX_MAX_BYTES || (out->n && per > DTF_IDX_MAX_BYTES / out->n)) {
        if (want == DTF_IDX_IMAGES)
            dtf_seterr("%s: absurd dimensions: %u images of %ux%u is more than %zu bytes",
                       name, out->n, out->rows, out->cols, DTF_IDX_MAX_BYTES);
        else
            dtf_seterr("%s: absurd dimensions: %u labels is more than %zu bytes",
                       name, out->n, DTF_IDX_MAX_BYTES);
        return -1;
    }
    out->body = (size_t)(per * out->n);
    return 0;
}

int dtf_idx_parse(const void *buf, size_t len, uint32_t want,
                  const char *name, dtf_idx *out)
{
    if (dtf_idx_parse_header(buf, len, want, name, out) < 0)
        return -1;
    size_t have = len - out->header;
    if (have < out->body) {
        if (want == DTF_IDX_IMAGES)
            dtf_seterr("%s: truncated: header says %u images of %ux%u (%zu bytes), "
                       "file holds %zu bytes (%zu whole images)",
                       name, out->n, out->rows, out->cols, out->body, have,
                       have / ((size_t)out->rows * out->cols));
        else
            dtf_seterr("%s: truncated: header says %u labels, file holds %zu",
                       name, out->n, have);
        memset(out, 0, sizeof *out);
        return -1;
    }
    if (have > out->body) {
        dtf_seterr("%s: %zu bytes of trailing data after the %u %s the header announces",
                   name, have - out->body, out->n, idx_kind(want));
        memset(out, 0, sizeof *out);
        return -1;
    }
    out->data = (const uint8_t *)buf + out->header;
    return 0;
}

/* ---- IDX files ----------------------------------------------------------- */

/* Reads up to len bytes; returns the count (short only at the end of the
 * stream) or -1 with *err set to zlib's message. */
static long long gz_readall(gzFile gz, uint8_t *dst, size_t len, const char **err)
{
    size_t got = 0;
    while (got < len) {
        size_t chunk = len - got;
        if (chunk > (1u << 30))
            chunk = 1u << 30;
        int r = gzread(gz, dst + got, (unsigned)chunk);
        if (r < 0) {
            int zerr;
            *err = gzerror(gz, &zerr);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long long)got;
}

/* zlib's message without the "<fd:3>: " that gzdopen puts in front. */
static const char *clean_zmsg(const char *m)
{
    if (!m || !*m)
        return "read error";
    if (strncmp(m, "<fd:", 4) == 0 && strstr(m, ": "))
        return strstr(m, ": ") + 2;
    return m;
}

/* Opens path as a gzip stream (plain files read through as they are). */
static gzFile open_idx(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dtf_seterr("%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        dtf_seterr("%s: is a directory, not an IDX file", path);
        close(fd);
        return NULL;
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        dtf_seterr("%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        close(fd);
        return NULL;
    }
    gzbuffer(gz, 1 << 16);
    return gz;
}

/* Reads the body after the header head (info.header bytes) into a new
 * buffer: at most info.body + 1 bytes, one more than announced telling
 * trailing data from an exact fit. The buffer grows as bytes arrive, so a
 * header that announces more than the file holds costs no more memory
 * than the file. *got gets the body bytes read, *rderr 1 on a read error. */
static uint8_t *read_body(gzFile gz, const uint8_t *head, const dtf_idx *info, const char *path,
                          size_t *got, int *rderr, const char **zmsg)
{
    size_t need = info->header + info->body + 1, cap = need < (1u << 20) ? need : 1u << 20;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        dtf_seterr("%s: out of memory for %zu bytes", path, cap);
        return NULL;
    }
    memcpy(buf, head, info->header);
    size_t filled = info->header;
    long long k;
    for (;;) {
        k = gz_readall(gz, buf + filled, cap - filled, zmsg);
        if (k < 0)
            break;
        filled += (size_t)k;
        if (filled < cap || cap == need)
            break;
        size_t ncap = cap * 2 < need ? cap * 2 : need;
        uint8_t *nb = realloc(buf, ncap);
        if (!nb) {
            dtf_seterr("%s: out of memory for %zu bytes", path, ncap);
            free(buf);
            return NULL;
        }
        buf = nb;
        cap = ncap;
    }
    *rderr = k < 0;
    *got = filled - info->header;
    return buf;
}

/* Bytes after the announced body (counted up to 1 GiB), for the message. */
static size_t count_trailing(gzFile gz, size_t got, const dtf_idx *info)
{
    if (got <= info->body)
        return 0;
    uint8_t scratch[4096];
    int r;
    size_t extra = got - info->body;
    while (extra < ((size_t)1 << 30) && (r = gzread(gz, scratch, sizeof scratch)) > 0)
        extra += (size_t)r;
    return extra;
}

/* The message for a cut or corrupt gzip stream, with the count it did hold. */
static void stream_error(const uint8_t *buf, size_t got, const dtf_idx *info, uint32_t want,
                         const char *path, const char *zmsg)
{
    dtf_idx parsed;
    if (got < info->body && dtf_idx_parse(buf, info->header + got, want, path, &parsed) < 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", dtf_error());
        dtf_seterr("%s (compressed stream: %s)", msg, zmsg);
    } else {
        dtf_seterr("%s: corrupt compressed stream: %s", path, zmsg);
    }
}

int dtf_idx_read(const char *path, uint32_t want, uint8_t **bufp, dtf_idx *out)
{
    *bufp = NULL;
    memset(out, 0, sizeof *out);
    gzFile gz = open_idx(path);
    if (!gz)
        return -1;
    uint8_t head[16];
    const char *zmsg = NULL;
    dtf_idx info;
    long long hgot = gz_readall(gz, head, want == DTF_IDX_IMAGES ? 16 : 8, &zmsg);
    if (hgot < 0) {
        dtf_seterr("%s: read error: %s", path, clean_zmsg(zmsg));
        gzclose(gz);
        return -1;
    }
    if (dtf_idx_parse_header(head, (size_t)hgot, want, path, &info) < 0) {
        gzclose(gz);
        return -1;
    }
    size_t got;
    int rderr;
    uint8_t *buf = read_body(gz, head, &info, path, &got, &rderr, &zmsg);
    if (!buf) {
        gzclose(gz);
        return -1;
    }
    size_t extra = count_trailing(gz, got, &info);
    int zerr = Z_ERRNO;
    if (!rderr)
        zmsg = gzerror(gz, &zerr);
    char zbuf[160]; /* zlib's message dies with gz */
    snprintf(zbuf, sizeof zbuf, "%s", clean_zmsg(zmsg));
    gzclose(gz);
    int rc = -1;
    if (rderr || (zerr != Z_OK && zerr != Z_STREAM_END))
        stream_error(buf, got, &info, want, path, zbuf);
    else if (extra)
        dtf_seterr("%s: %s%zu bytes of trailing data after the %u %s the header announces", path,
                   extra >= ((size_t)1 << 30) ? "more than " : "", extra, info.n, idx_kind(want));
    else
        rc = dtf_idx_parse(buf, info.header + got, want, path, out);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        free(buf);
        return -1;
    }
    *bufp = buf;
    return 0;
}

/* ---- datasets ------------------------------------------------------------ */

/* Pixels are kept packed: each image as pairs (zeros, literals, literal
 * bytes...) of counts up to 255, so the black background of MNIST-style
 * images (half the pixels of Fashion-MNIST) costs a byte per run: 47 MB of
 * training images take 28 MB, which is what lets a CNN task fit its pod.
 * A batch decodes straight into floats. Packing runs in place over the
 * file's buffer, in one pass: image i is packed only while its packed end
 * stays before image i + 1's raw start; from the first image where it
 * would not (images that do not compress), the rest stay raw where they
 * are. */
struct dtf_dataset {
    char *images_path, *labels_path;
    uint8_t *images_buf, *labels_buf;   /* whole files: header + bytes */
    const uint8_t *pixels;              /* raw (n, rows, cols), images >= npacked */
    uint32_t npacked;                   /* images [0, npacked) are packed */
    uint32_t *offset;                   /* packed image i starts at pixels + offset[i] */
    size_t packed_size;                 /* bytes of the packed images */
    const uint8_t *labels;              /* (n) */
    uint32_t n, rows, cols;
    float to_float[256];                /* byte / 255, correctly rounded */
};

void dtf_dataset_free(dtf_dataset *ds)
{
    if (!ds)
        return;
    free(ds->images_path);
    free(ds->labels_path);
    free(ds->images_buf);
    free(ds->labels_buf);
    free(ds->offset);
    free(ds);
}

/* Zero bytes at p, at most lim: eight at a time, the first non-zero one
 * of a word found by counting its trailing zero bits (little-endian). */
static size_t zero_run(const uint8_t *p, size_t lim)
{
    size_t z = 0;
    while (z + 8 <= lim) {
        uint64_t w;
        memcpy(&w, p + z, 8);
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (w)
            return z + ((size_t)__builtin_ctzll(w) >> 3);
#else
        if (w)
            break;
#endif
        z += 8;
    }
    while (z < lim && p[z] == 0)
        z++;
    return z;
}

/* Packs one image of per bytes into out (NULL: only counts); returns the
 * packed size, at most per + 2 * ceil(per / 255) * 2. A literal run ends
 * at a zero byte: strnlen finds it (vectorised in libc). */
static size_t pack_image(const uint8_t *px, size_t per, uint8_t *out)
{
    size_t pos = 0, k = 0;
    while (pos < per) {
        size_t left = per - pos;
        size_t z = zero_run(px + pos, left < 255 ? left : 255);
        left -= z;
        size_t l = strnlen((const char *)px + pos + z, left < 255 ? left : 255);
        if (out) {
            out[k] = (uint8_t)z;
            out[k + 1] = (uint8_t)l;
            memcpy(out + k + 2, px + pos + z, l);
        }
        k += 2 + l;
        pos += z + l;
    }
    return k;
}

/* Gives the whole pages of [p, p + n) back to the system (their contents
 * are no longer needed; the block stays allocated). madvise rather than a
 * shrinking realloc: no copy, whatever the allocator (a sanitizer's copies
 * the 28 MB that stay). */
static void release_tail(uint8_t *p, size_t n)
{
#ifdef MADV_DONTNEED
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
    if (page > 0 && b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
#else
    (void)p;
    (void)n;
#endif
}

/* Packs the images of ds->pixels in place, as far as that never overwrites
 * an image not yet packed (see above). */
static void pack_images(dtf_dataset *ds, uint8_t *pixels)
{
    size_t per = (size_t)ds->rows * ds->cols, end = 0;
    uint32_t *offset = malloc((size_t)ds->n * sizeof *offset);
    uint8_t *one = malloc(2 * per + 16); /* an image packed: at most 1.5 x its size */
    if (!offset || !one) {
        free(offset);
        free(one);
        return;
    }
    uint32_t i = 0;
    for (; i < ds->n; i++) {
        size_t k = pack_image(pixels + (size_t)i * per, per, one);
        if (end + k > (size_t)(i + 1) * per || end + k > UINT32_MAX)
            break; /* it would reach image i + 1: the rest stay raw */
        offset[i] = (uint32_t)end;
        memcpy(pixels + end, one, k);
        end += k;
    }
    free(one);
    ds->npacked = i;
    ds->packed_size = end;
    ds->offset = offset;
    if (i == ds->n) /* all packed: the rest of the buffer's pages go back */
        release_tail(pixels + end, (size_t)ds->n * per - end);
}

dtf_dataset *dtf_dataset_load(const char *images, const char *labels)
{
    dtf_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        dtf_seterr("out of memory");
        return NULL;
    }
    ds->images_path = strdup(images);
    ds->labels_path = labels ? strdup(labels) : NULL;
    if (!ds->images_path || (labels && !ds->labels_path)) {
        dtf_seterr("out of memory");
        goto fail;
    }
    dtf_idx im, lb;
    if (dtf_idx_read(images, DTF_IDX_IMAGES, &ds->images_buf, &im) < 0)
        goto fail;
    if (!labels)
        lb = (dtf_idx){.n = im.n};
    else if (dtf_idx_read(labels, DTF_IDX_LABELS, &ds->labels_buf, &lb) < 0)
        goto fail;
    if (im.n != lb.n) {
        dtf_seterr("%s holds %u labels but %s holds %u images: not a pair",
                   labels, lb.n, images, im.n);
        goto fail;
    }
    if (im.n == 0) {
        dtf_seterr("%s: holds no images", images);
        goto fail;
    }
    ds->pixels = im.data;
    ds->labels = lb.data;
    ds->n = im.n;
    ds->rows = im.rows;
    ds->cols = im.cols;
    for (int i = 0; i < 256; i++)
        ds->to_float[i] = (float)i / 255.0f;
    pack_images(ds, (uint8_t *)im.data);
    return ds;
fail:
    dtf_dataset_free(ds);
    return NULL;
}

uint32_t dtf_dataset_count(const dtf_dataset *ds) { return ds->n; }
uint32_t dtf_dataset_rows(const dtf_dataset *ds) { return ds->rows; }
uint32_t dtf_dataset_cols(const dtf_dataset *ds) { return ds->cols; }
const char *dtf_dataset_images_path(const dtf_dataset *ds) { return ds->images_path; }
const char *dtf_dataset_labels_path(const dtf_dataset *ds) { return ds->labels_path; }
const uint8_t *dtf_dataset_labels(const dtf_dataset *ds) { return ds->labels; }
size_t dtf_dataset_pixel_bytes(const dtf_dataset *ds)
{
    size_t per = (size_t)ds->rows * ds->cols;
    if (ds->npacked == ds->n)
        return ds->packed_size;
    return per * ds->n; /* the raw images keep their places */
}

/* Image i (no range check) as floats through tf: raw or packed. */
static void image_floats(const dtf_dataset *ds, uint32_t i, float *dst)
{
    size_t per = (size_t)ds->rows * ds->cols;
    if (i >= ds->npacked) {
        const uint8_t *src = ds->pixels + (size_t)i * per;
        for (size_t k = 0; k < per; k++)
            dst[k] = ds->to_float[src[k]];
        return;
    }
    const uint8_t *s = ds->pixels + ds->offset[i];
    float *end = dst + per;
    while (dst < end) {
        size_t z = s[0], l = s[1];
        s += 2;
        if (z > (size_t)(end - dst))
            z = (size_t)(end - dst);
        for (size_t k = 0; k < z; k++)
            dst[k] = 0.0f;
        dst += z;
        if (l > (size_t)(end - dst))
            l = (size_t)(end - dst);
        for (size_t k = 0; k < l; k++)
            dst[k] = ds->to_float[s[k]];
        dst += l;
        s += l;
    }
}

int dtf_dataset_image(const dtf_dataset *ds, uint32_t i, uint8_t *out)
{
    if (i >= ds->n) {
        dtf_seterr("%s: example %u out of range (the set holds %u)", ds->images_path, i, ds->n);
        return -1;
    }
    size_t per = (size_t)ds->rows * ds->cols;
    if (i >= ds->npacked) {
        memcpy(out, ds->pixels + (size_t)i * per, per);
        return 0;
    }
    const uint8_t *s = ds->pixels + ds->offset[i];
    for (size_t pos = 0; pos < per;) {
        size_t z = s[0], l = s[1];
        memset(out + pos, 0, z);
        memcpy(out + pos + z, s + 2, l);
        pos += z + l;
        s += 2 + l;
    }
    return 0;
}

int dtf_dataset_batch(const dtf_dataset *ds, const uint32_t *idx, size_t n,
                      float *x_out, float *y_out)
{
    for (size_t i = 0; i < n; i++) {
        if (idx[i] >= ds->n) {
            dtf_seterr("%s: example %u out of range (the set holds %u)",
                       ds->images_path, idx[i], ds->n);
            return -1;
        }
    }
    size_t per = (size_t)ds->rows * ds->cols;
    for (size_t i = 0; i < n; i++) {
        image_floats(ds, idx[i], x_out + i * per);
        if (y_out)
            y_out[i] = ds->labels ? (float)ds->labels[idx[i]] : 0.0f;
    }
    return 0;
}

/* ---- epoch order and shards ---------------------------------------------- */

uint64_t dtf_epoch_seed(uint64_t seed, uint64_t epoch)
{
    /* Mix the epoch in so that (seed, epoch) pairs do not collide the way
     * seed + epoch would; dtf_rng_seed spreads the result further. */
    return seed ^ (epoch * 0x9e3779b97f4a7c15ULL);
}

void dtf_epoch_order(uint32_t *order, uint32_t n, uint64_t seed,
                     uint64_t epoch, int shuffle)
{
    for (uint32_t i = 0; i < n; i++)
        order[i] = i;
    if (!shuffle || n < 2)
        return;
    dtf_rng r;
    dtf_rng_seed(&r, dtf_epoch_seed(seed, epoch));
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)dtf_rng_below(&r, (uint64_t)i + 1);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

int dtf_data_shard_range(uint32_t n, uint32_t s, uint32_t S,
                    uint32_t *begin, uint32_t *end)
{
    if (S == 0 || s >= S) {
        dtf_seterr("bad shard %u of %u (shards are numbered 0..%u)", s, S, S ? S - 1 : 0);
        return -1;
    }
    *begin = (uint32_t)((uint64_t)n * s / S);
    *end = (uint32_t)((uint64_t)n * (s + 1) / S);
    return 0;
}

/* ---- loader -------------------------------------------------------------- */

struct dtf_loader {
    const dtf_dataset *ds;
    dtf_loader_opts o;
    uint32_t n;               /* examples it draws from: [0, n) of the dataset */
    uint32_t *order;          /* the epoch's permutation of [0, n) */
    uint32_t begin, end;      /* this shard's positions in order */
    uint32_t nbatches;        /* per epoch */
    uint64_t epoch;           /* 1-based; order holds this epoch's permutation */
    uint32_t pos;             /* batches of this epoch handed out */
};

void dtf_loader_free(dtf_loader *l)
{
    if (!l)
        return;
    free(l->order);
    free(l);
}

dtf_loader *dtf_loader_new(const dtf_dataset *ds, const dtf_loader_opts *o)
{
    if (o->batchsize == 0) {
        dtf_seterr("batch size must be positive");
        return NULL;
    }
    uint32_t begin, end, n = o->limit && o->limit < ds->n ? o->limit : ds->n;
    if (dtf_data_shard_range(n, o->shard, o->shards, &begin, &end) < 0)
        return NULL;
    uint32_t size = end - begin, nb;
    if (o->drop_last)
        nb = (n / o->shards) / o->batchsize;
    else
        nb = (size + o->batchsize - 1) / o->batchsize;
    if (nb == 0) {
        dtf_seterr("%s: shard %u of %u holds %u examples, not one whole batch of %u",
                   ds->images_path, o->shard, o->shards, size, o->batchsize);
        return NULL;
    }
    dtf_loader *l = calloc(1, sizeof *l);
    if (!l || !(l->order = malloc((size_t)n * sizeof *l->order))) {
        free(l);
        dtf_seterr("out of memory");
        return NULL;
    }
    l->ds = ds;
    l->n = n;
    l->o = *o;
    l->begin = begin;
    l->end = end;
    l->nbatches = nb;
    l->epoch = 1;
    l->pos = 0;
    dtf_epoch_order(l->order, n, o->seed, 1, o->shuffle);
    return l;
}

int dtf_loader_next(dtf_loader *l, float *x, float *y)
{
    if (l->pos >= l->nbatches) {
        l->epoch++;
        l->pos = 0;
        dtf_epoch_order(l->order, l->n, l->o.seed, l->epoch, l->o.shuffle);
    }
    uint32_t B = l->o.batchsize;
    uint32_t first = l->begin + l->pos * B;
    uint32_t rows = l->end - first < B ? l->end - first : B;
    if (dtf_dataset_batch(l->ds, l->order + first, rows, x, y) < 0)
        return -1;
    if (rows < B) {
        size_t per = (size_t)l->ds->rows * l->ds->cols;
        memset(x + rows * per, 0, (size_t)(B - rows) * per * sizeof *x);
        if (y)
            memset(y + rows, 0, (size_t)(B - rows) * sizeof *y);
    }
    l->pos++;
    return (int)rows;
}

uint64_t dtf_loader_epoch(const dtf_loader *l) { return l->epoch; }
uint32_t dtf_loader_position(const dtf_loader *l) { return l->pos; }
uint32_t dtf_loader_batches_per_epoch(const dtf_loader *l) { return l->nbatches; }
uint32_t dtf_loader_shard_size(const dtf_loader *l) { return l->end - l->begin; }
uint32_t dtf_loader_batchsize(const dtf_loader *l) { return l->o.batchsize; }

int dtf_loader_seek(dtf_loader *l, uint64_t epoch, uint32_t batch)
{
    if (epoch == 0 || batch > l->nbatches) {
        dtf_seterr("cannot seek to batch %u of epoch %llu (epochs count from 1, "
                   "an epoch has %u batches)", batch, (unsigned long long)epoch, l->nbatches);
        return -1;
    }
    if (epoch != l->epoch)
        dtf_epoch_order(l->order, l->n, l->o.seed, epoch, l->o.shuffle);
    l->epoch = epoch;
    l->pos = batch;
    return 0;
}
