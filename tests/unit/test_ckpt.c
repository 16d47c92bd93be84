/* Unit tests for ckpt.c: safetensors round trips, metadata, atomic saves,
 * truncated and hostile files, names, listing and pruning. */
#include "harness.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"

static char tmpdir[64];

static const char *tmp(const char *name)
{
    static char paths[8][256];
    static int k;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/dtf-test-ckpt-XXXXXX");
        if (!mkdtemp(tmpdir))
            abort();
    }
    char *p = paths[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static size_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void write_file(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(buf, 1, n, f) != n) abort();
    fclose(f);
}

/* ---- round trip ---------------------------------------------------------- */

static float w[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 3.4e38f};
static float bias[3] = {0.25f, 0.5f, 0.75f};
static float step_t = 42;

static int save_three(const char *path, const char *tag)
{
    int64_t sw[2] = {2, 3}, sb[1] = {3}, sz[2] = {0, 5};
    dtf_ckpt_in t[] = {
        {"layer1.weight", 2, sw, w, 6},
        {"layer1.bias", 1, sb, bias, 3},
        {"step", 0, NULL, &step_t, 1},
        {"empty", 2, sz, NULL, 0},
    };
    dtf_kv meta[] = {
        {"global_step", "1200"},
        {"tag", tag},
        {"quote\"back\\slash\nnl\x01", "caf\xc3\xa9 \xf0\x9f\x98\x80"},
    };
    return dtf_ckpt_save(path, t, 4, meta, 3);
}

TEST(round_trip)
{
    const char *path = tmp("rt.safetensors");
    CHECK_EQ_INT(save_three(path, "v1"), 0);
    dtf_ckpt *c = dtf_ckpt_load(path);
    CHECK(c != NULL);
    if (!c) { fprintf(stderr, "  %s\n", dtf_error()); return; }
    CHECK_EQ_INT(c->nt, 4);
    CHECK(strcmp(c->t[0].name, "layer1.weight") == 0);   /* file order kept */
    CHECK(strcmp(c->t[3].name, "empty") == 0);
    const dtf_ckpt_tensor *tw = dtf_ckpt_find(c, "layer1.weight");
    const dtf_ckpt_tensor *tb = dtf_ckpt_find(c, "layer1.bias");
    const dtf_ckpt_tensor *ts = dtf_ckpt_find(c, "step");
    const dtf_ckpt_tensor *te = dtf_ckpt_find(c, "empty");
    CHECK(tw && tb && ts && te);
    if (!tw || !tb || !ts || !te) { dtf_ckpt_free(c); return; }
    CHECK_EQ_INT(tw->ndim, 2);
    CHECK_EQ_INT(tw->shape[0], 2);
    CHECK_EQ_INT(tw->shape[1], 3);
    CHECK_EQ_INT(tw->count, 6);
    CHECK(memcmp(tw->data, w, sizeof w) == 0);           /* bit-exact, -0 included */
    CHECK(memcmp(tb->data, bias, sizeof bias) == 0);
    CHECK_EQ_INT(ts->ndim, 0);
    CHECK_EQ_INT(ts->count, 1);
    CHECK(ts->data[0] == 42.0f);
    CHECK_EQ_INT(te->count, 0);
    CHECK_EQ_INT(te->shape[1], 5);
    CHECK(((uintptr_t)tw->data & 3) == 0);
    CHECK(dtf_ckpt_find(c, "nope") == NULL);
    CHECK_EQ_INT(c->nmeta, 3);
    CHECK(strcmp(dtf_ckpt_get_meta(c, "global_step"), "1200") == 0);
    CHECK(strcmp(dtf_ckpt_get_meta(c, "tag"), "v1") == 0);
    const char *odd = dtf_ckpt_get_meta(c, "quote\"back\\slash\nnl\x01");
    CHECK(odd && strcmp(odd, "caf\xc3\xa9 \xf0\x9f\x98\x80") == 0);
    CHECK(dtf_ckpt_get_meta(c, "nope") == NULL);
    dtf_ckpt_free(c);

    /* the layout: length, '{' first, data 8-byte aligned, exact size */
    uint8_t buf[4096];
    size_t n = read_file(path, buf, sizeof buf);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)buf[i] << (8 * i);
    CHECK_EQ_INT((8 + hlen) % 8, 0);
    CHECK_EQ_INT(buf[8], '{');
    CHECK_EQ_INT(n, 8 + hlen + (6 + 3 + 1) * 4);
    /* the same bytes parse from memory */
    c = dtf_ckpt_parse(buf, n, "mem");
    CHECK(c != NULL);
    dtf_ckpt_free(c);
}

