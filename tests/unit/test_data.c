/* Unit tests for data.c: IDX files (plain, gzip, broken), batches, epoch
 * order, shards, the loader; and the real Fashion-MNIST when installed. */
#include "harness.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"

static char tmpdir[64];

static const char *tmp(const char *name)
{
    static char paths[8][256];
    static int k;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/dtf-test-data-XXXXXX");
        if (!mkdtemp(tmpdir))
            abort();
    }
    char *p = paths[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static void write_bytes(const char *path, const void *buf, size_t len, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f) abort();
        if (len && gzwrite(f, buf, (unsigned)len) != (int)len) abort();
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        if (!f) abort();
        if (len && fwrite(buf, 1, len, f) != len) abort();
        fclose(f);
    }
}

/* Image i has pixel k = (i * 7 + k) % 256; label i = i % 10. */
static size_t make_images(uint8_t *buf, uint32_t n, uint32_t rows, uint32_t cols)
{
    be32(buf, DTF_IDX_IMAGES); be32(buf + 4, n); be32(buf + 8, rows); be32(buf + 12, cols);
    size_t per = (size_t)rows * cols;
    for (uint32_t i = 0; i < n; i++)
        for (size_t k = 0; k < per; k++)
            buf[16 + i * per + k] = (uint8_t)((i * 7 + k) % 256);
    return 16 + n * per;
}

static size_t make_labels(uint8_t *buf, uint32_t n)
{
    be32(buf, DTF_IDX_LABELS); be32(buf + 4, n);
    for (uint32_t i = 0; i < n; i++)
        buf[8 + i] = (uint8_t)(i % 10);
    return 8 + n;
}

static uint8_t ibuf[16 + 100 * 4 * 3], lbuf[8 + 100];

/* A 100-example set of 4x3 images, plain or gzip. */
static void write_set(const char *img, const char *lab, int gz)
{
    write_bytes(img, ibuf, make_images(ibuf, 100, 4, 3), gz);
    write_bytes(lab, lbuf, make_labels(lbuf, 100), gz);
}

static void check_set(dtf_dataset *ds)
{
    CHECK(ds != NULL);
    if (!ds) { fprintf(stderr, "  %s\n", dtf_error()); return; }
    CHECK_EQ_INT(dtf_dataset_count(ds), 100);
    CHECK_EQ_INT(dtf_dataset_rows(ds), 4);
    CHECK_EQ_INT(dtf_dataset_cols(ds), 3);
    uint32_t idx[3] = {0, 99, 42};
    float x[3 * 12], y[3];
    CHECK_EQ_INT(dtf_dataset_batch(ds, idx, 3, x, y), 0);
    for (int b = 0; b < 3; b++) {
        CHECK_NEAR(y[b], (double)(idx[b] % 10), 0);
        for (int k = 0; k < 12; k++)
            CHECK_NEAR(x[b * 12 + k], ((idx[b] * 7 + k) % 256) / 255.0f, 0);
    }
    CHECK(x[0] == 0.0f);
}

TEST(load_plain)
{
    write_set(tmp("a-images"), tmp("a-labels"), 0);
    dtf_dataset *ds = dtf_dataset_load(tmp("a-images"), tmp("a-labels"));
    check_set(ds);
    dtf_dataset_free(ds);
}

TEST(load_gzip)
{
    write_set(tmp("b-images.gz"), tmp("b-labels.gz"), 1);
    dtf_dataset *ds = dtf_dataset_load(tmp("b-images.gz"), tmp("b-labels.gz"));
    check_set(ds);
    dtf_dataset_free(ds);
}

