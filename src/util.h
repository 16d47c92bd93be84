/* util: the small things every part of the C core shares.
 *
 * Errors: a core function that fails returns -1 (or NULL) and sets a
 * message with dtf_seterr(); the caller reads it with dtf_error(). The
 * buffer is thread-local, so a message stays valid until the next failure
 * on the same thread; a new message may include the old one. The core never prints and never exits (STYLE.md). */
#ifndef DTF_UTIL_H
#define DTF_UTIL_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define DTF_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DTF_PRINTF(f, a)
#endif

void dtf_seterr(const char *fmt, ...) DTF_PRINTF(1, 2);

/* Log lines: the core hands each one, with its level, to a callback its
 * caller gives it (the host's log.c writes the seed's format). */
enum { DTF_LOG_DEBUG = 10, DTF_LOG_INFO = 20, DTF_LOG_WARNING = 30, DTF_LOG_ERROR = 40 };
typedef void (*dtf_log_fn)(void *ud, int level, const char *msg);
const char *dtf_error(void);

/* Monotonic seconds, for durations; wall-clock seconds since the epoch. */
double dtf_now(void);
double dtf_wallclock(void);

/* A growing NUL-terminated string. Appends never fail: on out of memory
 * the buffer stops growing and oom is set (check it once at the end).
 * Zero-initialise; free p when done. */
typedef struct dtf_strbuf {
    char *p;
    size_t len, cap;
    int oom;
} dtf_strbuf;
void dtf_sb_putn(dtf_strbuf *b, const char *s, size_t n);
void dtf_sb_puts(dtf_strbuf *b, const char *s);
void dtf_sb_printf(dtf_strbuf *b, const char *fmt, ...) DTF_PRINTF(2, 3);
/* Copies b into buf as snprintf would (truncated, NUL-terminated when n >
 * 0) and returns b's length: the stats functions' contract. */
size_t dtf_sb_copyout(const dtf_strbuf *b, char *buf, size_t n);

/* Writes all n bytes (retrying short writes and EINTR); 0, or -1 with errno. */
int dtf_write_all(int fd, const void *buf, size_t n);

/* mkdir -p (mode 0755); 0, or -1 with dtf_error() naming the directory. */
int dtf_mkdirs(const char *dir);

/* Splits "host:port" or "[v6addr]:port" (port 1..65535) into host (NUL-
 * terminated, at most nh - 1 bytes, brackets removed) and *port; 0, or -1
 * with dtf_error() saying what is wrong with addr. The one parser of
 * cluster addresses (the client, the bindings, dtf.cluster). */
int dtf_parse_hostport(const char *addr, char *host, size_t nh, int *port);

/* 64-bit FNV-1a over bytes; chainable by passing the previous hash as seed
 * (start with DTF_FNV_SEED). Used for the parameter layout's checksum. */
#define DTF_FNV_SEED 0xcbf29ce484222325ULL
uint64_t dtf_fnv1a(uint64_t seed, const void *data, size_t n);

/* A small seeded generator (xoshiro256**) for reproducible initialisation
 * and shuffling: the same seed gives the same stream on every machine. */
typedef struct dtf_rng { uint64_t s[4]; } dtf_rng;
void dtf_rng_seed(dtf_rng *r, uint64_t seed);
uint64_t dtf_rng_next(dtf_rng *r);
double dtf_rng_uniform(dtf_rng *r);           /* [0, 1) */
double dtf_rng_normal(dtf_rng *r);            /* mean 0, std 1 */
uint64_t dtf_rng_below(dtf_rng *r, uint64_t n); /* [0, n), unbiased */

#endif