TEST(empty_checkpoint)
{
    const char *path = tmp("empty.safetensors");
    CHECK_EQ_INT(dtf_ckpt_save(path, NULL, 0, NULL, 0), 0);
    dtf_ckpt *c = dtf_ckpt_load(path);
    CHECK(c != NULL);
    if (c) { CHECK_EQ_INT(c->nt, 0); CHECK_EQ_INT(c->nmeta, 0); }
    dtf_ckpt_free(c);
    CHECK_EQ_INT(file_size(path), 16);
}

/* Another tool reads it: a few lines of python, struct and json only. */
TEST(python_reads_it)
{
    if (system("python3 -c 'import json, struct' >/dev/null 2>&1") != 0) {
        printf("  (skipped: no python3)\n");
        return;
    }
    const char *path = tmp("py.safetensors");
    CHECK_EQ_INT(save_three(path, "py"), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 -c '\n"
             "import json, struct, sys\n"
             "b = open(sys.argv[1], \"rb\").read()\n"
             "n, = struct.unpack(\"<Q\", b[:8]); h = json.loads(b[8:8+n]); d = b[8+n:]\n"
             "t = h[\"layer1.weight\"]; s, e = t[\"data_offsets\"]\n"
             "w = struct.unpack(\"<%%df\" %% ((e - s) // 4), d[s:e])\n"
             "assert t[\"dtype\"] == \"F32\" and t[\"shape\"] == [2, 3], t\n"
             "assert w[:3] == (1.0, -2.0, 3.5), w\n"
             "assert h[\"__metadata__\"][\"tag\"] == \"py\"\n"
             "assert h[\"step\"][\"shape\"] == []\n"
             "' %s", path);
    CHECK_EQ_INT(system(cmd), 0);
}

/* ---- input errors on save ------------------------------------------------ */

TEST(save_rejects_bad_input)
{
    int64_t s2[1] = {2}, s3[1] = {3}, neg[1] = {-1};
    float x[3] = {1, 2, 3};
    const char *path = tmp("bad.safetensors");
    dtf_ckpt_in dup[] = {{"a", 1, s2, x, 2}, {"a", 1, s2, x, 2}};
    CHECK_EQ_INT(dtf_ckpt_save(path, dup, 2, NULL, 0), -1);
    CHECK_STR_CONTAINS(dtf_error(), "'a'");
    CHECK_STR_CONTAINS(dtf_error(), "given twice");
    dtf_ckpt_in mism[] = {{"a", 1, s3, x, 2}};
    CHECK_EQ_INT(dtf_ckpt_save(path, mism, 1, NULL, 0), -1);
    CHECK_STR_CONTAINS(dtf_error(), "does not match its shape");
    dtf_ckpt_in res[] = {{"__metadata__", 1, s2, x, 2}};
    CHECK_EQ_INT(dtf_ckpt_save(path, res, 1, NULL, 0), -1);
    CHECK_STR_CONTAINS(dtf_error(), "reserved");
    dtf_ckpt_in ng[] = {{"n", 1, neg, x, 0}};
    CHECK_EQ_INT(dtf_ckpt_save(path, ng, 1, NULL, 0), -1);
    CHECK_STR_CONTAINS(dtf_error(), "bad shape");
    dtf_kv m2[] = {{"k", "1"}, {"k", "2"}};
    CHECK_EQ_INT(dtf_ckpt_save(path, NULL, 0, m2, 2), -1);
    CHECK_STR_CONTAINS(dtf_error(), "metadata key 'k' given twice");
    CHECK_EQ_INT(file_size(path), 0);   /* nothing was written */
    CHECK(access(path, F_OK) != 0);
    /* an I/O error names the path and leaves no temporary behind */
    CHECK_EQ_INT(dtf_ckpt_save(tmp("no/such/dir.safetensors"), NULL, 0, NULL, 0), -1);
    CHECK_STR_CONTAINS(dtf_error(), "no/such/dir.safetensors");
    CHECK_STR_CONTAINS(dtf_error(), "No such file or directory");
}

