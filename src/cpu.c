/* cpu: instruction sets, usable cores, floating-point mode (see cpu.h). */
#include "cpu.h"

#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <xmmintrin.h>
#define DTF_X86 1
#endif

/* ======================================================================
 * Instruction sets
 * ==================================================================== */

#ifdef DTF_X86
/* XCR0: which register states the OS saves on a context switch. Only
 * valid (and only executable) when cpuid says OSXSAVE. */
static uint64_t xcr0(void)
{
    uint32_t lo, hi;
    __asm__ __volatile__(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

void dtf_cpu_detect(dtf_cpu *c)
{
    memset(c, 0, sizeof *c);
    unsigned a, b, cx, d, max = __get_cpuid_max(0, NULL);
    if (max < 1)
        return;
    __cpuid(0, a, b, cx, d);
    memcpy(c->vendor, &b, 4);
    memcpy(c->vendor + 4, &d, 4);
    memcpy(c->vendor + 8, &cx, 4);
    __cpuid(1, a, b, cx, d);
    c->family = (int)((a >> 8) & 0xf);
    c->model = (int)((a >> 4) & 0xf);
    if (c->family == 0xf)
        c->family += (int)((a >> 20) & 0xff);
    if (c->family == 6 || c->family >= 0xf)
        c->model += (int)(((a >> 16) & 0xf) << 4);
    c->sse3 = (cx >> 0) & 1;
    c->ssse3 = (cx >> 9) & 1;
    c->sse41 = (cx >> 19) & 1;
    c->sse42 = (cx >> 20) & 1;
    int osxsave = (cx >> 27) & 1;
    uint64_t xs = osxsave ? xcr0() : 0;
    int os_ymm = (xs & 0x6) == 0x6;            /* xmm and ymm state */
    int os_zmm = os_ymm && (xs & 0xe0) == 0xe0; /* opmask, zmm0-15 high, zmm16-31 */
    c->avx = os_ymm && ((cx >> 28) & 1);
    c->fma = c->avx && ((cx >> 12) & 1);
    if (max < 7)
        return;
    __cpuid_count(7, 0, a, b, cx, d);
    unsigned sub = a; /* highest subleaf of leaf 7 */
    c->avx2 = c->avx && ((b >> 5) & 1);
    c->avx512f = os_zmm && ((b >> 16) & 1);
    c->avx512dq = c->avx512f && ((b >> 17) & 1);
    c->avx512bw = c->avx512f && ((b >> 30) & 1);
    c->avx512vl = c->avx512f && ((b >> 31) & 1);
    if (sub >= 1) {
        __cpuid_count(7, 1, a, b, cx, d);
        c->avx512bf16 = c->avx512f && ((a >> 5) & 1);
    }
}
#else
void dtf_cpu_detect(dtf_cpu *c)
{
    memset(c, 0, sizeof *c);
}
#endif

/* ======================================================================
 * Usable cores: affinity mask and cgroup quota
 * ==================================================================== */

/* Reads up to n-1 bytes of a small file; 0 when it exists. */
static int read_small(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t k = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[k] = '\0';
    return 0;
}

/* The quota in cores (quota / period) of one cgroup directory, or -1 for
 * none. v2: cpu.max "QUOTA PERIOD" or "max PERIOD"; v1: cpu.cfs_quota_us
 * (-1 for none) over cpu.cfs_period_us. */
static double dir_quota(const char *dir, int v2)
{
    char path[4400], buf[128];
    long long q = -1, p = 0;
    if (v2) {
        snprintf(path, sizeof path, "%s/cpu.max", dir);
        if (read_small(path, buf, sizeof buf) < 0 || sscanf(buf, "%lld %lld", &q, &p) != 2)
            return -1;
    } else {
        snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
        if (read_small(path, buf, sizeof buf) < 0 || sscanf(buf, "%lld", &q) != 1)
            return -1;
        snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
        if (read_small(path, buf, sizeof buf) < 0 || sscanf(buf, "%lld", &p) != 1)
            return -1;
    }
    if (q <= 0 || p <= 0)
        return -1; /* "max" does not parse as a number: no limit */
    return (double)q / (double)p;
}

/* The tightest quota from base+path up to base itself. Inside a container
 * the path names the host's cgroup while the mount shows the container's
 * as its root: the directories that do not exist are skipped. */
static double walk_quota(const char *base, const char *path, int v2, double limit)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (;;) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s%s", base, p);
        double q = dir_quota(dir, v2);
        if (q > 0 && (limit < 0 || q < limit))
            limit = q;
        char *slash = strrchr(p, '/');
        if (!slash || (slash == p && p[1] == '\0'))
            break;
        if (slash == p)
            p[1] = '\0';
        else
            *slash = '\0';
    }
    return limit;
}

