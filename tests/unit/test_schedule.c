/* Unit tests for schedule.c: each learning-rate schedule against the
 * formula, warmup, and the settings it refuses. */
#include <math.h>

#include "harness.h"
#include "schedule.h"
#include "util.h"

TEST(constant_and_warmup)
{
    dtf_lr_schedule s = {DTF_LR_CONSTANT, 0, 0, 0};
    CHECK_NEAR(dtf_lr_at(&s, 0.1f, 0), 0.1, 1e-7);
    CHECK_NEAR(dtf_lr_at(&s, 0.1f, 123456), 0.1, 1e-7);
    s.warmup = 4; /* 0.025, 0.05, 0.075, 0.1, then 0.1 */
    CHECK_NEAR(dtf_lr_at(&s, 0.1f, 0), 0.025, 1e-7);
    CHECK_NEAR(dtf_lr_at(&s, 0.1f, 2), 0.075, 1e-7);
    CHECK_NEAR(dtf_lr_at(&s, 0.1f, 3), 0.1, 1e-7);
    CHECK_NEAR(dtf_lr_at(&s, 0.1f, 4), 0.1, 1e-7);
    CHECK_NEAR(dtf_lr_at(&s, 0.1f, -5), 0.025, 1e-7); /* before the first update: the first */
}

TEST(step_decays_every_period)
{
    dtf_lr_schedule s = {DTF_LR_STEP, 0, 100, 0.5};
    CHECK_NEAR(dtf_lr_at(&s, 1.0f, 0), 1.0, 1e-7);
    CHECK_NEAR(dtf_lr_at(&s, 1.0f, 99), 1.0, 1e-7);
    CHECK_NEAR(dtf_lr_at(&s, 1.0f, 100), 0.5, 1e-7);
    CHECK_NEAR(dtf_lr_at(&s, 1.0f, 250), 0.25, 1e-7);
    s.warmup = 10; /* the periods count after the warmup */
    CHECK_NEAR(dtf_lr_at(&s, 1.0f, 109), 1.0, 1e-7);
    CHECK_NEAR(dtf_lr_at(&s, 1.0f, 110), 0.5, 1e-7);
}

TEST(cosine_goes_to_zero_and_stays)
{
    dtf_lr_schedule s = {DTF_LR_COSINE, 0, 1000, 0};
    CHECK_NEAR(dtf_lr_at(&s, 2.0f, 0), 2.0, 1e-6);
    CHECK_NEAR(dtf_lr_at(&s, 2.0f, 500), 1.0, 1e-6);
    CHECK_NEAR(dtf_lr_at(&s, 2.0f, 250), 1.0 + cos(M_PI / 4), 1e-6);
    CHECK_NEAR(dtf_lr_at(&s, 2.0f, 1000), 0.0, 1e-6);
    CHECK_NEAR(dtf_lr_at(&s, 2.0f, 5000), 0.0, 1e-6);
    s.warmup = 100;
    CHECK_NEAR(dtf_lr_at(&s, 2.0f, 49), 1.0, 1e-6);
    CHECK_NEAR(dtf_lr_at(&s, 2.0f, 100), 2.0, 1e-6);
    CHECK_NEAR(dtf_lr_at(&s, 2.0f, 600), 1.0, 1e-6);
}

TEST(names_and_refusals)
{
    CHECK_EQ_INT(dtf_lr_kind_from_name("cosine"), DTF_LR_COSINE);
    CHECK_EQ_INT(dtf_lr_kind_from_name("linear"), -1);
    CHECK_STR_CONTAINS(dtf_error(), "unknown learning-rate schedule 'linear' (constant, step, cosine)");
    dtf_lr_schedule s = {DTF_LR_COSINE, 0, 0, 0};
    CHECK_EQ_INT(dtf_lr_check(&s), -1);
    CHECK_STR_CONTAINS(dtf_error(), "the cosine schedule needs lr_decay_steps > 0");
    s = (dtf_lr_schedule){DTF_LR_STEP, 0, 10, 1.5};
    CHECK_EQ_INT(dtf_lr_check(&s), -1);
    CHECK_STR_CONTAINS(dtf_error(), "lr_decay = 1.5 must be in (0, 1]");
    s = (dtf_lr_schedule){DTF_LR_CONSTANT, -1, 0, 0};
    CHECK_EQ_INT(dtf_lr_check(&s), -1);
    s = (dtf_lr_schedule){DTF_LR_STEP, 5, 10, 0.1};
    CHECK_EQ_INT(dtf_lr_check(&s), 0);
}

RUN_TESTS("test_schedule")
