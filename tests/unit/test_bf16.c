/* test_bf16: the bf16 conversions (bf16.c) on every path this CPU has
 * against the naive twins: named cases (ties, NaN, inf, overflow,
 * subnormals, signed zero), every bf16 value widened, every upper half
 * narrowed with low halves around the tie, random bits at every length
 * 0..67 and at odd offsets (the vector tails), nothing written past the
 * end, widening in place, and one long array. A path the CPU lacks is
 * reported with a "skip" line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "harness.h"
#include "util.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Random bits, with a share of the interesting ones: NaNs, infs, zeros,
 * subnormals, exact ties and the largest finite values. */
static uint32_t interesting(void)
{
    uint32_t r = rnd32(), s = r & 0x80000000u;
    switch (rnd32() % 8) {
    case 0: return s | 0x7f800000u | (r & 0x7fffffu);           /* inf or NaN */
    case 1: return s | (r & 0x7fffffu);                         /* subnormal or zero */
    case 2: return (r & 0xffff0000u) | 0x8000u;                 /* exact tie */
    case 3: return s | 0x7f7f0000u | (r & 0xffffu);             /* near overflow */
    default: return r;
    }
}

/* ---- one value --------------------------------------------------------------- */

static const struct { uint32_t in; uint16_t out; const char *what; } cases[] = {
    {0x3f800000u, 0x3f80, "1.0 is exact"},
    {0x3f808000u, 0x3f80, "tie, kept part even: stays"},
    {0x3f818000u, 0x3f82, "tie, kept part odd: rounds up to even"},
    {0x3f807fffu, 0x3f80, "just below a tie: down"},
    {0x3f808001u, 0x3f81, "just above a tie: up"},
    {0xbf818000u, 0xbf82, "negative tie: to even, away from zero here"},
    {0x3fffffffu, 0x4000, "carry into the exponent"},
    {0x7f7f7fffu, 0x7f7f, "largest finite bf16 stays finite"},
    {0x7f7f8000u, 0x7f80, "tie past the largest finite: inf (the odd side)"},
    {0x7f7fffffu, 0x7f80, "largest float: inf"},
    {0xff7fffffu, 0xff80, "most negative float: -inf"},
    {0x7f800000u, 0x7f80, "inf"},
    {0xff800000u, 0xff80, "-inf"},
    {0x7fc00000u, 0x7fc0, "quiet NaN"},
    {0x7f800001u, 0x7fc0, "NaN with only low payload bits: quiet NaN, not inf"},
    {0x7fbfffffu, 0x7fff, "signalling NaN: made quiet, payload kept"},
    {0xffc12345u, 0xffc1, "negative NaN keeps its sign"},
    {0x00000000u, 0x0000, "zero"},
    {0x80000000u, 0x8000, "negative zero"},
    {0x00000001u, 0x0000, "smallest subnormal: to zero"},
    {0x80000001u, 0x8000, "smallest negative subnormal: to -0"},
    {0x00008000u, 0x0000, "subnormal tie, even: zero"},
    {0x00018000u, 0x0002, "subnormal tie, odd: up"},
    {0x00010000u, 0x0001, "smallest bf16 subnormal is exact"},
    {0x007fffffu, 0x0080, "largest subnormal: up to the smallest normal"},
    {0x807f8000u, 0x8080, "negative subnormal tie, odd: up to a normal"},
    {0x00800000u, 0x0080, "smallest normal is exact"},
};

static void check_case(int path, size_t k)
{
    float in = from_bits(cases[k].in);
    uint16_t out = 0xdead;
    CHECK_EQ_INT(dtf_bf16_from_floats_on(path, &out, &in, 1), 0);
    if (out != cases[k].out)
        FAIL("%s: %08x gave %04x, expected %04x (%s)", dtf_bf16_path_name(path),
             cases[k].in, out, cases[k].out, cases[k].what);
}

TEST(named_cases_on_every_path)
{
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float in = from_bits(cases[k].in);
        if (dtf_bf16_from_float_naive(in) != cases[k].out)
            FAIL("naive: %08x gave %04x, expected %04x (%s)", cases[k].in,
                 dtf_bf16_from_float_naive(in), cases[k].out, cases[k].what);
        if (dtf_bf16_from_float(in) != cases[k].out)
            FAIL("scalar: %08x gave %04x, expected %04x (%s)", cases[k].in,
                 dtf_bf16_from_float(in), cases[k].out, cases[k].what);
        for (int p = 0; p < DTF_BF16_NPATHS; p++)
            if (dtf_bf16_have_path(p))
                check_case(p, k);
    }
}

