/* A tiny unit-test harness: TEST(name) defines a case, CHECK* record a
 * failure with file and line and go on, RUN_TESTS() ends main with the
 * closing line "NAME: N passed, M failed" that tests/run sums up. */
#ifndef DTF_HARNESS_H
#define DTF_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
static struct { const char *name; test_fn fn; } harness_tests[512];
static int harness_ntests, harness_case_failed, harness_passed, harness_failed;

#define TEST(fn_)                                                          \
    static void fn_(void);                                                 \
    __attribute__((constructor)) static void register_##fn_(void)         \
    {                                                                      \
        harness_tests[harness_ntests].name = #fn_;                         \
        harness_tests[harness_ntests++].fn = fn_;                          \
    }                                                                      \
    static void fn_(void)

#define FAIL(...)                                                          \
    do {                                                                   \
        fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);             \
        fprintf(stderr, __VA_ARGS__);                                      \
        fputc('\n', stderr);                                               \
        harness_case_failed = 1;                                           \
    } while (0)

#define CHECK(cond)                                                        \
    do { if (!(cond)) FAIL("%s", #cond); } while (0)
#define CHECK_EQ_INT(a, b)                                                 \
    do { long long _a = (long long)(a), _b = (long long)(b);               \
         if (_a != _b) FAIL("%s == %lld, expected %s == %lld", #a, _a, #b, _b); } while (0)
#define CHECK_NEAR(a, b, tol)                                              \
    do { double _a = (a), _b = (b);                                        \
         if (!(fabs(_a - _b) <= (tol))) FAIL("%s = %.9g, expected %.9g (tol %g)", #a, _a, _b, (double)(tol)); } while (0)
#define CHECK_STR_CONTAINS(s, sub)                                         \
    do { const char *_s = (s);                                             \
         if (!_s || !strstr(_s, (sub))) FAIL("\"%s\" does not contain \"%s\"", _s ? _s : "(null)", (sub)); } while (0)

static inline int harness_run(const char *suite)
{
    for (int i = 0; i < harness_ntests; i++) {
        harness_case_failed = 0;
        harness_tests[i].fn();
        if (harness_case_failed) {
            harness_failed++;
            fprintf(stderr, "not ok %s\n", harness_tests[i].name);
        } else {
            harness_passed++;
            printf("ok %s\n", harness_tests[i].name);
        }
    }
    printf("%s: %d passed, %d failed\n", suite, harness_passed, harness_failed);
    return harness_failed ? 1 : 0;
}

#define RUN_TESTS(suite) int main(void) { return harness_run(suite); }

#endif