/* ---- atomicity ----------------------------------------------------------- */

TEST(atomic_replace_and_crash_leftovers)
{
    char dir[256], path[400], name[64], tmpf[400];
    snprintf(dir, sizeof dir, "%s/atomic", tmpdir);
    mkdir(dir, 0755);
    dtf_ckpt_name(name, sizeof name, 100, 0, 1);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_EQ_INT(save_three(path, "v1"), 0);
    /* a crash in the middle of the next save leaves its temporary file:
     * half a header, no rename */
    snprintf(tmpf, sizeof tmpf, "%s/.%s.tmp.99999", dir, name);
    write_file(tmpf, "\x40\0\0\0\0\0\0\0{\"__meta", 17);
    dtf_ckpt_file *f;
    size_t n;
    CHECK_EQ_INT(dtf_ckpt_list(dir, 0, &f, &n), 0);
    CHECK_EQ_INT(n, 1);                 /* the temporary is not a checkpoint */
    if (n == 1) {
        dtf_ckpt *c = dtf_ckpt_load(f[0].path);
        CHECK(c != NULL);
        if (c) CHECK(strcmp(dtf_ckpt_get_meta(c, "tag"), "v1") == 0);
        dtf_ckpt_free(c);
    }
    dtf_ckpt_list_free(f, n);
    /* a later save replaces the file whole; no temporary of ours remains */
    CHECK_EQ_INT(save_three(path, "v2"), 0);
    dtf_ckpt *c = dtf_ckpt_load(path);
    CHECK(c && strcmp(dtf_ckpt_get_meta(c, "tag"), "v2") == 0);
    dtf_ckpt_free(c);
    snprintf(tmpf, sizeof tmpf, "%s/.%s.tmp.%ld", dir, name, (long)getpid());
    CHECK(access(tmpf, F_OK) != 0);
}

TEST(truncated_file_rejected)
{
    const char *path = tmp("trunc.safetensors");
    CHECK_EQ_INT(save_three(path, "v1"), 0);
    size_t size = file_size(path);
    uint8_t buf[4096];
    size_t n = read_file(path, buf, sizeof buf);
    CHECK_EQ_INT(n, size);
    /* cut in the data, in the header, in the length */
    size_t cuts[] = {size - 1, size - 12, 40, 9, 8, 5, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        write_file(path, buf, cuts[i]);
        dtf_ckpt *c = dtf_ckpt_load(path);
        CHECK(c == NULL);
        dtf_ckpt_free(c);
        CHECK_STR_CONTAINS(dtf_error(), path);
        CHECK_STR_CONTAINS(dtf_error(), "truncated");
    }
    CHECK(dtf_ckpt_load(tmp("missing.safetensors")) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "missing.safetensors: No such file or directory");
    CHECK(dtf_ckpt_load(tmpdir) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "not a regular file");
}

/* ---- hostile headers ----------------------------------------------------- */

/* A file from a header string and n data bytes (all zero). */
static dtf_ckpt *parse_json(const char *json, size_t ndata)
{
    static uint8_t buf[1 << 16];
    size_t h = strlen(json);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, json, h);
    memset(buf + 8 + h, 0, ndata);
    return dtf_ckpt_parse(buf, 8 + h + ndata, "hostile.safetensors");
}

