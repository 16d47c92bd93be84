/* test_blas: the choice of the OpenBLAS core (blas.c): levels of core names,
 * the best core for a CPU's features, every branch of the decision, and
 * the check of the core in use against the naive kernels. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cpu.h"
#include "harness.h"
#include "util.h"

TEST(core_ranks_follow_instruction_sets)
{
    CHECK(dtf_blas_core_rank("Prescott") < dtf_blas_core_rank("Nehalem"));
    CHECK(dtf_blas_core_rank("Nehalem") < dtf_blas_core_rank("Sandybridge"));
    CHECK(dtf_blas_core_rank("Sandybridge") < dtf_blas_core_rank("Haswell"));
    CHECK(dtf_blas_core_rank("Haswell") < dtf_blas_core_rank("SkylakeX"));
    CHECK_EQ_INT(dtf_blas_core_rank("Zen"), dtf_blas_core_rank("Haswell"));
    CHECK_EQ_INT(dtf_blas_core_rank("Cooperlake"), dtf_blas_core_rank("SkylakeX"));
    CHECK_EQ_INT(dtf_blas_core_rank("skylakex"), dtf_blas_core_rank("SkylakeX"));
    CHECK_EQ_INT(dtf_blas_core_rank("Bogus"), 0);
    CHECK_EQ_INT(dtf_blas_core_rank(NULL), 0);
}

TEST(best_core_from_features)
{
    dtf_cpu c;
    memset(&c, 0, sizeof c);
    CHECK(dtf_blas_best_core(&c) == NULL);
    c.sse3 = c.ssse3 = c.sse41 = c.sse42 = 1;
    CHECK_STR_CONTAINS(dtf_blas_best_core(&c), "Nehalem");
    c.avx = 1;
    CHECK_STR_CONTAINS(dtf_blas_best_core(&c), "Sandybridge");
    c.avx2 = 1; /* AVX2 without FMA is not enough for Haswell's kernels */
    CHECK_STR_CONTAINS(dtf_blas_best_core(&c), "Sandybridge");
    c.fma = 1;
    CHECK_STR_CONTAINS(dtf_blas_best_core(&c), "Haswell");
    c.avx512f = c.avx512dq = c.avx512vl = 1; /* no BW: still Haswell */
    CHECK_STR_CONTAINS(dtf_blas_best_core(&c), "Haswell");
    c.avx512bw = 1;
    CHECK_STR_CONTAINS(dtf_blas_best_core(&c), "SkylakeX");
}

static dtf_blas_plan decide(const char *env, const char *marker, const char *cur,
                            const char *best, int ok)
{
    dtf_blas_in in = {env, marker, cur, best, ok};
    dtf_blas_plan p;
    dtf_blas_decide(&in, &p);
    return p;
}

TEST(decide_switches_when_the_pick_is_below)
{
    dtf_blas_plan p = decide(NULL, NULL, "Prescott", "SkylakeX", 1);
    CHECK_EQ_INT(p.reexec, 1);
    CHECK(strcmp(p.set_core, "SkylakeX") == 0);
    CHECK(strcmp(p.marker, "SkylakeX:Prescott") == 0);
    CHECK(p.warning[0] == 0);
}

TEST(decide_keeps_a_pick_at_the_best_level)
{
    dtf_blas_plan p = decide(NULL, NULL, "Zen", "Haswell", 1);
    CHECK_EQ_INT(p.reexec, 0);
    CHECK_STR_CONTAINS(p.note, "OpenBLAS's own pick");
    p = decide(NULL, NULL, "Cooperlake", "SkylakeX", 1);
    CHECK_EQ_INT(p.reexec, 0);
    p = decide(NULL, NULL, "Prescott", NULL, 1); /* nothing better known */
    CHECK_EQ_INT(p.reexec, 0);
}

TEST(decide_respects_the_users_variable)
{
    dtf_blas_plan p = decide("Haswell", NULL, "Haswell", "SkylakeX", 1);
    CHECK_EQ_INT(p.reexec, 0);
    CHECK_STR_CONTAINS(p.note, "OPENBLAS_CORETYPE=Haswell");
    /* an empty value is set too: OpenBLAS then uses its feature fallback */
    p = decide("", NULL, "Cooperlake", "SkylakeX", 1);
    CHECK_EQ_INT(p.reexec, 0);
    CHECK_STR_CONTAINS(p.note, "set by OPENBLAS_CORETYPE=");
    /* an inherited marker for another value: the user changed it */
    p = decide("Prescott", "SkylakeX:Prescott", "Prescott", "SkylakeX", 1);
    CHECK_EQ_INT(p.reexec, 0);
    CHECK_STR_CONTAINS(p.note, "set by OPENBLAS_CORETYPE=Prescott");
    /* a user's core that computes wrong results is kept, with a warning */
    p = decide("Haswell", NULL, "Haswell", "SkylakeX", 0);
    CHECK_EQ_INT(p.reexec, 0);
    CHECK_STR_CONTAINS(p.warning, "disagrees with the naive kernels");
}

TEST(decide_recognises_its_own_choice)
{
    /* the re-executed process, and every task dtf local starts */
    dtf_blas_plan p = decide("SkylakeX", "SkylakeX:Prescott", "SkylakeX", "SkylakeX", 1);
    CHECK_EQ_INT(p.reexec, 0);
    CHECK(strcmp(p.note, "OpenBLAS picked Prescott") == 0);
    CHECK(p.warning[0] == 0);
    /* a library without those kernels: say what it gave */
    p = decide("SkylakeX", "SkylakeX:Prescott", "Haswell", "SkylakeX", 1);
    CHECK_EQ_INT(p.reexec, 0);
    CHECK_STR_CONTAINS(p.note, "gave Haswell");
}

TEST(decide_falls_back_when_the_choice_is_wrong)
{
    dtf_blas_plan p = decide("SkylakeX", "SkylakeX:Prescott", "SkylakeX", "SkylakeX", 0);
    CHECK_EQ_INT(p.reexec, 1);
    CHECK(p.set_core[0] == 0); /* unset: the library picks again */
    CHECK(strcmp(p.marker, "!SkylakeX:Prescott") == 0);
    CHECK_STR_CONTAINS(p.warning, "falling back to OpenBLAS's own pick, Prescott");
    /* the process after the fallback does not try again */
    p = decide(NULL, "!SkylakeX:Prescott", "Prescott", "SkylakeX", 1);
    CHECK_EQ_INT(p.reexec, 0);
    CHECK_STR_CONTAINS(p.note, "SkylakeX disagreed with the naive kernels");
}

TEST(decide_ignores_a_malformed_marker)
{
    static const char *const bad[] = {"", ":", "SkylakeX", "SkylakeX:", ":Prescott", "!"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dtf_blas_plan p = decide(NULL, bad[i], "Prescott", "SkylakeX", 1);
        CHECK_EQ_INT(p.reexec, 1);
        CHECK(strcmp(p.marker, "SkylakeX:Prescott") == 0);
    }
}

TEST(selftest_passes_on_the_core_in_use)
{
    /* make test-cores runs this once per core the CPU supports */
    if (dtf_blas_selftest() != 0)
        FAIL("core %s: %s", openblas_get_corename(), dtf_error());
}

TEST(info_names_library_version_and_core)
{
    const char *s = dtf_blas_info();
    CHECK_STR_CONTAINS(s, "OpenBLAS 0.");
    CHECK_STR_CONTAINS(s, openblas_get_corename());
    CHECK_STR_CONTAINS(dtf_blas_core(), openblas_get_corename());
}

int main(void)
{
    return harness_run("test_blas");
}