TEST(conversion_range)
{
    /* one image of 1x256 holding every byte value */
    uint8_t buf[16 + 256], lab[9];
    be32(buf, DTF_IDX_IMAGES); be32(buf + 4, 1); be32(buf + 8, 1); be32(buf + 12, 256);
    for (int k = 0; k < 256; k++) buf[16 + k] = (uint8_t)k;
    be32(lab, DTF_IDX_LABELS); be32(lab + 4, 1); lab[8] = 255;
    write_bytes(tmp("c-images"), buf, sizeof buf, 0);
    write_bytes(tmp("c-labels"), lab, sizeof lab, 0);
    dtf_dataset *ds = dtf_dataset_load(tmp("c-images"), tmp("c-labels"));
    CHECK(ds != NULL);
    if (!ds) return;
    float x[256], y;
    uint32_t i0 = 0;
    CHECK_EQ_INT(dtf_dataset_batch(ds, &i0, 1, x, &y), 0);
    CHECK(x[0] == 0.0f);
    CHECK(x[255] == 1.0f);
    CHECK(x[51] == 0.2f);
    for (int k = 1; k < 256; k++) CHECK(x[k] > x[k - 1]);
    CHECK(y == 255.0f);
    uint32_t bad = 1;
    CHECK_EQ_INT(dtf_dataset_batch(ds, &bad, 1, x, &y), -1);
    CHECK_STR_CONTAINS(dtf_error(), "out of range");
    dtf_dataset_free(ds);
}

/* ---- broken files -------------------------------------------------------- */

/* Images with long runs of zeros and of non-zeros (past a count's 255),
 * all-black and all-white ones: kept packed, every byte comes back. Then a
 * set that packing would grow (0, x, 0, x, ...): kept raw, same result; and
 * one black image before such ones: packed until the packed bytes would
 * reach an image not yet packed, the rest raw. */
static void pack_case(int mode)
{
    int alternating = mode != 0;
    enum { N = 6, R = 30, C = 30, PER = R * C };
    static uint8_t img[16 + N * PER], lab[8 + N], back[PER];
    be32(img, DTF_IDX_IMAGES); be32(img + 4, N); be32(img + 8, R); be32(img + 12, C);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < PER; k++) {
            uint8_t v;
            if (mode == 2 && i == 0) v = 0;
            else if (alternating) v = k % 2 ? (uint8_t)(1 + (k + i) % 250) : 0;
            else if (i == 0) v = 0;                                   /* black */
            else if (i == 1) v = 255;                                 /* white */
            else if (i == 2) v = k < 600 ? 0 : (uint8_t)(1 + k % 200); /* 600 zeros, 300 lits */
            else if (i == 3) v = k > 10 && k < 880 ? (uint8_t)(k % 7 + 1) : 0;
            else v = (k * 13 + i) % 5 == 0 ? 0 : (uint8_t)(k * 31 + i);
            img[16 + i * PER + k] = v;
        }
    write_bytes(tmp("pack-img"), img, sizeof img, 1);
    write_bytes(tmp("pack-lab"), lab, make_labels(lab, N), 0);
    dtf_dataset *ds = dtf_dataset_load(tmp("pack-img"), tmp("pack-lab"));
    CHECK(ds != NULL);
    if (!ds)
        return;
    if (alternating)
        CHECK_EQ_INT(dtf_dataset_pixel_bytes(ds), N * PER);
    else
        CHECK(dtf_dataset_pixel_bytes(ds) < N * PER);
    static float x[N * PER];
    uint32_t all[N] = {5, 4, 3, 2, 1, 0};
    CHECK(dtf_dataset_batch(ds, all, N, x, NULL) == 0);
    for (int i = 0; i < N; i++) {
        CHECK(dtf_dataset_image(ds, (uint32_t)i, back) == 0);
        int same = memcmp(back, img + 16 + i * PER, PER) == 0, fsame = 1;
        for (int k = 0; k < PER; k++)
            fsame &= x[(N - 1 - i) * PER + k] == (float)back[k] / 255.0f;
        if (!same || !fsame)
            FAIL("image %d (%s) does not come back", i, alternating ? "raw" : "packed");
    }
    dtf_dataset_free(ds);
}

TEST(packed_pixels)
{
    pack_case(0);
    pack_case(1);
    pack_case(2);
}

