/* Unit tests for tfevents.c: CRC32C against its published check value, an
 * Event's bytes against ones written out by hand from the protobuf
 * encoding rules, round trips through framing and decoding, every
 * corrupted or truncated byte of a record caught, and a real file written
 * and read back (its name, a second writer in the same second, a torn
 * last record). */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tfevents.h"
#include "util.h"

TEST(crc32c_check_value)
{
    /* The CRC-32C check value of "123456789" (RFC 3720, B.4) */
    CHECK_EQ_INT(dtf_crc32c(0, "123456789", 9), 0xe3069283u);
    /* chaining gives the same as one pass */
    CHECK_EQ_INT(dtf_crc32c(dtf_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
    CHECK_EQ_INT(dtf_crc32c(0, "", 0), 0);
    /* 32 zero bytes: RFC 3720 B.4's first vector */
    uint8_t z[32] = {0};
    CHECK_EQ_INT(dtf_crc32c(0, z, 32), 0x8a9136aau);
}

TEST(mask_is_tensorflows)
{
    uint32_t c = 0x12345678u;
    CHECK_EQ_INT(dtf_crc32c_mask(c), (((c >> 15) | (c << 17)) + 0xa282ead8u) & 0xffffffffu);
}

TEST(scalar_bytes_by_hand)
{
    /* Event{wall_time=1.5, step=3, summary{value{tag="a", simple_value=2}}}:
     * 09 <double 1.5>  10 03  2a 0a  0a 08  0a 01 'a'  15 <float 2.0> */
    static const uint8_t want[] = {0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x10, 0x03, 0x2a, 0x0a,
                                   0x0a, 0x08, 0x0a, 0x01, 'a', 0x15, 0, 0, 0, 0x40};
    uint8_t got[64];
    size_t n = dtf_event_encode_scalar(got, sizeof got, 1.5, 3, "a", 2.0f);
    CHECK_EQ_INT(n, sizeof want);
    CHECK(memcmp(got, want, sizeof want) == 0);
    /* too small a buffer: the length it needs, nothing past cap written */
    uint8_t small[8];
    memset(small, 0xee, sizeof small);
    CHECK_EQ_INT(dtf_event_encode_scalar(small, 4, 1.5, 3, "a", 2.0f), sizeof want);
    CHECK(small[4] == 0xee);
}

TEST(version_bytes_by_hand)
{
    uint8_t got[64];
    size_t n = dtf_event_encode_version(got, sizeof got, 0.0, "brain.Event:2");
    CHECK_EQ_INT(n, 9 + 2 + 13);
    CHECK(got[9] == 0x1a && got[10] == 13 && memcmp(got + 11, "brain.Event:2", 13) == 0);
}

typedef struct seen {
    int n;
    char tag[64];
    float value;
    int64_t step;
    double wall;
} seen;

static void on_scalar(void *ud, const dtf_event *ev, const char *tag, size_t taglen, float v)
{
    seen *s = ud;
    s->n++;
    snprintf(s->tag, sizeof s->tag, "%.*s", (int)taglen, tag);
    s->value = v;
    s->step = ev->step;
    s->wall = ev->wall;
}

TEST(scalar_round_trip)
{
    static const int64_t steps[] = {0, 1, 127, 128, 1 << 20, INT64_MAX, -1, INT64_MIN};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        uint8_t rec[128], frame[160];
        size_t n = dtf_event_encode_scalar(rec, sizeof rec, 1764324454.495587, steps[i],
                                           "train/loss", 0.4123f);
        size_t fn = dtf_tfrecord_frame(frame, sizeof frame, rec, n);
        CHECK_EQ_INT(fn, 12 + n + 4);
        const uint8_t *r;
        size_t rl, used;
        CHECK_EQ_INT(dtf_tfrecord_parse(frame, fn, DTF_TFRECORD_MAX, &r, &rl, &used), 1);
        CHECK_EQ_INT(rl, n);
        CHECK_EQ_INT(used, fn);
        seen s = {0};
        dtf_event ev;
        CHECK_EQ_INT(dtf_event_decode(r, rl, &ev, on_scalar, &s), 0);
        CHECK_EQ_INT(s.n, 1);
        CHECK(strcmp(s.tag, "train/loss") == 0);
        CHECK_NEAR(s.value, 0.4123f, 0);
        CHECK_EQ_INT(s.step, steps[i]);
        CHECK_NEAR(s.wall, 1764324454.495587, 0);
    }
}

TEST(every_corrupt_or_missing_byte_is_caught)
{
    uint8_t rec[64], frame[96];
    size_t n = dtf_event_encode_scalar(rec, sizeof rec, 2.0, 42, "eval/accuracy", 0.85f);
    size_t fn = dtf_tfrecord_frame(frame, sizeof frame, rec, n);
    const uint8_t *r;
    size_t rl, used;
    for (size_t i = 0; i < fn; i++) {
        for (int bit = 0; bit < 8; bit++) {
            frame[i] ^= (uint8_t)(1 << bit);
            int rc = dtf_tfrecord_parse(frame, fn, DTF_TFRECORD_MAX, &r, &rl, &used);
            /* a flipped length bit is a length CRC error; anything else a CRC error
             * of its own part (a length that grows past the buffer is also caught
             * by the length CRC first) */
            if (rc != -1)
                FAIL("byte %zu bit %d flipped: parse gave %d", i, bit, rc);
            frame[i] ^= (uint8_t)(1 << bit);
        }
        /* cut after byte i: not a whole record yet */
        if (dtf_tfrecord_parse(frame, i, DTF_TFRECORD_MAX, &r, &rl, &used) != 0)
            FAIL("cut at %zu not reported as incomplete", i);
    }
    CHECK_EQ_INT(dtf_tfrecord_parse(frame, fn, DTF_TFRECORD_MAX, &r, &rl, &used), 1);
    /* a length over the cap, with a valid length CRC */
    CHECK_EQ_INT(dtf_tfrecord_parse(frame, fn, n - 1, &r, &rl, &used), -1);
    CHECK_STR_CONTAINS(dtf_error(), "at most");
}

TEST(malformed_protos_are_rejected)
{
    static const struct {
        const char *what;
        uint8_t b[16];
        size_t n;
    } bad[] = {
        {"truncated varint", {0x10, 0x80}, 2},
        {"varint of 11 bytes", {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 12},
        {"length past the end", {0x2a, 0x05, 0x0a}, 3},
        {"truncated double", {0x09, 0, 0, 0}, 4},
        {"group wire type", {0x0b}, 1},
        {"field number 0", {0x02, 0x00}, 2},
        {"bad nested value", {0x2a, 0x02, 0x0a, 0x05}, 4},
        {"bad float in value", {0x2a, 0x04, 0x0a, 0x02, 0x15, 0x00}, 6},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dtf_event ev;
        seen s = {0};
        if (dtf_event_decode(bad[i].b, bad[i].n, &ev, on_scalar, &s) != -1)
            FAIL("%s accepted", bad[i].what);
        if (s.n != 0)
            FAIL("%s gave a scalar", bad[i].what);
    }
    /* unknown fields are skipped: a field 15 varint and a field 10 message */
    uint8_t ok[] = {0x78, 0x05, 0x52, 0x01, 0x00, 0x10, 0x07};
    dtf_event ev;
    CHECK_EQ_INT(dtf_event_decode(ok, sizeof ok, &ev, NULL, NULL), 0);
    CHECK_EQ_INT(ev.step, 7);
}

static char tmpdir[256];

static void make_tmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dtf-test-tfevents.XXXXXX");
    if (!mkdtemp(tmpdir))
        FAIL("mkdtemp");
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (unlink(p) != 0)
                remove_tree(p);
        }
    closedir(d);
    rmdir(dir);
}

