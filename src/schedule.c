/* schedule: learning-rate schedules (schedule.h). */
#include "schedule.h"

#include <math.h>
#include <string.h>

#include "util.h"

static const char *const names[] = {"constant", "step", "cosine"};

float dtf_lr_at(const dtf_lr_schedule *s, float lr, int64_t u)
{
    if (u < 0)
        u = 0;
    if (s->warmup > 0 && u < s->warmup)
        return (float)((double)lr * (double)(u + 1) / (double)s->warmup);
    int64_t t = u - (s->warmup > 0 ? s->warmup : 0);
    switch (s->kind) {
    case DTF_LR_STEP:
        if (s->decay_steps <= 0)
            return lr;
        return (float)((double)lr * pow(s->decay, (double)(t / s->decay_steps)));
    case DTF_LR_COSINE: {
        if (s->decay_steps <= 0)
            return lr;
        double x = t < s->decay_steps ? (double)t / (double)s->decay_steps : 1.0;
        return (float)((double)lr * 0.5 * (1.0 + cos(M_PI * x)));
    }
    default:
        return lr;
    }
}

int dtf_lr_kind_from_name(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    dtf_seterr("unknown learning-rate schedule '%s' (constant, step, cosine)", name);
    return -1;
}

const char *dtf_lr_kind_name(dtf_lr_kind kind)
{
    return (unsigned)kind < 3 ? names[kind] : "?";
}

int dtf_lr_check(const dtf_lr_schedule *s)
{
    if (s->warmup < 0) {
        dtf_seterr("warmup = %lld is negative", (long long)s->warmup);
        return -1;
    }
    if ((s->kind == DTF_LR_STEP || s->kind == DTF_LR_COSINE) && s->decay_steps <= 0) {
        dtf_seterr("the %s schedule needs lr_decay_steps > 0", dtf_lr_kind_name(s->kind));
        return -1;
    }
    if (s->kind == DTF_LR_STEP && !(s->decay > 0 && s->decay <= 1)) {
        dtf_seterr("lr_decay = %g must be in (0, 1]", s->decay);
        return -1;
    }
    return 0;
}