static void expect_fail(const char *img, const char *lab, const char *sub1, const char *sub2)
{
    dtf_dataset *ds = dtf_dataset_load(img, lab);
    CHECK(ds == NULL);
    dtf_dataset_free(ds);
    CHECK_STR_CONTAINS(dtf_error(), sub1);
    if (sub2) CHECK_STR_CONTAINS(dtf_error(), sub2);
}

TEST(missing_file)
{
    write_set(tmp("d-images"), tmp("d-labels"), 0);
    expect_fail(tmp("nope-images"), tmp("d-labels"), tmp("nope-images"), "No such file");
    expect_fail(tmp("d-images"), tmp("nope-labels"), tmp("nope-labels"), "No such file");
    expect_fail(tmpdir, tmp("d-labels"), tmpdir, "directory");
}

TEST(wrong_magic)
{
    write_set(tmp("e-images"), tmp("e-labels"), 0);
    /* labels and images swapped */
    expect_fail(tmp("e-labels"), tmp("e-images"), tmp("e-labels"), "bad magic 0x00000801 (expected an IDX images file, 0x00000803");
    uint8_t junk[64] = "<html>not an idx file</html>";
    write_bytes(tmp("e-junk"), junk, sizeof junk, 0);
    expect_fail(tmp("e-junk"), tmp("e-labels"), tmp("e-junk"), "bad magic 0x3c68746d");
    expect_fail(tmp("e-images"), tmp("e-junk"), tmp("e-junk"), "expected an IDX labels file, 0x00000801");
}

TEST(truncated)
{
    size_t n = make_images(ibuf, 100, 4, 3);
    write_bytes(tmp("f-labels"), lbuf, make_labels(lbuf, 100), 0);
    /* header cut */
    write_bytes(tmp("f-head"), ibuf, 10, 0);
    expect_fail(tmp("f-head"), tmp("f-labels"), tmp("f-head"), "truncated header: 10 bytes");
    write_bytes(tmp("f-head3"), ibuf, 3, 0);
    expect_fail(tmp("f-head3"), tmp("f-labels"), tmp("f-head3"), "truncated header");
    /* body cut, plain and gzip */
    write_bytes(tmp("f-body"), ibuf, n - 30, 0);
    expect_fail(tmp("f-body"), tmp("f-labels"), tmp("f-body"),
                "truncated: header says 100 images of 4x3 (1200 bytes), file holds 1170 bytes (97 whole images)");
    write_bytes(tmp("f-body.gz"), ibuf, n - 30, 1);
    expect_fail(tmp("f-body.gz"), tmp("f-labels"), tmp("f-body.gz"), "truncated: header says 100 images");
    /* labels cut */
    write_bytes(tmp("f-lab"), lbuf, 8 + 50, 0);
    write_bytes(tmp("f-img"), ibuf, n, 0);
    expect_fail(tmp("f-img"), tmp("f-lab"), tmp("f-lab"), "truncated: header says 100 labels, file holds 50");
    /* trailing bytes */
    write_bytes(tmp("f-long"), ibuf, n, 0);
    FILE *f = fopen(tmp("f-long"), "ab"); fputs("xyz", f); fclose(f);
    expect_fail(tmp("f-long"), tmp("f-labels"), tmp("f-long"), "3 bytes of trailing data");
}

TEST(truncated_gzip_stream)
{
    /* a gzip file cut in the middle of its compressed stream */
    size_t n = make_images(ibuf, 100, 4, 3);
    write_bytes(tmp("g-full.gz"), ibuf, n, 1);
    FILE *f = fopen(tmp("g-full.gz"), "rb");
    uint8_t z[4096];
    size_t zn = fread(z, 1, sizeof z, f);
    fclose(f);
    write_bytes(tmp("g-cut.gz"), z, zn / 2, 0);
    write_bytes(tmp("g-labels"), lbuf, make_labels(lbuf, 100), 0);
    expect_fail(tmp("g-cut.gz"), tmp("g-labels"), tmp("g-cut.gz"), "truncated: header says 100 images");
    CHECK_STR_CONTAINS(dtf_error(), "(compressed stream: unexpected end of file)");
    /* only the trailer (crc, length) cut: all bytes are there, the stream is not whole */
    write_bytes(tmp("g-trailer.gz"), z, zn - 4, 0);
    expect_fail(tmp("g-trailer.gz"), tmp("g-labels"), tmp("g-trailer.gz"), "corrupt compressed stream: unexpected end of file");
}