typedef struct all {
    int n, versions;
    int64_t steps[16];
    float values[16];
} all;

static void on_all(void *ud, const dtf_event *ev, const char *tag, size_t taglen, float v)
{
    all *a = ud;
    if (a->n < 16) {
        a->steps[a->n] = ev->step;
        a->values[a->n] = v;
    }
    a->n++;
}

TEST(file_written_and_read_back)
{
    make_tmp();
    char dir[300];
    snprintf(dir, sizeof dir, "%s/tensorboard/worker0", tmpdir);
    dtf_tfevents *w = dtf_tfevents_open(dir, "host/a");
    CHECK(w != NULL);
    if (!w)
        return;
    const char *path = dtf_tfevents_path(w);
    char want[400];
    snprintf(want, sizeof want, "%s/events.out.tfevents.", dir);
    CHECK(strncmp(path, want, strlen(want)) == 0);
    char tail[64];
    snprintf(tail, sizeof tail, ".host_a.%d", (int)getpid());
    CHECK(strlen(path) > strlen(tail) && strcmp(path + strlen(path) - strlen(tail), tail) == 0);
    /* a second writer in the same second gets a name of its own */
    dtf_tfevents *w2 = dtf_tfevents_open(dir, "host/a");
    CHECK(w2 != NULL && strcmp(dtf_tfevents_path(w2), path) != 0);
    dtf_tfevents_close(w2);

    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(dtf_tfevents_scalar(w, "train/loss", i * 100, 1.0 / (i + 1)), 0);
    CHECK_EQ_INT(dtf_tfevents_scalar(w, "", 1, 1), -1);
    char longtag[300];
    memset(longtag, 'x', sizeof longtag - 1);
    longtag[sizeof longtag - 1] = 0;
    CHECK_EQ_INT(dtf_tfevents_scalar(w, longtag, 1, 1), -1);
    /* nothing reaches the file before a flush but the queue */
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size == 0);
    CHECK_EQ_INT(dtf_tfevents_flush(w), 0);
    all a = {0};
    int trunc = 1;
    CHECK_EQ_INT(dtf_tfevents_read(path, on_all, &a, &trunc), 0);
    CHECK_EQ_INT(trunc, 0);
    CHECK_EQ_INT(a.n, 10);
    CHECK_EQ_INT(a.steps[9], 900);
    CHECK_NEAR(a.values[3], 0.25f, 0);

    /* a torn last record: the ones before it still read, truncated is set */
    char copy[400];
    snprintf(copy, sizeof copy, "%s/torn", tmpdir);
    CHECK(stat(path, &st) == 0);
    int in = open(path, O_RDONLY), out = open(copy, O_WRONLY | O_CREAT, 0644);
    char *buf = malloc((size_t)st.st_size);
    CHECK(read(in, buf, (size_t)st.st_size) == st.st_size);
    CHECK(write(out, buf, (size_t)st.st_size - 5) == st.st_size - 5);
    close(in);
    close(out);
    free(buf);
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(dtf_tfevents_read(copy, on_all, &a, &trunc), 0);
    CHECK_EQ_INT(trunc, 1);
    CHECK_EQ_INT(a.n, 9);
    /* a flipped byte in the middle: an error naming the file and offset */
    int fd = open(copy, O_RDWR);
    CHECK(pwrite(fd, "\xff", 1, 40) == 1);
    close(fd);
    CHECK_EQ_INT(dtf_tfevents_read(copy, on_all, &a, &trunc), -1);
    CHECK_STR_CONTAINS(dtf_error(), "torn: record at byte");
    CHECK_EQ_INT(dtf_tfevents_close(w), 0);
    CHECK_EQ_INT(dtf_tfevents_read("/nonexistent/events", on_all, &a, &trunc), -1);
    CHECK_STR_CONTAINS(dtf_error(), "/nonexistent/events");
    remove_tree(tmpdir);
}

TEST(open_fails_with_a_message)
{
    CHECK(dtf_tfevents_open("/proc/no/such/dir", NULL) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "/proc/no");
}

RUN_TESTS("test_tfevents")