TEST(signed_zero_inf_and_nan_widen)
{
    CHECK_EQ_INT(bits_of(dtf_bf16_to_float(0x8000)), 0x80000000u);
    CHECK(dtf_bf16_to_float(0x7f80) == INFINITY);
    CHECK(dtf_bf16_to_float(0xff80) == -INFINITY);
    CHECK(isnan(dtf_bf16_to_float(0x7fc1)));
    CHECK_EQ_INT(bits_of(dtf_bf16_to_float(0xffc1)), 0xffc10000u);
    CHECK(dtf_bf16_to_float(0x0001) == ldexpf(1.0f, -133));
    /* a NaN survives the round trip as a NaN */
    float nan = from_bits(0x7f800001u);
    CHECK(isnan(dtf_bf16_to_float(dtf_bf16_from_float(nan))));
}

/* ---- every value ----------------------------------------------------------------- */

TEST(every_bf16_widens_as_the_twin_on_every_path)
{
    static uint16_t h[65536];
    static float out[65536];
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    for (int p = 0; p < DTF_BF16_NPATHS; p++) {
        if (!dtf_bf16_have_path(p))
            continue;
        memset(out, 0, sizeof out);
        CHECK_EQ_INT(dtf_bf16_to_floats_on(p, out, h, 65536), 0);
        int bad = 0;
        for (uint32_t i = 0; i < 65536 && bad < 5; i++) {
            float want = dtf_bf16_to_float_naive((uint16_t)i);
            int same = isnan(want) ? bits_of(out[i]) == (i << 16) : out[i] == want &&
                       signbit(out[i]) == signbit(want);
            if (!same) {
                FAIL("%s: %04x widened to %08x", dtf_bf16_path_name(p), i, bits_of(out[i]));
                bad++;
            }
        }
    }
}

/* Every sign-exponent-mantissa of a bf16 with low halves at and around the
 * tie, and random ones: the rounding of every binade, subnormals included. */
TEST(every_upper_half_narrows_as_the_twin_on_every_path)
{
    static const uint16_t lows[] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff};
    enum { NL = sizeof lows / sizeof lows[0] + 2, N = 65536 * NL };
    float *in = malloc(N * sizeof *in);
    uint16_t *want = malloc(N * sizeof *want), *got = malloc(N * sizeof *got);
    if (!in || !want || !got)
        abort();
    for (uint32_t hi = 0; hi < 65536; hi++)
        for (int k = 0; k < NL; k++) {
            uint32_t lo = k < (int)(NL - 2) ? lows[k] : rnd32() & 0xffffu;
            in[hi * NL + (uint32_t)k] = from_bits(hi << 16 | lo);
        }
    for (size_t i = 0; i < N; i++)
        want[i] = dtf_bf16_from_float_naive(in[i]);
    for (int p = 0; p < DTF_BF16_NPATHS; p++) {
        if (!dtf_bf16_have_path(p))
            continue;
        CHECK_EQ_INT(dtf_bf16_from_floats_on(p, got, in, N), 0);
        int bad = 0;
        for (size_t i = 0; i < N && bad < 5; i++)
            if (got[i] != want[i]) {
                FAIL("%s: %08x narrowed to %04x, naive %04x", dtf_bf16_path_name(p),
                     bits_of(in[i]), got[i], want[i]);
                bad++;
            }
    }
    free(in);
    free(want);
    free(got);
}

/* ---- lengths, offsets, tails -------------------------------------------------------- */

#define GUARD 0xa5a5u

/* n random values at element offset off of the buffers: the results equal
 * the twins' and the guard after the last element is untouched. */
static void lengths_on(int path, size_t n, size_t off)
{
    float in[80], wide[80];
    uint16_t narrow[80], h[80];
    for (size_t i = 0; i < n + off + 1; i++) {
        in[i] = from_bits(interesting());
        h[i] = (uint16_t)rnd32();
        narrow[i] = GUARD;
        wide[i] = -7.0f;
    }
    dtf_bf16_from_floats_on(path, narrow + off, in + off, n);
    dtf_bf16_to_floats_on(path, wide + off, h + off, n);
    for (size_t i = off; i < off + n; i++) {
        if (narrow[i] != dtf_bf16_from_float_naive(in[i])) {
            FAIL("%s n=%zu off=%zu: [%zu] %08x narrowed to %04x", dtf_bf16_path_name(path), n,
                 off, i - off, bits_of(in[i]), narrow[i]);
            return;
        }
        if (bits_of(wide[i]) != (uint32_t)h[i] << 16) {
            FAIL("%s n=%zu off=%zu: [%zu] %04x widened to %08x", dtf_bf16_path_name(path), n,
                 off, i - off, h[i], bits_of(wide[i]));
            return;
        }
    }
    if (narrow[off + n] != GUARD || wide[off + n] != -7.0f || (off && narrow[off - 1] != GUARD))
        FAIL("%s n=%zu off=%zu: wrote outside the array", dtf_bf16_path_name(path), n, off);
}