TEST(zero_length_file)
{
    write_set(tmp("h-images"), tmp("h-labels"), 0);
    write_bytes(tmp("h-empty"), "", 0, 0);
    expect_fail(tmp("h-empty"), tmp("h-labels"), tmp("h-empty"), "empty file");
    expect_fail(tmp("h-images"), tmp("h-empty"), tmp("h-empty"), "empty file");
    write_bytes(tmp("h-empty.gz"), "", 0, 1);
    expect_fail(tmp("h-empty.gz"), tmp("h-labels"), tmp("h-empty.gz"), "empty file");
}

TEST(count_mismatch)
{
    write_bytes(tmp("i-images"), ibuf, make_images(ibuf, 100, 4, 3), 0);
    write_bytes(tmp("i-labels"), lbuf, make_labels(lbuf, 99), 0);
    dtf_dataset *ds = dtf_dataset_load(tmp("i-images"), tmp("i-labels"));
    CHECK(ds == NULL);
    CHECK_STR_CONTAINS(dtf_error(), tmp("i-images"));
    CHECK_STR_CONTAINS(dtf_error(), tmp("i-labels"));
    CHECK_STR_CONTAINS(dtf_error(), "99 labels");
    CHECK_STR_CONTAINS(dtf_error(), "100 images");
}

TEST(absurd_dimensions)
{
    uint8_t h[16];
    dtf_idx info;
    be32(h, DTF_IDX_IMAGES); be32(h + 4, 60000); be32(h + 8, 1u << 20); be32(h + 12, 1u << 20);
    CHECK_EQ_INT(dtf_idx_parse_header(h, 16, DTF_IDX_IMAGES, "x", &info), -1);
    CHECK_STR_CONTAINS(dtf_error(), "x: absurd dimensions: 60000 images of 1048576x1048576");
    be32(h + 4, 0xffffffffu); be32(h + 8, 0xffffffffu); be32(h + 12, 0xffffffffu);
    CHECK_EQ_INT(dtf_idx_parse_header(h, 16, DTF_IDX_IMAGES, "x", &info), -1);
    CHECK_STR_CONTAINS(dtf_error(), "absurd");
    be32(h + 8, 0);
    CHECK_EQ_INT(dtf_idx_parse_header(h, 16, DTF_IDX_IMAGES, "x", &info), -1);
    CHECK_STR_CONTAINS(dtf_error(), "bad dimensions");
    /* a huge announced body with a tiny file is "truncated", not an allocation */
    be32(h + 4, 60000); be32(h + 8, 28); be32(h + 12, 28);
    write_bytes(tmp("j-images"), h, 16 + 0, 0);
    write_bytes(tmp("j-labels"), lbuf, make_labels(lbuf, 100), 0);
    expect_fail(tmp("j-images"), tmp("j-labels"), tmp("j-images"),
                "truncated: header says 60000 images of 28x28 (47040000 bytes), file holds 0 bytes");
}

TEST(no_images)
{
    write_bytes(tmp("k-images"), ibuf, make_images(ibuf, 0, 4, 3), 0);
    write_bytes(tmp("k-labels"), lbuf, make_labels(lbuf, 0), 0);
    expect_fail(tmp("k-images"), tmp("k-labels"), tmp("k-images"), "holds no images");
}

/* ---- order, shards, loader ----------------------------------------------- */

