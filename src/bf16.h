/* bf16: float32 <-> bfloat16 over arrays, for the compact wire (wire.h).
 *
 * A bfloat16 is the top 16 bits of a float32 (sign, 8 exponent bits, 7
 * mantissa bits), kept here as its raw bits in a uint16_t. Narrowing rounds
 * to nearest, ties to even, on the bits: subnormals round like any other
 * value (they are not flushed), a value past the largest bf16 becomes inf,
 * inf stays inf, and a NaN stays a NaN of the same sign, made quiet (its top
 * mantissa bit set) so that truncation never turns it into an inf. Widening
 * is exact (the 16 bits, then 16 zero bits).
 *
 * The array functions pick the fastest path this CPU has once (cpuid):
 * AVX-512 with the BF16 instructions (vcvtne2ps2bf16, whose flushing of
 * subnormal inputs to zero is undone block by block), AVX2, or plain C.
 * Every path gives the same bits as the naive twins below, which
 * tests/unit/test_bf16.c checks on every path the CPU has. */
#ifndef DTF_BF16_H
#define DTF_BF16_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DTF_BF16_SCALAR = 0,  /* plain C: every CPU */
    DTF_BF16_AVX2 = 1,    /* x86 with AVX2 */
    DTF_BF16_AVX512 = 2   /* x86 with AVX-512 F, BW, VL and BF16 */
} dtf_bf16_path;
#define DTF_BF16_NPATHS 3

/* One value. */
uint16_t dtf_bf16_from_float(float x);
float dtf_bf16_to_float(uint16_t h);

/* n floats to n bf16 (out and in must not overlap). */
void dtf_bf16_from_floats(uint16_t *out, const float *in, size_t n);
/* n bf16 to n floats. in may lie inside out's memory at or after its byte
 * 2n: in == (const uint16_t *)out + n widens in place the n bf16 that a
 * body received into the upper half of an n-float buffer. */
void dtf_bf16_to_floats(float *out, const uint16_t *in, size_t n);

/* The path the array functions use on this CPU, and each path's name
 * ("avx512-bf16", "avx2", "scalar"; "?" for another number). */
int dtf_bf16_best_path(void);
int dtf_bf16_have_path(int path);   /* 1 when this CPU can run it */
const char *dtf_bf16_path_name(int path);

/* The same on a chosen path (tests and benchmarks): 0, or -1 with
 * dtf_error() set when this CPU lacks it. */
int dtf_bf16_from_floats_on(int path, uint16_t *out, const float *in, size_t n);
int dtf_bf16_to_floats_on(int path, float *out, const uint16_t *in, size_t n);

/* Naive twins, written from the definitions rather than from the bits:
 * narrowing compares the distances (in double) from x to the two bf16 on
 * either side of it, widening builds the value from sign, exponent and
 * mantissa with ldexp. */
uint16_t dtf_bf16_from_float_naive(float x);
float dtf_bf16_to_float_naive(uint16_t h);

#endif
