/* ckpt: safetensors checkpoints: a strict header parser, an atomic writer,
 * and the naming and listing of checkpoint files. */
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The file is little-endian and the data section is used in place. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ckpt.c assumes a little-endian host"
#endif

static const char META[] = "__metadata__";

/* A JSON string: quotes, backslashes and control characters escaped, other
 * bytes (UTF-8 included) as they are. */
static void sb_json(dtf_strbuf *b, const char *s)
{
    dtf_sb_putn(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            dtf_sb_putn(b, e, 2);
        } else if (c < 0x20) {
            dtf_sb_printf(b, "\\u%04x", c);
        } else {
            dtf_sb_putn(b, (const char *)&c, 1);
        }
    }
    dtf_sb_putn(b, "\"", 1);
}

/* ---- writing ------------------------------------------------------------- */

static size_t shape_count(int ndim, const int64_t *shape, int *bad)
{
    size_t count = 1;
    *bad = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) {
            *bad = 1;
            return 0;
        }
        if (shape[d] == 0)
            count = 0;
        else if (count > SIZE_MAX / 4 / (uint64_t)shape[d])
            *bad = 1;
        else
            count *= (size_t)shape[d];
    }
    return count;
}

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, d ? ", %" PRId64 : "%" PRId64, shape[d]);
    if (k < len)
        snprintf(buf + k, len - k, "]");
}

/* The header JSON, padded with spaces so the data starts 8-byte aligned. */
static char *build_header(const char *path, const dtf_ckpt_in *t, size_t nt,
                          const dtf_kv *meta, size_t nmeta, size_t *hlen)
{
    dtf_strbuf b = {0};
    dtf_sb_puts(&b, "{");
    if (nmeta) {
        sb_json(&b, META);
        dtf_sb_puts(&b, ":{");
        for (size_t i = 0; i < nmeta; i++) {
            for (size_t j = 0; j < i; j++)
                if (strcmp(meta[i].key, meta[j].key) == 0) {
                    dtf_seterr("%s: metadata key '%s' given twice", path, meta[i].key);
                    free(b.p);
                    return NULL;
                }
            if (i)
                dtf_sb_puts(&b, ",");
            sb_json(&b, meta[i].key);
            dtf_sb_puts(&b, ":");
            sb_json(&b, meta[i].value);
        }
        dtf_sb_puts(&b, "}");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < nt; i++) {
        const dtf_ckpt_in *x = &t[i];
        int bad;
        size_t count = 0;
        const char *why = NULL;
        char shp[160];
        if (!x->name || !x->name[0])
            why = "has no name";
        else if (strcmp(x->name, META) == 0)
            why = "uses the reserved name __metadata__";
        else if (x->ndim < 0 || x->ndim > DTF_CKPT_MAXDIM)
            why = "has too many dimensions";
        else if ((count = shape_count(x->ndim, x->shape, &bad)), bad)
            why = "has a bad shape";
        else if (count != x->count)
            why = "has a count that does not match its shape";
        else if (count && !x->data)
            why = "has no data";
        for (size_t j = 0; !why && j < i; j++)
            if (strcmp(x->name, t[j].name) == 0)
                why = "is given twice";
        if (why) {
            if (x->ndim >= 0 && x->ndim <= DTF_CKPT_MAXDIM)
                shape_str(shp, sizeof shp, x->ndim, x->shape);
            else
                snprintf(shp, sizeof shp, "(%d dims)", x->ndim);
            dtf_seterr("%s: tensor %zu '%s' (shape %s, %zu floats) %s", path, i + 1,
                       x->name ? x->name : "", shp, x->count, why);
            free(b.p);
            return NULL;
        }
        if (i || nmeta)
            dtf_sb_puts(&b, ",");
        sb_json(&b, x->name);
        dtf_sb_puts(&b, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < x->ndim; d++)
            dtf_sb_printf(&b, d ? ",%" PRId64 : "%" PRId64, x->shape[d]);
        dtf_sb_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off,
                  off + (uint64_t)count * 4);
        off += (uint64_t)count * 4;
    }
    dtf_sb_puts(&b, "}");
    while ((8 + b.len) % 8)
        dtf_sb_puts(&b, " ");
    if (b.oom) {
        free(b.p);
        dtf_seterr("%s: out of memory building the header", path);
        return NULL;
    }
    if (b.len > DTF_CKPT_MAX_HEADER) {
        free(b.p);
        dtf_seterr("%s: header of %zu bytes is over the cap of %" PRIu64, path, b.len,
                   DTF_CKPT_MAX_HEADER);
        return NULL;
    }
    *hlen = b.len;
    return b.p;
}

