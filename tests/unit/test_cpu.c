/* test_cpu: cpuid against the kernel's /proc/cpuinfo, the usable cores from
 * real cgroup-style directory trees, and the floating-point mode by what
 * arithmetic on subnormals actually gives, in this thread and in one it
 * starts. */
#include <float.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpu.h"
#include "harness.h"
#include "util.h"

/* Is FLAG a word of the first "flags" line of /proc/cpuinfo? -1 if there
 * is no such line (not x86, or no /proc). */
static int cpuinfo_has(const char *flag)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return -1;
    static char line[8192];
    int found = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0) {
            found = 0;
            for (char *w = strtok(strchr(line, ':') + 1, " \n"); w; w = strtok(NULL, " \n"))
                if (strcmp(w, flag) == 0)
                    found = 1;
            break;
        }
    fclose(f);
    return found;
}

TEST(cpuid_agrees_with_the_kernel)
{
    dtf_cpu c;
    dtf_cpu_detect(&c);
    if (cpuinfo_has("fpu") < 0 || !c.vendor[0]) {
        printf("skip cpuid_agrees_with_the_kernel: no x86 /proc/cpuinfo\n");
        return;
    }
    /* The kernel clears a flag whose register state it does not save, as
     * dtf_cpu_detect does from XCR0. */
    CHECK_EQ_INT(c.sse3, cpuinfo_has("pni"));
    CHECK_EQ_INT(c.ssse3, cpuinfo_has("ssse3"));
    CHECK_EQ_INT(c.sse42, cpuinfo_has("sse4_2"));
    CHECK_EQ_INT(c.avx, cpuinfo_has("avx"));
    CHECK_EQ_INT(c.fma, cpuinfo_has("fma"));
    CHECK_EQ_INT(c.avx2, cpuinfo_has("avx2"));
    CHECK_EQ_INT(c.avx512f, cpuinfo_has("avx512f"));
    CHECK_EQ_INT(c.avx512bw, cpuinfo_has("avx512bw"));
    CHECK_EQ_INT(c.avx512dq, cpuinfo_has("avx512dq"));
    CHECK_EQ_INT(c.avx512vl, cpuinfo_has("avx512vl"));
    CHECK_EQ_INT(c.avx512bf16, cpuinfo_has("avx512_bf16"));
    CHECK(c.family >= 6);
}

/* ---- usable cores over real directory trees ------------------------------ */

static char root[64];

/* Writes root/rel, making its directories. */
static void put(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        FAIL("cannot write %s", path);
        return;
    }
    fputs(text, f);
    fclose(f);
}

static void fresh_root(void)
{
    char cmd[128];
    if (root[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0)
            FAIL("%s", cmd);
    }
    snprintf(root, sizeof root, "/tmp/dtf-test-cpu.XXXXXX");
    if (!mkdtemp(root))
        FAIL("mkdtemp");
}

TEST(usable_cgroup_v2)
{
    fresh_root();
    put("cpu.max", "max 100000\n");
    CHECK_EQ_INT(dtf_cpu_usable_from(8, "0::/\n", root), 8);
    put("cpu.max", "20000 100000\n"); /* a pod's 200m */
    CHECK_EQ_INT(dtf_cpu_usable_from(8, "0::/\n", root), 1);
    put("cpu.max", "150000 100000\n"); /* 1.5 cores: both get work */
    CHECK_EQ_INT(dtf_cpu_usable_from(8, "0::/\n", root), 2);
    put("cpu.max", "400000 100000\n");
    CHECK_EQ_INT(dtf_cpu_usable_from(2, "0::/\n", root), 2); /* the mask is tighter */
    /* a parent's limit binds its children; the child's own may be looser */
    put("cpu.max", "max 100000\n");
    put("kubepods/pod1/cpu.max", "max 100000\n");
    put("kubepods/cpu.max", "300000 100000\n");
    CHECK_EQ_INT(dtf_cpu_usable_from(8, "0::/kubepods/pod1\n", root), 3);
    /* hybrid hierarchy: v2 under unified/ */
    fresh_root();
    put("unified/job/cpu.max", "100000 100000\n");
    CHECK_EQ_INT(dtf_cpu_usable_from(4, "1:name=systemd:/\n0::/job\n", root), 1);
}

TEST(usable_cgroup_v1)
{
    fresh_root();
    put("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "50000\n");
    put("cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    const char *pc = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n";
    CHECK_EQ_INT(dtf_cpu_usable_from(4, pc, root), 1);
    /* no quota */
    put("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
    CHECK_EQ_INT(dtf_cpu_usable_from(4, pc, root), 4);
    /* inside the container: the host's path does not exist, the mount's
     * root is the container's own cgroup */
    fresh_root();
    put("cpu/cpu.cfs_quota_us", "200000\n");
    put("cpu/cpu.cfs_period_us", "100000\n");
    CHECK_EQ_INT(dtf_cpu_usable_from(16, "3:cpu:/kubepods/burstable/pod9/c1\n", root), 2);
    /* a controller list that only contains "cpu" as a prefix does not count */
    CHECK_EQ_INT(dtf_cpu_usable_from(16, "3:cpuset:/\n", root), 16);
    /* garbage never lowers the count below 1 or crashes */
    CHECK_EQ_INT(dtf_cpu_usable_from(0, "garbage\n::\n0::\n", root), 1);
    put("cpu/cpu.cfs_quota_us", "many\n");
    CHECK_EQ_INT(dtf_cpu_usable_from(3, "3:cpu:/\n", root), 3);
}

TEST(usable_on_this_machine)
{
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    int n = dtf_cpu_usable();
    CHECK(n >= 1);
    CHECK(n <= CPU_COUNT(&set));
}

/* ---- floating-point mode -------------------------------------------------- */

/* What the mode does to arithmetic, through volatiles so nothing is folded
 * at compile time: DAZ reads a subnormal input as 0, FTZ writes a
 * subnormal result as 0. */
static volatile float tiny_in = 1e-40f; /* subnormal */
static volatile float small = 1e-30f, scale = 1e-10f;

static int daz_observed(void) { return tiny_in * 1.0f == 0.0f; }
static int ftz_observed(void) { return small * scale == 0.0f; }

static void *in_thread(void *arg)
{
    int *r = arg;
    r[0] = dtf_fp_flushing();
    r[1] = daz_observed() && ftz_observed();
    return NULL;
}

TEST(flush_denormals_changes_arithmetic)
{
    CHECK_EQ_INT(dtf_fp_flush_denormals(0), 0);
    CHECK_EQ_INT(dtf_fp_flushing(), 0);
    CHECK(!daz_observed());
    CHECK(!ftz_observed());
    if (dtf_fp_flush_denormals(1) != 0) {
        printf("skip flush_denormals_changes_arithmetic: %s\n", dtf_error());
        return;
    }
    CHECK_EQ_INT(dtf_fp_flushing(), 1);
    CHECK(daz_observed());
    CHECK(ftz_observed());
    /* a thread started afterwards has the mode too */
    int r[2] = {-1, -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, in_thread, r) == 0);
    pthread_join(t, NULL);
    CHECK_EQ_INT(r[0], 1);
    CHECK_EQ_INT(r[1], 1);
    dtf_fp_flush_denormals(0);
    CHECK(!daz_observed());
}

int main(void)
{
    int rc = harness_run("test_cpu");
    if (root[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0)
            return 1;
    }
    return rc;
}