static int is_permutation(const uint32_t *o, uint32_t n)
{
    uint8_t seen[1000] = {0};
    for (uint32_t i = 0; i < n; i++) {
        if (o[i] >= n || seen[o[i]]) return 0;
        seen[o[i]] = 1;
    }
    return 1;
}

TEST(epoch_order)
{
    uint32_t a[1000], b[1000], c[1000], d[1000];
    dtf_epoch_order(a, 1000, 1, 1, 1);
    dtf_epoch_order(b, 1000, 1, 1, 1);
    dtf_epoch_order(c, 1000, 2, 1, 1);
    dtf_epoch_order(d, 1000, 1, 2, 1);
    CHECK(is_permutation(a, 1000));
    CHECK(is_permutation(c, 1000));
    CHECK(memcmp(a, b, sizeof a) == 0);   /* same seed: same order */
    CHECK(memcmp(a, c, sizeof a) != 0);   /* other seed: other order */
    CHECK(memcmp(a, d, sizeof a) != 0);   /* other epoch: other order */
    int fixed = 0;
    for (int i = 0; i < 1000; i++) fixed += a[i] == (uint32_t)i;
    CHECK(fixed < 20);                    /* ~1 expected */
    dtf_epoch_order(a, 1000, 1, 1, 0);
    for (int i = 0; i < 1000; i++) CHECK_EQ_INT(a[i], i);
    /* seeds 1/epoch 2 and 2/epoch 1 differ (seed + epoch would not) */
    dtf_epoch_order(c, 1000, 2, 1, 1);
    CHECK(memcmp(c, d, sizeof c) != 0);
    /* pinned: the order is part of the reproducibility contract */
    dtf_epoch_order(a, 10, 1, 1, 1);
    printf("  epoch order (seed 1, epoch 1, n 10):");
    for (int i = 0; i < 10; i++) printf(" %u", a[i]);
    printf("\n");
}

TEST(shards_disjoint_and_covering)
{
    uint32_t counts[] = {100, 101, 7, 60000};
    for (int c = 0; c < 4; c++)
        for (uint32_t S = 1; S <= 7; S++) {
            uint32_t next = 0, lo = UINT32_MAX, hi = 0;
            for (uint32_t s = 0; s < S; s++) {
                uint32_t b, e;
                CHECK_EQ_INT(dtf_data_shard_range(counts[c], s, S, &b, &e), 0);
                CHECK_EQ_INT(b, next);
                next = e;
                if (e - b < lo) lo = e - b;
                if (e - b > hi) hi = e - b;
            }
            CHECK_EQ_INT(next, counts[c]);
            CHECK(hi - lo <= 1);
        }
    uint32_t b, e;
    CHECK_EQ_INT(dtf_data_shard_range(10, 2, 2, &b, &e), -1);
    CHECK_STR_CONTAINS(dtf_error(), "bad shard 2 of 2");
    CHECK_EQ_INT(dtf_data_shard_range(10, 0, 0, &b, &e), -1);
}

static dtf_dataset *small_set(void)
{
    write_set(tmp("l-images"), tmp("l-labels"), 0);
    return dtf_dataset_load(tmp("l-images"), tmp("l-labels"));
}

/* Which example a converted row came from: pixel 0 is (i*7) % 256 and the
 * label i % 10, which pins i in 0..99 (7 is invertible mod 256). */
static int example_of(const float *x)
{
    int p0 = (int)(x[0] * 255.0f + 0.5f);
    for (int i = 0; i < 100; i++)
        if ((i * 7) % 256 == p0) return i;
    return -1;
}

