/* schedule: learning-rate schedules, a function of the update count alone,
 * so that every ps shard (and one process) applies the same rate at the
 * same global step, and a restored shard goes on where it stopped.
 *
 *   constant  lr
 *   step      lr * decay^floor(t / decay_steps)
 *   cosine    lr * (1 + cos(pi * min(t, decay_steps) / decay_steps)) / 2
 * after `warmup` updates that rise linearly to lr: lr * (u + 1) / warmup
 * for the u-th (0-based) update, and t = u - warmup. */
#ifndef DTF_SCHEDULE_H
#define DTF_SCHEDULE_H

#include <stdint.h>

typedef enum { DTF_LR_CONSTANT = 0, DTF_LR_STEP = 1, DTF_LR_COSINE = 2 } dtf_lr_kind;

typedef struct dtf_lr_schedule {
    dtf_lr_kind kind;
    int64_t warmup;       /* updates of linear warmup; 0: none */
    int64_t decay_steps;  /* step: the period; cosine: the length of the decay */
    double decay;         /* step: the factor per period */
} dtf_lr_schedule;

/* The rate of update u (0-based: the u-th update applied). */
float dtf_lr_at(const dtf_lr_schedule *s, float lr, int64_t u);

/* "constant", "step", "cosine" -> kind; -1 and dtf_error() otherwise. */
int dtf_lr_kind_from_name(const char *name);
const char *dtf_lr_kind_name(dtf_lr_kind kind);

/* 0, or -1 with dtf_error() when the settings cannot work (a step or cosine
 * schedule without decay_steps, a negative warmup, a decay outside (0, 1]). */
int dtf_lr_check(const dtf_lr_schedule *s);

#endif