static void expect_bad(const char *json, size_t ndata, const char *sub)
{
    dtf_ckpt *c = parse_json(json, ndata);
    if (c) FAIL("accepted: %s", json);
    dtf_ckpt_free(c);
    CHECK_STR_CONTAINS(dtf_error(), "hostile.safetensors: ");
    CHECK_STR_CONTAINS(dtf_error(), sub);
}

static void expect_good(const char *json, size_t ndata)
{
    dtf_ckpt *c = parse_json(json, ndata);
    if (!c) FAIL("rejected: %s: %s", json, dtf_error());
    dtf_ckpt_free(c);
}

#define T(s) "{\"t\":{\"dtype\":\"F32\",\"shape\":" s "}}"

TEST(hostile_lengths)
{
    uint8_t b[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CHECK(dtf_ckpt_parse(b, 16, "h") == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "over the cap");
    uint8_t b2[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(dtf_ckpt_parse(b2, 16, "h") == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "h: truncated: header length 200 but the file holds only 8");
    uint8_t b4[9] = {1, 0, 0, 0, 0, 0, 0, 0, '{'};
    CHECK(dtf_ckpt_parse(b4, 9, "h") == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "too short");
    CHECK(dtf_ckpt_parse(b, 7, "h") == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "h: truncated: 7 bytes");
    CHECK(dtf_ckpt_parse(b, 0, "h") == NULL);
}

TEST(hostile_json)
{
    expect_good("{}", 0);
    expect_good("{}   ", 0);
    expect_good("{\"__metadata__\":{}}", 0);
    expect_good(T("[2]" ",\"data_offsets\":[0,8]"), 8);
    expect_good("{ \"t\" : { \"data_offsets\" : [ 0 , 8 ] , \"shape\" : [ 2 ] , \"dtype\" : \"F32\" } }", 8);
    expect_good("{\"\\u00e9\\ud83d\\ude00\\n\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4);
    expect_bad("", 0, "too short");
    expect_bad(" {}", 0, "does not start with '{'");
    expect_bad("[]", 0, "does not start with '{'");
    expect_bad("{", 0, "too short");
    expect_bad("{ ", 0, "expected '\"', found the end");
    expect_bad("{}x", 0, "unexpected bytes after");
    expect_bad("{}}", 0, "unexpected bytes after");
    expect_bad("{\"a\"}", 0, "expected ':'");
    expect_bad("{\"a\":1}", 0, "expected '{'");
    expect_bad("{\"a\":{}}", 0, "has no dtype");
    expect_bad("{\"a", 0, "unterminated string");
    expect_bad("{\"a\\", 0, "unterminated string");
    expect_bad("{\"a\\q\":{}}", 0, "bad escape \\q");
    expect_bad("{\"a\\u12\":{}}", 0, "bad \\u escape");
    expect_bad("{\"a\\ud800\":{}}", 0, "without its low half");
    expect_bad("{\"a\\udc00\":{}}", 0, "lone low surrogate");
    expect_bad("{\"a\\u0000\":{}}", 0, "\\u0000");
    expect_bad("{\"a\nb\":{}}", 0, "control character 0x0a");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "metadata value for 'k' is not a string");
    expect_bad("{\"__metadata__\":{\"k\":\"v\"},\"__metadata__\":{}}", 0, "__metadata__ appears twice");
    expect_bad("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "metadata key 'k' appears twice");
    expect_bad("{\"__metadata__\":{\"k\":\"v\" \"j\":\"w\"}}", 0, "expected ',' or '}' in the metadata");
    expect_bad(T("[2],\"data_offsets\":[0,8],\"extra\":1"), 8, "unknown field 'extra' in tensor 't'");
    expect_bad(T("[2],\"shape\":[2],\"data_offsets\":[0,8]"), 8, "repeated field 'shape'");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "lacks a shape");
    expect_bad(T("[2]"), 8, "lacks data_offsets");
    expect_bad(T("[2,]"), 8, "expected a number");
    expect_bad(T("[2 3]"), 8, "expected ',' or ']' in a shape");
    expect_bad(T("[-2]"), 8, "negative number");
    expect_bad(T("[02]"), 8, "leading zero");
    expect_bad(T("[2.0]"), 8, "expected an integer");
    expect_bad(T("[2e1]"), 8, "expected an integer");
    expect_bad(T("[99999999999999999999999]"), 8, "number too large");
    expect_bad(T("[1,1,1,1,1,1,1,1,1]"), 8, "more than 8 dimensions");
    expect_bad(T("[2],\"data_offsets\":[0]"), 8, "expected ','");
    expect_bad(T("[2],\"data_offsets\":[0,8,9]"), 8, "exactly two numbers");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8, "expected '\"'");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]} ", 8, "ends inside the object");
}