TEST(loader_shards_see_disjoint_examples)
{
    dtf_dataset *ds = small_set();
    CHECK(ds != NULL);
    if (!ds) return;
    for (int epoch = 1; epoch <= 3; epoch++) {
        int seen[100] = {0};
        for (uint32_t s = 0; s < 3; s++) {
            dtf_loader_opts o = {.batchsize = 8, .seed = 5, .shard = s, .shards = 3,
                                 .shuffle = 1, .drop_last = 0};
            dtf_loader *l = dtf_loader_new(ds, &o);
            CHECK(l != NULL);
            if (!l) continue;
            CHECK_EQ_INT(dtf_loader_seek(l, (uint64_t)epoch, 0), 0);
            uint32_t nb = dtf_loader_batches_per_epoch(l), total = 0;
            CHECK_EQ_INT(nb, (dtf_loader_shard_size(l) + 7) / 8);
            for (uint32_t k = 0; k < nb; k++) {
                float x[8 * 12], y[8];
                int r = dtf_loader_next(l, x, y);
                CHECK(r > 0 && r <= 8);
                for (int i = 0; i < r; i++) {
                    int ex = example_of(x + i * 12);
                    CHECK(ex >= 0);
                    if (ex >= 0) { seen[ex]++; CHECK_NEAR(y[i], ex % 10, 0); }
                }
                for (int i = r; i < 8; i++) CHECK(y[i] == 0.0f && x[i * 12] == 0.0f);
                total += (uint32_t)r;
            }
            CHECK_EQ_INT(total, dtf_loader_shard_size(l));
            CHECK_EQ_INT(dtf_loader_epoch(l), epoch);
            dtf_loader_free(l);
        }
        for (int i = 0; i < 100; i++) CHECK_EQ_INT(seen[i], 1);
    }
    dtf_dataset_free(ds);
}

TEST(loader_epochs_and_drop_last)
{
    dtf_dataset *ds = small_set();
    if (!ds) { CHECK(0); return; }
    /* 100 examples, 3 shards: sizes 33, 33, 34; drop_last gives every shard
     * floor(33 / 8) = 4 batches. */
    for (uint32_t s = 0; s < 3; s++) {
        dtf_loader_opts o = {.batchsize = 8, .seed = 1, .shard = s, .shards = 3,
                             .shuffle = 1, .drop_last = 1};
        dtf_loader *l = dtf_loader_new(ds, &o);
        CHECK_EQ_INT(dtf_loader_batches_per_epoch(l), 4);
        dtf_loader_free(l);
    }
    dtf_loader_opts o = {.batchsize = 8, .seed = 1, .shard = 0, .shards = 1,
                         .shuffle = 1, .drop_last = 1};
    dtf_loader *l = dtf_loader_new(ds, &o), *l2 = dtf_loader_new(ds, &o);
    CHECK_EQ_INT(dtf_loader_batches_per_epoch(l), 12);
    CHECK_EQ_INT(dtf_loader_epoch(l), 1);
    float x[8 * 12], y[8], x2[8 * 12], y2[8];
    int first_e1 = -1, first_e2 = -1;
    for (int k = 0; k < 12; k++) {
        CHECK_EQ_INT(dtf_loader_next(l, x, y), 8);
        if (k == 0) first_e1 = example_of(x);
    }
    CHECK_EQ_INT(dtf_loader_epoch(l), 1);
    CHECK_EQ_INT(dtf_loader_position(l), 12);
    CHECK_EQ_INT(dtf_loader_next(l, x, y), 8);
    first_e2 = example_of(x);
    CHECK_EQ_INT(dtf_loader_epoch(l), 2);
    CHECK_EQ_INT(dtf_loader_position(l), 1);
    CHECK(first_e1 != first_e2 || 1); /* could collide by chance; the orders differ */
    /* seek reproduces the same batch */
    CHECK_EQ_INT(dtf_loader_seek(l2, 2, 0), 0);
    CHECK_EQ_INT(dtf_loader_next(l2, x2, y2), 8);
    CHECK(memcmp(x, x2, sizeof x) == 0 && memcmp(y, y2, sizeof y) == 0);
    CHECK_EQ_INT(dtf_loader_seek(l2, 0, 0), -1);
    CHECK_EQ_INT(dtf_loader_seek(l2, 1, 13), -1);
    dtf_loader_free(l);
    dtf_loader_free(l2);
    /* a shard too small for one batch */
    dtf_loader_opts big = {.batchsize = 64, .seed = 1, .shard = 0, .shards = 2,
                           .shuffle = 1, .drop_last = 1};
    CHECK(dtf_loader_new(ds, &big) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "shard 0 of 2 holds 50 examples, not one whole batch of 64");
    big.batchsize = 0;
    CHECK(dtf_loader_new(ds, &big) == NULL);
    dtf_dataset_free(ds);
}

