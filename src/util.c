/* util: error messages, clocks, hashing and the seeded generator. */
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static _Thread_local char errbuf[512];

void dtf_seterr(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
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