TEST(every_length_0_to_67_at_several_offsets_on_every_path)
{
    for (int p = 0; p < DTF_BF16_NPATHS; p++) {
        if (!dtf_bf16_have_path(p)) {
            printf("skip %s: this CPU lacks it\n", dtf_bf16_path_name(p));
            continue;
        }
        for (size_t n = 0; n <= 67; n++)
            for (size_t off = 0; off < 4; off++)
                for (int rep = 0; rep < 4; rep++)
                    lengths_on(p, n, off);
    }
}

/* The bf16 of a received body sit in the upper half of its n-float buffer
 * (wire.c): widening must not overwrite what it has not read yet. */
TEST(widening_in_place_from_the_upper_half)
{
    for (int p = 0; p < DTF_BF16_NPATHS; p++) {
        if (!dtf_bf16_have_path(p))
            continue;
        for (size_t n = 0; n <= 67; n++) {
            float buf[68];
            uint16_t h[68];
            for (size_t i = 0; i < n; i++)
                h[i] = (uint16_t)rnd32();
            memcpy((uint16_t *)(void *)buf + n, h, n * 2);
            dtf_bf16_to_floats_on(p, buf, (const uint16_t *)(void *)buf + n, n);
            for (size_t i = 0; i < n; i++)
                if (bits_of(buf[i]) != (uint32_t)h[i] << 16) {
                    FAIL("%s n=%zu: [%zu] %04x widened in place to %08x",
                         dtf_bf16_path_name(p), n, i, h[i], bits_of(buf[i]));
                    break;
                }
        }
    }
}

TEST(a_long_array_agrees_across_paths)
{
    enum { N = 100003 };
    float *in = malloc(N * sizeof *in), *back = malloc(N * sizeof *back);
    uint16_t *out = malloc(N * sizeof *out);
    if (!in || !out || !back)
        abort();
    for (size_t i = 0; i < N; i++) /* gradient-like: normal, spread over decades */
        in[i] = (float)((int)(rnd32() % 2001) - 1000) * ldexpf(1.0f, -(int)(rnd32() % 40));
    for (int p = 0; p < DTF_BF16_NPATHS; p++) {
        if (!dtf_bf16_have_path(p))
            continue;
        dtf_bf16_from_floats_on(p, out, in, N);
        dtf_bf16_to_floats_on(p, back, out, N);
        for (size_t i = 0; i < N; i++) {
            if (out[i] != dtf_bf16_from_float_naive(in[i])) {
                FAIL("%s: [%zu] %08x narrowed to %04x", dtf_bf16_path_name(p), i,
                     bits_of(in[i]), out[i]);
                break;
            }
            /* 8 significant bits: within half a unit of the last place */
            if (fabsf(back[i] - in[i]) > fabsf(in[i]) * (1.0f / 256)) {
                FAIL("%s: [%zu] %g came back as %g", dtf_bf16_path_name(p), i, in[i], back[i]);
                break;
            }
        }
    }
    free(in);
    free(out);
    free(back);
}

TEST(paths_and_dispatch)
{
    int best = dtf_bf16_best_path();
    CHECK(best >= 0 && best < DTF_BF16_NPATHS);
    CHECK(dtf_bf16_have_path(DTF_BF16_SCALAR));
    CHECK(!dtf_bf16_have_path(DTF_BF16_NPATHS));
    printf("bf16 path on this CPU: %s\n", dtf_bf16_path_name(best));
    uint16_t o;
    float f = 1.0f;
    CHECK_EQ_INT(dtf_bf16_from_floats_on(DTF_BF16_NPATHS, &o, &f, 1), -1);
    CHECK_STR_CONTAINS(dtf_error(), "not available");
    CHECK_EQ_INT(dtf_bf16_to_floats_on(-1, &f, &o, 1), -1);
    CHECK(strcmp(dtf_bf16_path_name(DTF_BF16_AVX512), "avx512-bf16") == 0);
    CHECK(strcmp(dtf_bf16_path_name(99), "?") == 0);
    /* the dispatched functions give the best path's bits */
    float in[37];
    uint16_t a[37], b[37];
    for (int i = 0; i < 37; i++)
        in[i] = from_bits(interesting());
    dtf_bf16_from_floats(a, in, 37);
    dtf_bf16_from_floats_on(best, b, in, 37);
    CHECK(memcmp(a, b, sizeof a) == 0);
}

RUN_TESTS("test_bf16")