/* ---- the real thing ------------------------------------------------------ */

#define FMNIST "/usr/share/datasets/fashion-mnist/"

TEST(fashion_mnist)
{
    if (access(FMNIST "train-images-idx3-ubyte.gz", R_OK) != 0) {
        printf("  (skipped: " FMNIST " not installed)\n");
        return;
    }
    double t0 = dtf_now();
    dtf_dataset *tr = dtf_dataset_load(FMNIST "train-images-idx3-ubyte.gz",
                                       FMNIST "train-labels-idx1-ubyte.gz");
    double t1 = dtf_now();
    dtf_dataset *te = dtf_dataset_load(FMNIST "t10k-images-idx3-ubyte.gz",
                                       FMNIST "t10k-labels-idx1-ubyte.gz");
    CHECK(tr != NULL && te != NULL);
    if (!tr || !te) { fprintf(stderr, "  %s\n", dtf_error()); goto out; }
    printf("  fashion-mnist train loaded in %.2f s\n", t1 - t0);
    CHECK_EQ_INT(dtf_dataset_count(tr), 60000);
    CHECK_EQ_INT(dtf_dataset_count(te), 10000);
    CHECK_EQ_INT(dtf_dataset_rows(tr), 28);
    CHECK_EQ_INT(dtf_dataset_cols(tr), 28);
    int hist[10] = {0};
    const uint8_t *lab = dtf_dataset_labels(tr);
    for (int i = 0; i < 60000; i++) { CHECK(lab[i] < 10); if (lab[i] < 10) hist[lab[i]]++; }
    for (int c = 0; c < 10; c++) CHECK_EQ_INT(hist[c], 6000);
    /* first training example of Fashion-MNIST is an ankle boot (9) */
    CHECK_EQ_INT(lab[0], 9);
    CHECK_EQ_INT(dtf_dataset_labels(te)[0], 9);
    double sum = 0;
    uint8_t px[784];
    for (uint32_t i = 0; i < 60000; i++) {
        CHECK(dtf_dataset_image(tr, i, px) == 0);
        for (int k = 0; k < 784; k++) sum += px[k];
    }
    printf("  mean pixel %.4f\n", sum / (60000.0 * 784 * 255));
    CHECK_NEAR(sum / (60000.0 * 784 * 255), 0.2860, 0.001);
    /* kept packed: the black background costs a byte per run */
    printf("  pixels take %zu bytes (raw %d)\n", dtf_dataset_pixel_bytes(tr), 60000 * 784);
    CHECK(dtf_dataset_pixel_bytes(tr) < (size_t)60000 * 784 * 7 / 10);
    /* the batch floats are the bytes / 255 */
    float xb[2 * 784], yb[2];
    uint32_t two[2] = {0, 59999};
    CHECK(dtf_dataset_batch(tr, two, 2, xb, yb) == 0);
    CHECK(dtf_dataset_image(tr, 59999, px) == 0);
    int same = 1;
    for (int k = 0; k < 784; k++) same &= xb[784 + k] == (float)px[k] / 255.0f;
    CHECK(same);
    CHECK(dtf_dataset_image(tr, 60000, px) < 0);
out:
    dtf_dataset_free(tr);
    dtf_dataset_free(te);
}

TEST(cleanup)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (tmpdir[0] && system(cmd) != 0) CHECK(0);
}

RUN_TESTS("test_data")