TEST(hostile_tensors)
{
    expect_bad("{\"t\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
               "tensor 't' has dtype F16; dtf reads F32 only");
    expect_bad("{\"t\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16, "dtype I64");
    expect_bad(T("[2],\"data_offsets\":[0,12]"), 12, "needs 8 bytes but its data_offsets [0, 12] hold 12");
    expect_bad(T("[2],\"data_offsets\":[8,0]"), 8, "reversed");
    expect_bad(T("[2],\"data_offsets\":[0,8]"), 4, "run past the end of the data (4 bytes): truncated file?");
    expect_bad(T("[2],\"data_offsets\":[18446744073709551600,18446744073709551608]"), 8, "run past the end");
    expect_bad(T("[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]"), 8, "impossible shape");
    expect_bad(T("[2],\"data_offsets\":[0,8]"), 12, "4 bytes of data after the last tensor");
    expect_bad(T("[2],\"data_offsets\":[4,12]"), 12, "4 unused bytes in the data before tensor 't'");
    expect_bad(T("[1],\"data_offsets\":[2,6]"), 6, "not a multiple of 4");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
               "tensors 'a' and 'b' overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
               "tensor 'a' appears twice");
    /* zero-sized tensors may sit anywhere in the tiling */
    expect_good("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[8,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12);
    /* tensors out of file order in the data */
    expect_good("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12);
}

/* ---- names, listing, pruning --------------------------------------------- */

TEST(names)
{
    char b[64];
    dtf_ckpt_name(b, sizeof b, 1200, 1, 3);
    CHECK(strcmp(b, "ckpt-00001200-ps1-of-3.safetensors") == 0);
    uint64_t step;
    unsigned shard, nps;
    CHECK_EQ_INT(dtf_ckpt_parse_name(b, &step, &shard, &nps), 0);
    CHECK_EQ_INT(step, 1200);
    CHECK_EQ_INT(shard, 1);
    CHECK_EQ_INT(nps, 3);
    /* the older name, without the sharding */
    CHECK_EQ_INT(dtf_ckpt_parse_name("ckpt-123456789012-ps10.safetensors", &step, &shard, &nps), 0);
    CHECK_EQ_INT(step, 123456789012LL);
    CHECK_EQ_INT(shard, 10);
    CHECK_EQ_INT(nps, 0);
    const char *bad[] = {".ckpt-00000001-ps0.safetensors.tmp.12", "ckpt-00000001-ps0.safetensors.tmp",
                         "ckpt--ps0.safetensors", "ckpt-1-ps.safetensors", "ckpt-1-psx.safetensors",
                         "model.safetensors", "ckpt-99999999999999999999999-ps0.safetensors",
                         "ckpt-1-ps2-of-2.safetensors", "ckpt-1-ps0-of-0.safetensors",
                         "ckpt-1-ps0-of-.safetensors", "ckpt-1-ps0-of-2x.safetensors"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ_INT(dtf_ckpt_parse_name(bad[i], &step, &shard, &nps), -1);
}

TEST(remove_temps_of_one_shard)
{
    char dir[256], path[400];
    snprintf(dir, sizeof dir, "%s/temps", tmpdir);
    mkdir(dir, 0755);
    static const char *const files[] = {
        ".ckpt-00000100-ps0-of-2.safetensors.tmp.77",  /* ours: goes */
        ".ckpt-00000100-ps0.safetensors.tmp.78",       /* the older name of shard 0: goes */
        ".ckpt-00000100-ps1-of-2.safetensors.tmp.77",  /* another shard */
        ".ckpt-00000100-ps0-of-3.safetensors.tmp.77",  /* shard 0 of another sharding */
        ".ckpt-00000100-ps0-of-2.safetensors.tmp.",    /* no pid */
        ".ckpt-00000100-ps0-of-2.safetensors.tmp.7x",
        "ckpt-00000100-ps0-of-2.safetensors",          /* a checkpoint */
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        write_file(path, "x", 1);
    }
    char names[256];
    CHECK_EQ_INT(dtf_ckpt_remove_temps(dir, 0, 2, names, sizeof names), 2);
    CHECK_STR_CONTAINS(names, ".ckpt-00000100-ps0-of-2.safetensors.tmp.77");
    CHECK_STR_CONTAINS(names, ".ckpt-00000100-ps0.safetensors.tmp.78");
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        CHECK_EQ_INT(access(path, F_OK) == 0, i >= 2);
    }
    CHECK_EQ_INT(dtf_ckpt_remove_temps(tmp("nodir"), 0, 2, names, sizeof names), 0);
}

TEST(list_and_prune)
{
    char dir[256], path[400], name[64];
    snprintf(dir, sizeof dir, "%s/list", tmpdir);
    mkdir(dir, 0755);
    uint64_t steps[] = {900, 50, 100000000, 1000};
    for (int i = 0; i < 4; i++)
        for (unsigned s = 0; s < 2; s++) {
            dtf_ckpt_name(name, sizeof name, steps[i], s, 2);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            CHECK_EQ_INT(dtf_ckpt_save(path, NULL, 0, NULL, 0), 0);
        }
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    write_file(path, "x", 1);
    dtf_ckpt_file *f;
    size_t n;
    CHECK_EQ_INT(dtf_ckpt_list(dir, 1, &f, &n), 0);
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK_EQ_INT(f[0].step, 50);
        CHECK_EQ_INT(f[1].step, 900);
        CHECK_EQ_INT(f[2].step, 1000);
        CHECK_EQ_INT(f[3].step, 100000000);   /* numeric, not lexical, order */
        CHECK_EQ_INT(f[3].shard, 1);
        CHECK_STR_CONTAINS(f[3].path, "/list/ckpt-100000000-ps1-of-2.safetensors");
    }
    dtf_ckpt_list_free(f, n);
    CHECK_EQ_INT(dtf_ckpt_list(dir, -1, &f, &n), 0);
    CHECK_EQ_INT(n, 8);
    if (n == 8) CHECK(f[0].shard == 0 && f[1].shard == 1 && f[0].step == 50);
    dtf_ckpt_list_free(f, n);
    CHECK_EQ_INT(dtf_ckpt_prune(dir, 0, 2), 2);
    CHECK_EQ_INT(dtf_ckpt_list(dir, 0, &f, &n), 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) CHECK(f[0].step == 1000 && f[1].step == 100000000);
    dtf_ckpt_list_free(f, n);
    CHECK_EQ_INT(dtf_ckpt_list(dir, 1, &f, &n), 0);
    CHECK_EQ_INT(n, 4);                         /* the other shard untouched */
    dtf_ckpt_list_free(f, n);
    CHECK_EQ_INT(dtf_ckpt_prune(dir, 0, 5), 0);
    /* a missing directory is an empty list; a file is an error */
    CHECK_EQ_INT(dtf_ckpt_list(tmp("nodir"), -1, &f, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(dtf_ckpt_list(path, -1, &f, &n), -1);
    CHECK_STR_CONTAINS(dtf_error(), "notes.txt: Not a directory");
}

TEST(cleanup)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (tmpdir[0] && system(cmd) != 0) CHECK(0);
}

RUN_TESTS("test_ckpt")