/* Does the comma-separated list name controller "cpu"? */
static int has_cpu_controller(const char *list, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && list[j] != ',')
            j++;
        if (j - i == 3 && strncmp(list + i, "cpu", 3) == 0)
            return 1;
        i = j + 1;
    }
    return 0;
}

int dtf_cpu_usable_from(int ncpus, const char *proc_cgroup, const char *root)
{
    double limit = -1;
    for (const char *line = proc_cgroup; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *c1 = memchr(line, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c2) {
            char path[4096];
            size_t plen = len - (size_t)(c2 + 1 - line);
            snprintf(path, sizeof path, "%.*s", (int)plen, c2 + 1);
            char base[4200];
            if (c2 == c1 + 1 && c1 - line == 1 && line[0] == '0') { /* v2: "0::/path" */
                static const char *const v2dirs[] = {"", "/unified"};
                for (int k = 0; k < 2; k++) {
                    snprintf(base, sizeof base, "%s%s", root, v2dirs[k]);
                    limit = walk_quota(base, path, 1, limit);
                }
            } else if (has_cpu_controller(c1 + 1, (size_t)(c2 - c1 - 1))) {
                static const char *const v1dirs[] = {"/cpu", "/cpu,cpuacct", "/cpuacct,cpu"};
                for (int k = 0; k < 3; k++) {
                    snprintf(base, sizeof base, "%s%s", root, v1dirs[k]);
                    limit = walk_quota(base, path, 0, limit);
                }
            }
        }
        line = end ? end + 1 : NULL;
    }
    int n = ncpus > 0 ? ncpus : 1;
    if (limit > 0) {
        /* round up, but not for the float noise of an exact multiple */
        long q = (long)(limit + 0.999);
        if (q < 1)
            q = 1;
        if (q < n)
            n = (int)q;
    }
    return n;
}

int dtf_cpu_usable(void)
{
    int ncpus = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        ncpus = CPU_COUNT(&set);
    if (ncpus < 1)
        ncpus = 1;
    char buf[8192];
    if (read_small("/proc/self/cgroup", buf, sizeof buf) < 0)
        return ncpus;
    return dtf_cpu_usable_from(ncpus, buf, "/sys/fs/cgroup");
}

/* ======================================================================
 * Floating-point mode
 * ==================================================================== */

#ifdef DTF_X86
#define MXCSR_DAZ 0x0040u
#define MXCSR_FTZ 0x8000u

int dtf_fp_flush_denormals(int on)
{
    unsigned m = _mm_getcsr();
    m = on ? (m | MXCSR_FTZ | MXCSR_DAZ) : (m & ~(MXCSR_FTZ | MXCSR_DAZ));
    _mm_setcsr(m);
    return 0;
}

int dtf_fp_flushing(void)
{
    return (_mm_getcsr() & (MXCSR_FTZ | MXCSR_DAZ)) == (MXCSR_FTZ | MXCSR_DAZ);
}
#elif defined(__aarch64__)
#define FPCR_FZ (1ull << 24) /* flushes both inputs and results */

int dtf_fp_flush_denormals(int on)
{
    uint64_t r;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(r));
    r = on ? (r | FPCR_FZ) : (r & ~FPCR_FZ);
    __asm__ __volatile__("msr fpcr, %0" : : "r"(r));
    return 0;
}

int dtf_fp_flushing(void)
{
    uint64_t r;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(r));
    return (r & FPCR_FZ) != 0;
}
#else
int dtf_fp_flush_denormals(int on)
{
    if (!on)
        return 0;
    dtf_seterr("this CPU has no flush-to-zero mode dtf knows");
    return -1;
}

int dtf_fp_flushing(void)
{
    return 0;
}
#endif
