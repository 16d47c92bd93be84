/* util: error messages, clocks, hashing and the seeded generator. */
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char errbuf[512];

/* Formatted apart first, so that a message may wrap the previous one
 * (dtf_seterr("ps 1: %s", dtf_error())). */
void dtf_seterr(const char *fmt, ...)
{
    char tmp[sizeof errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(errbuf, tmp, sizeof errbuf);
}

const char *dtf_error(void)
{
    return errbuf[0] ? errbuf : "unknown error";
}

double dtf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double dtf_wallclock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- strings, files ---------------------------------------------------------- */

static int sb_reserve(dtf_strbuf *b, size_t more)
{
    if (b->oom)
        return -1;
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void dtf_sb_putn(dtf_strbuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n) < 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void dtf_sb_puts(dtf_strbuf *b, const char *s)
{
    dtf_sb_putn(b, s, strlen(s));
}

void dtf_sb_printf(dtf_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0 || sb_reserve(b, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

size_t dtf_sb_copyout(const dtf_strbuf *b, char *buf, size_t n)
{
    if (n) {
        size_t k = b->len < n - 1 ? b->len : n - 1;
        if (k)
            memcpy(buf, b->p, k);
        buf[k] = '\0';
    }
    return b->len;
}

int dtf_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int dtf_mkdirs(const char *dir)
{
    size_t n = strlen(dir);
    char *path = malloc(n + 1);
    if (!path || n == 0) {
        free(path);
        dtf_seterr(n ? "out of memory" : "an empty directory name");
        return -1;
    }
    memcpy(path, dir, n + 1);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != 0)
            continue;
        char c = *p;
        *p = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            dtf_seterr("cannot create %s: %s", path, strerror(errno));
            free(path);
            return -1;
        }
        *p = c;
        if (!c)
            break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        dtf_seterr("%s is not a directory", dir);
        free(path);
        return -1;
    }
    free(path);
    return 0;
}

int dtf_parse_hostport(const char *addr, char *host, size_t nh, int *port)
{
    const char *colon, *h = addr;
    size_t hl;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':') {
            dtf_seterr("'%s' is not [IPV6]:PORT", addr);
            return -1;
        }
        h = addr + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr))) {
            dtf_seterr(colon ? "'%s' is not HOST:PORT (an IPv6 address goes in brackets: "
                               "[fd00::5]:8000)" : "'%s' is not HOST:PORT", addr);
            return -1;
        }
        hl = (size_t)(colon - addr);
    }
    const char *p = colon + 1;
    size_t pl = strlen(p);
    long v = pl && pl <= 5 && strspn(p, "0123456789") == pl ? strtol(p, NULL, 10) : 0;
    if (hl == 0 || v < 1 || v > 65535) {
        dtf_seterr(hl ? "'%s' is not HOST:PORT (the port must be a number in 1..65535)"
                      : "'%s' is not HOST:PORT (it has no host)", addr);
        return -1;
    }
    if (hl >= nh) {
        dtf_seterr("'%s': the host name is longer than %zu bytes", addr, nh - 1);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)v;
    return 0;
}

/* ---- hashing, random numbers ------------------------------------------------ */

uint64_t dtf_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* splitmix64 spreads a small seed over xoshiro's 256-bit state. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void dtf_rng_seed(dtf_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t dtf_rng_next(dtf_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double dtf_rng_uniform(dtf_rng *r)
{
    return (double)(dtf_rng_next(r) >> 11) * 0x1.0p-53;
}

double dtf_rng_normal(dtf_rng *r)
{
    /* Box-Muller; 1 - u keeps the log's argument in (0, 1]. */
    double u = 1.0 - dtf_rng_uniform(r), v = dtf_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(2.0 * 3.14159265358979323846 * v);
}

uint64_t dtf_rng_below(dtf_rng *r, uint64_t n)
{
    /* Lemire's rejection keeps every value equally likely. */
    uint64_t threshold = -n % n, x;
    do x = dtf_rng_next(r); while (x < threshold);
    return x % n;
}