int dtf_ckpt_save(const char *path, const dtf_ckpt_in *t, size_t nt,
                  const dtf_kv *meta, size_t nmeta)
{
    size_t hlen;
    char *header = build_header(path, t, nt, meta, nmeta, &hlen);
    if (!header)
        return -1;

    /* DIR/.NAME.tmp.PID beside the final file, so rename stays in one
     * file system. */
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dirlen = slash ? (size_t)(slash - path) : 0;
    char *dir = malloc(dirlen + 2), *tmp = malloc(strlen(path) + 40);
    if (!dir || !tmp) {
        free(header); free(dir); free(tmp);
        dtf_seterr("%s: out of memory", path);
        return -1;
    }
    if (slash) {
        memcpy(dir, path, dirlen ? dirlen : 1);    /* "/x": the root */
        dir[dirlen ? dirlen : 1] = '\0';
    } else {
        strcpy(dir, ".");
    }
    if (!*base) {
        dtf_seterr("%s: not a file name", path);
        free(header); free(dir); free(tmp);
        return -1;
    }
    sprintf(tmp, "%.*s%s.%s.tmp.%ld", (int)dirlen, path, slash ? "/" : "", base, (long)getpid());

    const char *what = "create";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto fail;
    what = "write";
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    if (dtf_write_all(fd, len8, 8) < 0 || dtf_write_all(fd, header, hlen) < 0)
        goto fail;
    for (size_t i = 0; i < nt; i++)
        if (t[i].count && dtf_write_all(fd, t[i].data, t[i].count * sizeof(float)) < 0)
            goto fail;
    what = "fsync";
    if (fsync(fd) < 0)
        goto fail;
    what = "close";
    int rc = close(fd);
    fd = -1;
    if (rc < 0)
        goto fail;
    what = "rename";
    if (rename(tmp, path) < 0)
        goto fail;
    /* The rename is durable only once the directory is on disk too. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        dtf_seterr("%s: fsync of directory %s: %s", path, dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        free(header); free(dir); free(tmp);
        return -1;
    }
    close(dfd);
    free(header); free(dir); free(tmp);
    return 0;

fail:
    dtf_seterr("%s: %s %s: %s", path, what, tmp, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(header); free(dir); free(tmp);
    return -1;
}

/* ---- a strict parser for the header's JSON -------------------------------- */

typedef struct jp {
    const char *s;
    size_t n, i;
    const char *file;
} jp;

static int jfail(jp *p, const char *fmt, ...) DTF_PRINTF(2, 3);
static int jfail(jp *p, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* byte offsets count from the start of the file (8 + header index) */
    dtf_seterr("%s: bad checkpoint header at byte %zu: %s", p->file, p->i + 8, msg);
    return -1;
}

static void jws(jp *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
                           p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int jexpect(jp *p, char c)
{
    jws(p);
    if (p->i >= p->n)
        return jfail(p, "expected '%c', found the end of the header", c);
    if (p->s[p->i] != c) {
        unsigned char f = (unsigned char)p->s[p->i];
        if (f >= 0x20 && f < 0x7f)
            return jfail(p, "expected '%c', found '%c'", c, f);
        return jfail(p, "expected '%c', found byte 0x%02x", c, f);
    }
    p->i++;
    return 0;
}

/* Peeks past whitespace: the next character, or -1 at the end. */
static int jpeek(jp *p)
{
    jws(p);
    return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* A string into a new NUL-terminated buffer. Escapes are decoded (\u to
 * UTF-8, surrogate pairs joined); raw control characters and \u0000 are
 * errors. */
static int jstring(jp *p, char **out)
{
    *out = NULL;
    if (jexpect(p, '"') < 0)
        return -1;
    /* The decoded string is never longer than its source. */
    size_t start = p->i, end = start;
    while (end < p->n && p->s[end] != '"')
        end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n)
        return jfail(p, "unterminated string");
    char *o = malloc(end - start + 1);
    if (!o)
        return jfail(p, "out of memory");
    size_t k = 0;
    while (p->i < end) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c < 0x20) {
            free(o);
            return jfail(p, "control character 0x%02x in a string", c);
        }
        if (c != '\\') {
            o[k++] = (char)c;
            p->i++;
            continue;
        }
        char e = p->s[p->i + 1];    /* i + 1 < end: the scan stepped over it */
        unsigned cp;
        switch (e) {
        case '"': case '\\': case '/': o[k++] = e; p->i += 2; continue;
        case 'b': o[k++] = '\b'; p->i += 2; continue;
        case 'f': o[k++] = '\f'; p->i += 2; continue;
        case 'n': o[k++] = '\n'; p->i += 2; continue;
        case 'r': o[k++] = '\r'; p->i += 2; continue;
        case 't': o[k++] = '\t'; p->i += 2; continue;
        case 'u':
            if (end - p->i < 6 || hex4(p->s + p->i + 2, &cp) < 0) {
                free(o);
                return jfail(p, "bad \\u escape");
            }
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                free(o);
                return jfail(p, "lone low surrogate \\u%04x", cp);
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (end - p->i < 12 || p->s[p->i + 6] != '\\' || p->s[p->i + 7] != 'u' ||
                    hex4(p->s + p->i + 8, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
                    free(o);
                    return jfail(p, "high surrogate \\u%04x without its low half", cp);
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p->i += 6;
            }
            if (cp == 0) {
                free(o);
                return jfail(p, "\\u0000 in a string");
            }
            p->i += 6;
            if (cp < 0x80) {
                o[k++] = (char)cp;
            } else if (cp < 0x800) {
                o[k++] = (char)(0xc0 | cp >> 6);
                o[k++] = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                o[k++] = (char)(0xe0 | cp >> 12);
                o[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                o[k++] = (char)(0x80 | (cp & 0x3f));
            } else {
                o[k++] = (char)(0xf0 | cp >> 18);
                o[k++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                o[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                o[k++] = (char)(0x80 | (cp & 0x3f));
            }
            continue;
        default:
            free(o);
            if ((unsigned char)e >= 0x20 && (unsigned char)e < 0x7f)
                return jfail(p, "bad escape \\%c", e);
            return jfail(p, "bad escape before byte 0x%02x", (unsigned char)e);
        }
    }
    o[k] = '\0';
    p->i = end + 1;
    *out = o;
    return 0;
}

/* A non-negative integer without sign, fraction or exponent. */
static int juint(jp *p, uint64_t *out)
{
    int c = jpeek(p);
    if (c == '-')
        return jfail(p, "negative number");
    if (c < '0' || c > '9')
        return jfail(p, "expected a number");
    if (c == '0' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')
        return jfail(p, "number with a leading zero");
    uint64_t v = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = (unsigned)(p->s[p->i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return jfail(p, "number too large");
        v = v * 10 + d;
        p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
        return jfail(p, "expected an integer");
    *out = v;
    return 0;
}

/* ---- decoding and validating a header ------------------------------------ */

void dtf_ckpt_free(dtf_ckpt *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nt; i++)
        free(c->t[i].name);
    for (size_t i = 0; i < c->nmeta; i++) {
        free(c->meta[i].key);
        free(c->meta[i].value);
    }
    free(c->t);
    free(c->meta);
    free(c->data);
    free(c);
}

static int grow(void **arr, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    void *a = realloc(*arr, nc * elem);
    if (!a)
        return -1;
    *arr = a;
    *cap = nc;
    return 0;
}

static int parse_meta(jp *p, dtf_ckpt *c, size_t *cap)
{
    if (jexpect(p, '{') < 0)
        return -1;
    if (jpeek(p) == '}') {
        p->i++;
        return 0;
    }
    for (;;) {
        if (grow((void **)&c->meta, c->nmeta, cap, sizeof *c->meta) < 0)
            return jfail(p, "out of memory");
        dtf_ckpt_meta *m = &c->meta[c->nmeta];
        m->key = m->value = NULL;
        if (jstring(p, &m->key) < 0)
            return -1;
        c->nmeta++;       /* owns key from here on */
        if (jexpect(p, ':') < 0)
            return -1;
        if (jpeek(p) != '"')
            return jfail(p, "metadata value for '%s' is not a string", m->key);
        if (jstring(p, &m->value) < 0)
            return -1;
        int c2 = jpeek(p);
        p->i++;
        if (c2 == '}')
            return 0;
        if (c2 != ',') {
            p->i--;
            return jfail(p, "expected ',' or '}' in the metadata");
        }
    }
}

static int parse_tensor(jp *p, dtf_ckpt_tensor *t, uint64_t *begin, uint64_t *end)
{
    int have_dtype = 0, have_shape = 0, have_off = 0;
    if (jexpect(p, '{') < 0)
        return -1;
    if (jpeek(p) == '}')
        return jfail(p, "tensor '%s' has no dtype, shape or data_offsets", t->name);
    for (;;) {
        char *key;
        if (jstring(p, &key) < 0)
            return -1;
        if (jexpect(p, ':') < 0) {
            free(key);
            return -1;
        }
        if (strcmp(key, "dtype") == 0 && !have_dtype) {
            free(key);
            char *dt;
            if (jstring(p, &dt) < 0)
                return -1;
            if (strcmp(dt, "F32") != 0) {
                dtf_seterr("%s: tensor '%s' has dtype %s; dtf reads F32 only",
                           p->file, t->name, dt);
                free(dt);
                return -1;
            }
            free(dt);
            have_dtype = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            free(key);
            if (jexpect(p, '[') < 0)
                return -1;
            if (jpeek(p) == ']') {
                p->i++;
            } else {
                for (;;) {
                    uint64_t d;
                    if (t->ndim == DTF_CKPT_MAXDIM)
                        return jfail(p, "tensor '%s' has more than %d dimensions",
                                     t->name, DTF_CKPT_MAXDIM);
                    if (juint(p, &d) < 0)
                        return -1;
                    if (d > (uint64_t)INT64_MAX)
                        return jfail(p, "dimension too large");
                    t->shape[t->ndim++] = (int64_t)d;
                    int c = jpeek(p);
                    p->i++;
                    if (c == ']')
                        break;
                    if (c != ',') {
                        p->i--;
                        return jfail(p, "expected ',' or ']' in a shape");
                    }
                }
            }
            have_shape = 1;
        } else if (strcmp(key, "data_offsets") == 0 && !have_off) {
            free(key);
            if (jexpect(p, '[') < 0 || juint(p, begin) < 0 || jexpect(p, ',') < 0 ||
                juint(p, end) < 0)
                return -1;
            if (jpeek(p) != ']')
                return jfail(p, "data_offsets must hold exactly two numbers");
            p->i++;
            have_off = 1;
        } else {
            int dup = !strcmp(key, "dtype") || !strcmp(key, "shape") ||
                      !strcmp(key, "data_offsets");
            jfail(p, "%s field '%s' in tensor '%s'", dup ? "repeated" : "unknown", key, t->name);
            free(key);
            return -1;
        }
        int c = jpeek(p);
        p->i++;
        if (c == '}')
            break;
        if (c != ',') {
            p->i--;
            return jfail(p, "expected ',' or '}' in tensor '%s'", t->name);
        }
    }
    if (!have_dtype || !have_shape || !have_off)
        return jfail(p, "tensor '%s' lacks %s", t->name,
                     !have_dtype ? "a dtype" : !have_shape ? "a shape" : "data_offsets");
    return 0;
}

typedef struct span {
    uint64_t begin, end;
    size_t idx;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Finds a duplicate among n strings; NULL when all differ (or on OOM, which
 * the caller reports through *oom). */
static const char *find_dup(char **names, size_t n, int *oom)
{
    *oom = 0;
    if (n < 2)
        return NULL;
    char **s = malloc(n * sizeof *s);
    if (!s) {
        *oom = 1;
        return NULL;
    }
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, str_cmp);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0)
            dup = s[i];
    free(s);
    return dup;
}

/* Checks a parsed tensor entry against its shape and the data section. */
static int check_tensor(dtf_ckpt_tensor *t, uint64_t b, uint64_t e, uint64_t data_len,
                        const char *file)
{
    int bad;
    t->count = shape_count(t->ndim, t->shape, &bad);
    char shp[160];
    shape_str(shp, sizeof shp, t->ndim, t->shape);
    if (bad) {
        dtf_seterr("%s: tensor '%s' has an impossible shape %s", file, t->name, shp);
        return -1;
    }
    if (b > e) {
        dtf_seterr("%s: tensor '%s' has reversed data_offsets [%" PRIu64 ", %" PRIu64 "]", file,
                   t->name, b, e);
        return -1;
    }
    if (e - b != (uint64_t)t->count * 4) {
        dtf_seterr("%s: tensor '%s' of shape %s needs %" PRIu64 " bytes but its data_offsets [%"
                   PRIu64 ", %" PRIu64 "] hold %" PRIu64, file, t->name, shp,
                   (uint64_t)t->count * 4, b, e, e - b);
        return -1;
    }
    if (e > data_len) {
        dtf_seterr("%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 "] run past the end of "
                   "the data (%" PRIu64 " bytes): truncated file?", file, t->name, b, e, data_len);
        return -1;
    }
    if (b % 4) {
        dtf_seterr("%s: tensor '%s' starts at byte %" PRIu64 " of the data, not a multiple of 4",
                   file, t->name, b);
        return -1;
    }
    t->offset = (size_t)b;
    return 0;
}

/* One "key": value entry of the header object: the metadata or a tensor. */
static int parse_entry(jp *p, dtf_ckpt *c, size_t *tcap, size_t *mcap, int *seen_meta,
                       uint64_t data_len)
{
    char *key;
    if (jstring(p, &key) < 0)
        return -1;
    if (jexpect(p, ':') < 0) {
        free(key);
        return -1;
    }
    if (strcmp(key, META) == 0) {
        free(key);
        if ((*seen_meta)++)
            return jfail(p, "__metadata__ appears twice");
        return parse_meta(p, c, mcap);
    }
    if (grow((void **)&c->t, c->nt, tcap, sizeof *c->t) < 0) {
        free(key);
        return jfail(p, "out of memory");
    }
    dtf_ckpt_tensor *t = &c->t[c->nt++];
    memset(t, 0, sizeof *t);
    t->name = key;
    uint64_t b, e;
    if (parse_tensor(p, t, &b, &e) < 0)
        return -1;
    return check_tensor(t, b, e, data_len, p->file);
}

/* The header object: '{', entries separated by ',', '}', then nothing. */
static int parse_object(jp *p, dtf_ckpt *c, uint64_t data_len)
{
    size_t tcap = 0, mcap = 0;
    int seen_meta = 0;
    if (p->n == 0 || p->s[0] != '{')
        return jfail(p, "the header does not start with '{'");
    p->i = 1;
    if (jpeek(p) == '}') {
        p->i++;
    } else {
        for (;;) {
            if (parse_entry(p, c, &tcap, &mcap, &seen_meta, data_len) < 0)
                return -1;
            int ch = jpeek(p);
            p->i++;
            if (ch == '}')
                break;
            if (ch != ',') {
                p->i--;
                return jfail(p, ch < 0 ? "the header ends inside the object"
                                       : "expected ',' or '}' between entries");
            }
        }
    }
    jws(p);
    if (p->i != p->n)
        return jfail(p, "unexpected bytes after the header's closing '}'");
    return 0;
}

/* Tensor names, then metadata keys, each unique. */
static int check_unique(const dtf_ckpt *c, const char *file)
{
    char **names = malloc((c->nt + c->nmeta + 1) * sizeof *names);
    int oom = names == NULL, rc = -1;
    const char *dup = NULL;
    if (names) {
        for (size_t i = 0; i < c->nt; i++)
            names[i] = c->t[i].name;
        if ((dup = find_dup(names, c->nt, &oom)) || oom) {
            if (!oom)
                dtf_seterr("%s: tensor '%s' appears twice", file, dup);
        } else {
            for (size_t i = 0; i < c->nmeta; i++)
                names[i] = c->meta[i].key;
            if ((dup = find_dup(names, c->nmeta, &oom)) && !oom)
                dtf_seterr("%s: metadata key '%s' appears twice", file, dup);
            rc = dup || oom ? -1 : 0;
        }
    }
    if (oom)
        dtf_seterr("%s: out of memory", file);
    free(names);
    return rc;
}

/* The tensors tile the data section: no overlap, no hole, no tail. */
static int check_tiling(const dtf_ckpt *c, uint64_t data_len, const char *file)
{
    span *sp = malloc((c->nt + 1) * sizeof *sp);
    if (!sp) {
        dtf_seterr("%s: out of memory", file);
        return -1;
    }
    for (size_t i = 0; i < c->nt; i++) {
        sp[i].begin = c->t[i].offset;
        sp[i].end = c->t[i].offset + (uint64_t)c->t[i].count * 4;
        sp[i].idx = i;
    }
    qsort(sp, c->nt, sizeof *sp, span_cmp);
    uint64_t at = 0;
    int rc = 0;
    for (size_t i = 0; i < c->nt && rc == 0; i++) {
        if (sp[i].begin < at) {
            dtf_seterr("%s: tensors '%s' and '%s' overlap in the data", file,
                       c->t[sp[i - 1].idx].name, c->t[sp[i].idx].name);
            rc = -1;
        } else if (sp[i].begin > at) {
            dtf_seterr("%s: %" PRIu64 " unused bytes in the data before tensor '%s'", file,
                       sp[i].begin - at, c->t[sp[i].idx].name);
            rc = -1;
        }
        at = sp[i].end;
    }
    if (rc == 0 && at != data_len) {
        dtf_seterr("%s: %" PRIu64 " bytes of data after the last tensor", file, data_len - at);
        rc = -1;
    }
    free(sp);
    return rc;
}

/* Parses and validates the header json[0..n) of a file whose data section
 * holds data_len bytes. Returns a checkpoint without data. */
static dtf_ckpt *decode_header(const char *json, size_t n, uint64_t data_len,
                               const char *file)
{
    dtf_ckpt *c = calloc(1, sizeof *c);
    if (!c) {
        dtf_seterr("%s: out of memory", file);
        return NULL;
    }
    jp p = {json, n, 0, file};
    if (parse_object(&p, c, data_len) < 0 || check_unique(c, file) < 0 ||
        check_tiling(c, data_len, file) < 0) {
        dtf_ckpt_free(c);
        return NULL;
    }
    return c;
}

/* Checks the 8-byte length against the cap and the file size. */
static int check_length(const uint8_t len8[8], uint64_t size, const char *file, uint64_t *hlen)
{
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)len8[i] << (8 * i);
    if (n > DTF_CKPT_MAX_HEADER) {
        dtf_seterr("%s: header length %" PRIu64 " is over the cap of %" PRIu64
                   " bytes: not a safetensors file?", file, n, DTF_CKPT_MAX_HEADER);
        return -1;
    }
    if (n > size - 8) {
        dtf_seterr("%s: truncated: header length %" PRIu64 " but the file holds only %"
                   PRIu64 " bytes after the length", file, n, size - 8);
        return -1;
    }
    if (n < 2) {
        dtf_seterr("%s: header length %" PRIu64 " is too short for a JSON object", file, n);
        return -1;
    }
    *hlen = n;
    return 0;
}

static void point_tensors(dtf_ckpt *c)
{
    for (size_t i = 0; i < c->nt; i++)
        c->t[i].data = c->data + c->t[i].offset / 4;
}

dtf_ckpt *dtf_ckpt_parse(const void *buf, size_t len, const char *name)
{
    const uint8_t *b = buf;
    uint64_t hlen;
    if (len < 8) {
        dtf_seterr("%s: truncated: %zu bytes, too short for a checkpoint", name, len);
        return NULL;
    }
    if (check_length(b, len, name, &hlen) < 0)
        return NULL;
    size_t data_len = len - 8 - (size_t)hlen;
    dtf_ckpt *c = decode_header((const char *)b + 8, (size_t)hlen, data_len, name);
    if (!c)
        return NULL;
    c->data = malloc(data_len ? data_len : 1);
    if (!c->data) {
        dtf_seterr("%s: out of memory for %zu bytes of data", name, data_len);
        dtf_ckpt_free(c);
        return NULL;
    }
    memcpy(c->data, b + 8 + hlen, data_len);
    c->data_bytes = data_len;
    point_tensors(c);
    return c;
}

/* Reads exactly n bytes or fails with a message naming the file. */
static int read_exact(int fd, void *buf, size_t n, const char *path)
{
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        size_t want = n - got;
        ssize_t r = read(fd, p + got, want > ((size_t)1 << 30) ? (size_t)1 << 30 : want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            dtf_seterr("%s: read error: %s", path, strerror(errno));
            return -1;
        }
        if (r == 0) {
            dtf_seterr("%s: truncated: the file shrank while it was read", path);
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* Reads path's header (and its data when with_data). */
static dtf_ckpt *load_file(const char *path, int with_data)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dtf_seterr("%s: %s", path, strerror(errno));
        return NULL;
    }
    char *json = NULL;
    dtf_ckpt *c = NULL;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        dtf_seterr("%s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        dtf_seterr("%s: not a regular file", path);
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size, hlen;
    uint8_t len8[8];
    if (size < 8) {
        dtf_seterr("%s: truncated: %" PRIu64 " bytes, too short for a checkpoint", path, size);
        goto fail;
    }
    if (read_exact(fd, len8, 8, path) < 0 || check_length(len8, size, path, &hlen) < 0)
        goto fail;
    json = malloc((size_t)hlen);
    if (!json) {
        dtf_seterr("%s: out of memory", path);
        goto fail;
    }
    if (read_exact(fd, json, (size_t)hlen, path) < 0)
        goto fail;
    uint64_t data_len = size - 8 - hlen;
    c = decode_header(json, (size_t)hlen, data_len, path);
    if (!c)
        goto fail;
    free(json);
    json = NULL;
    if (with_data) {
        if (data_len > SIZE_MAX || !(c->data = malloc(data_len ? (size_t)data_len : 1))) {
            dtf_seterr("%s: out of memory for %" PRIu64 " bytes of data", path, data_len);
            goto fail;
        }
        if (read_exact(fd, c->data, (size_t)data_len, path) < 0)
            goto fail;
        c->data_bytes = (size_t)data_len;
        point_tensors(c);
    }
    close(fd);
    return c;
fail:
    free(json);
    dtf_ckpt_free(c);
    close(fd);
    return NULL;
}

dtf_ckpt *dtf_ckpt_load(const char *path)
{
    return load_file(path, 1);
}

dtf_ckpt *dtf_ckpt_load_header(const char *path)
{
    return load_file(path, 0);
}

const dtf_ckpt_tensor *dtf_ckpt_find(const dtf_ckpt *c, const char *name)
{
    for (size_t i = 0; i < c->nt; i++)
        if (strcmp(c->t[i].name, name) == 0)
            return &c->t[i];
    return NULL;
}

const char *dtf_ckpt_get_meta(const dtf_ckpt *c, const char *key)
{
    for (size_t i = 0; i < c->nmeta; i++)
        if (strcmp(c->meta[i].key, key) == 0)
            return c->meta[i].value;
    return NULL;
}

/* ---- naming and listing -------------------------------------------------- */

int dtf_ckpt_name(char *buf, size_t len, uint64_t step, unsigned shard, unsigned nps)
{
    return snprintf(buf, len, "ckpt-%08" PRIu64 "-ps%u-of-%u.safetensors", step, shard, nps);
}

static int parse_digits(const char **s, uint64_t *v)
{
    const char *p = *s;
    uint64_t x = 0;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *s = p;
    *v = x;
    return 0;
}

/* "ckpt-STEP-psI-of-N" or the older "ckpt-STEP-psI" (nps 0); *end gets
 * what follows it. */
static int parse_stem(const char *name, uint64_t *step, unsigned *shard, unsigned *nps,
                      const char **end)
{
    uint64_t st, sh, n = 0;
    const char *p = name;
    if (strncmp(p, "ckpt-", 5) != 0)
        return -1;
    p += 5;
    if (parse_digits(&p, &st) < 0 || strncmp(p, "-ps", 3) != 0)
        return -1;
    p += 3;
    if (parse_digits(&p, &sh) < 0 || sh > 0xffffffu)
        return -1;
    if (strncmp(p, "-of-", 4) == 0) {
        p += 4;
        if (parse_digits(&p, &n) < 0 || n == 0 || n > 0xffffffu || sh >= n)
            return -1;
    }
    *step = st;
    *shard = (unsigned)sh;
    *nps = (unsigned)n;
    *end = p;
    return 0;
}

int dtf_ckpt_parse_name(const char *name, uint64_t *step, unsigned *shard, unsigned *nps)
{
    const char *end;
    if (parse_stem(name, step, shard, nps, &end) < 0 || strcmp(end, ".safetensors") != 0)
        return -1;
    return 0;
}

static int file_cmp(const void *a, const void *b)
{
    const dtf_ckpt_file *x = a, *y = b;
    if (x->step != y->step)
        return x->step < y->step ? -1 : 1;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    if (x->nps != y->nps)
        return x->nps < y->nps ? -1 : 1;
    return strcmp(x->path, y->path);
}

void dtf_ckpt_list_free(dtf_ckpt_file *files, size_t n)
{
    if (!files)
        return;
    for (size_t i = 0; i < n; i++)
        free(files[i].path);
    free(files);
}

int dtf_ckpt_list(const char *dir, int shard, dtf_ckpt_file **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        dtf_seterr("%s: %s", dir, strerror(errno));
        return -1;
    }
    dtf_ckpt_file *f = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t step;
        unsigned sh, nps;
        if (dtf_ckpt_parse_name(e->d_name, &step, &sh, &nps) < 0)
            continue;
        if (shard >= 0 && sh != (unsigned)shard)
            continue;
        char *path = malloc(strlen(dir) + strlen(e->d_name) + 2);
        if (!path || grow((void **)&f, cnt, &cap, sizeof *f) < 0) {
            free(path);
            dtf_ckpt_list_free(f, cnt);
            closedir(d);
            dtf_seterr("%s: out of memory", dir);
            return -1;
        }
        sprintf(path, "%s/%s", dir, e->d_name);
        f[cnt].path = path;
        f[cnt].step = step;
        f[cnt].shard = sh;
        f[cnt].nps = nps;
        cnt++;
    }
    closedir(d);
    if (cnt)
        qsort(f, cnt, sizeof *f, file_cmp);
    *out = f;
    *n = cnt;
    return 0;
}

int dtf_ckpt_prune(const char *dir, unsigned shard, size_t keep)
{
    dtf_ckpt_file *f;
    size_t n;
    if (dtf_ckpt_list(dir, (int)shard, &f, &n) < 0)
        return -1;
    int deleted = 0, rc = 0;
    for (size_t i = 0; i + keep < n; i++) {
        if (unlink(f[i].path) < 0 && errno != ENOENT) {
            dtf_seterr("%s: %s", f[i].path, strerror(errno));
            rc = -1;
            break;
        }
        deleted++;
    }
    dtf_ckpt_list_free(f, n);
    return rc < 0 ? -1 : deleted;
}

/* The temporary file of an unfinished save is DIR/.NAME.tmp.PID (see
 * dtf_ckpt_save); NAME a checkpoint name. */
int dtf_ckpt_remove_temps(const char *dir, unsigned shard, unsigned nps, char *names, size_t n)
{
    DIR *d = opendir(dir);
    if (n)
        names[0] = 0;
    if (!d)
        return 0;
    int removed = 0;
    size_t len = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t step;
        unsigned sh, np;
        const char *end;
        if (e->d_name[0] != '.' || parse_stem(e->d_name + 1, &step, &sh, &np, &end) < 0)
            continue;
        if (strncmp(end, ".safetensors.tmp.", 17) != 0)
            continue;
        const char *pid = end + 17;
        if (!*pid || strspn(pid, "0123456789") != strlen(pid))
            continue;
        if (sh != shard || (np && np != nps))
            continue;
        char *path = malloc(strlen(dir) + strlen(e->d_name) + 2);
        if (!path)
            break;
        sprintf(path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) {
            removed++;
            if (len < n)
                len += (size_t)snprintf(names + len, n - len, "%s%s", len ? ", " : "", e->d_name);
        }
        free(path);
    }
    closedir(d);
    return removed;
}
