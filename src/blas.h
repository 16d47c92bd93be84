/* blas: which OpenBLAS core (kernel set) dtf runs on.
 *
 * OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels once, in a
 * constructor that runs when the library loads, from the CPU's family and
 * model; a model it does not know falls through to a weaker core (0.3.21
 * puts Intel family 6 model 207, AVX-512, on Prescott's SSE3 kernels: 4-5x
 * slower sgemm). The only switch is the OPENBLAS_CORETYPE environment
 * variable, read in that constructor. So before the first BLAS call dtf
 * compares the library's pick with the best core cpuid allows and, when the
 * pick is below and the user has not set OPENBLAS_CORETYPE (an empty value
 * counts as set), re-executes itself with the variable set.
 *
 * Why re-exec and not dlopen after choosing: with the library linked as
 * usual its own pick is simply what it reports (no second copy of its
 * heuristics, no probe process), every BLAS call stays a direct call
 * (tests, bench/matmul, sanitizers and valgrind see one ordinary
 * libopenblas), and the cost, one execve of the same binary (5-10 ms here:
 * the binary and libopenblas load a second time; the PID that dtf local or
 * Kubernetes watch stays), is paid once per process and only on CPUs the
 * library misjudges.
 *
 * The marker DTF_BLAS_CORE="SET:PICK" says that dtf, not the user, set
 * OPENBLAS_CORETYPE=SET and that the library's own pick was PICK; dtf
 * local's tasks inherit both, so they log the same line and do not take
 * dtf's choice for the user's. "!SET:PICK" says SET gave wrong results
 * against the naive kernels and the library's own pick is in use. */
#ifndef DTF_BLAS_H
#define DTF_BLAS_H

#include "cpu.h"

/* The first call in main, with main's argv (execv needs it). Chooses the
 * core as above: may re-exec this program (and not return), or return NULL,
 * or a warning for main to print (the chosen core disagreed with the naive
 * kernels and dtf fell back, or the re-exec failed). */
const char *dtf_blas_setup(char **argv);
/* "OpenBLAS 0.3.21, core SkylakeX (OpenBLAS picked Prescott)": the library,
 * its version and the core in use, with why. Valid after dtf_blas_setup (or,
 * without it, describes the library's own pick). */
const char *dtf_blas_info(void);
/* The core in use, as OpenBLAS names it ("SkylakeX"). */
const char *dtf_blas_core(void);

/* ---- the parts, for tests ------------------------------------------------ */

/* The instruction-set level of an OpenBLAS core name (case-insensitive):
 * 1 SSE2/SSE3 (Prescott, ...), 2 SSSE3/SSE4 (Core2, Nehalem, Barcelona,
 * ...), 3 AVX (Sandybridge, Bulldozer, ...), 4 AVX2+FMA (Haswell, Zen),
 * 5 AVX-512 (SkylakeX, Cooperlake); 0 for a name it does not know. */
int dtf_blas_core_rank(const char *name);
/* The core the CPU's features allow, the rules of OpenBLAS's own fallback
 * for CPUs it does not know (driver/others/dynamic.c): AVX-512 F, BW, DQ
 * and VL -> SkylakeX, AVX2 and FMA -> Haswell, AVX -> Sandybridge, SSE4.2
 * -> Nehalem; NULL below that. (Cooperlake differs from SkylakeX only in
 * bf16 kernels and cannot be named in OPENBLAS_CORETYPE before 0.3.22.) */
const char *dtf_blas_best_core(const dtf_cpu *c);
/* sgemm on a few small shapes (every transpose, odd sizes, alpha and beta)
 * against dtf_matmul_naive: 0, or -1 with dtf_error() naming the shape. */
int dtf_blas_selftest(void);

typedef struct dtf_blas_in {
    const char *env_core; /* OPENBLAS_CORETYPE; NULL when unset ("" is set) */
    const char *marker;   /* DTF_BLAS_CORE; NULL when unset */
    const char *current;  /* the core in use (openblas_get_corename()) */
    const char *best;     /* dtf_blas_best_core(); NULL for none */
    int selftest_ok;      /* the core in use agrees with the naive kernels */
} dtf_blas_in;

typedef struct dtf_blas_plan {
    int reexec;         /* 1: set the two variables below, then re-exec */
    char set_core[32];  /* reexec: OPENBLAS_CORETYPE to set; "" unsets it */
    char marker[72];    /* reexec: DTF_BLAS_CORE to set */
    char note[160];     /* why this core: the parenthesis of the info line */
    char warning[200];  /* non-empty: main says it on stderr */
} dtf_blas_plan;

/* The decision alone, a pure function of its inputs. */
void dtf_blas_decide(const dtf_blas_in *in, dtf_blas_plan *out);

#endif
