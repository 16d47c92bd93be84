/* cpu: what this CPU and this process may use. The instruction sets (cpuid
 * and what the OS saves, xgetbv), the cores the process may run on (its
 * affinity mask and its cgroup's CPU quota), and the floating-point mode
 * (flush-to-zero and denormals-are-zero). */
#ifndef DTF_CPU_H
#define DTF_CPU_H

typedef struct dtf_cpu {
    char vendor[13];   /* "GenuineIntel", "AuthenticAMD", ... ("" off x86) */
    int family, model; /* display family and model (extended fields folded in) */
    /* Instruction sets the CPU has AND the OS saves the registers of
     * (XCR0): an AVX bit is 0 where the OS does not save ymm, and so on. */
    unsigned sse3 : 1, ssse3 : 1, sse41 : 1, sse42 : 1;
    unsigned avx : 1, fma : 1, avx2 : 1;
    unsigned avx512f : 1, avx512bw : 1, avx512dq : 1, avx512vl : 1, avx512bf16 : 1;
} dtf_cpu;

/* Fills *c from cpuid (zeroes off x86-64). */
void dtf_cpu_detect(dtf_cpu *c);

/* The cores this process may keep busy: the CPUs of its affinity mask,
 * capped by its cgroup's quota (cgroup v2 cpu.max, v1 cpu.cfs_quota_us over
 * cpu.cfs_period_us, the tightest along the path to the root), rounded up:
 * a pod limited to 200m gets 1. At least 1. */
int dtf_cpu_usable(void);
/* The same from explicit inputs, for tests: ncpus from the affinity mask,
 * the text of /proc/self/cgroup, and the directory cgroup file systems are
 * mounted under (normally "/sys/fs/cgroup"). */
int dtf_cpu_usable_from(int ncpus, const char *proc_cgroup, const char *cgroup_root);

/* Flush-to-zero and denormals-are-zero (x86 MXCSR FTZ|DAZ, arm64 FPCR.FZ)
 * for the calling thread and the threads it starts afterwards: subnormal
 * results become 0 and subnormal inputs read as 0, so no operation pays a
 * microcode assist. Returns 0, or -1 where the CPU has no such mode. */
int dtf_fp_flush_denormals(int on);
/* 1 when the calling thread flushes denormals, 0 when not. */
int dtf_fp_flushing(void);

#endif
