/* optim: the optimizer update loops, over any [offset, count) range of the
 * flat parameter buffer, so a ps shard applies them to its own range. */
#ifndef DTF_OPTIM_H
#define DTF_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DTF_SGD = 0, DTF_ADAM = 1, DTF_ADAMW = 2 } dtf_optim_kind;

typedef struct dtf_optim {
    dtf_optim_kind kind;
    float lr;
    float momentum;      /* SGD; 0 = plain SGD (no slot used) */
    int nesterov;        /* SGD */
    float beta1, beta2, eps; /* Adam, AdamW */
    float weight_decay;  /* SGD/Adam: L2 added to the gradient; AdamW: decoupled */
} dtf_optim;

/* Fills *o with the defaults for kind (lr 0.001, betas 0.9/0.999, eps 1e-8). */
void dtf_optim_defaults(dtf_optim *o, dtf_optim_kind kind);
/* "sgd", "adam", "adamw" -> kind; -1 and dtf_error() for another name. */
int dtf_optim_kind_from_name(const char *name);
const char *dtf_optim_kind_name(dtf_optim_kind kind);
/* How many float slots per parameter the optimizer keeps (0, 1 or 2). */
int dtf_optim_nslots(const dtf_optim *o);

/* One update of n parameters. slot0 is the momentum (SGD) or Adam's m;
 * slot1 is Adam's v (NULL where unused). step is the 1-based update count
 * used for Adam's bias correction. */
void dtf_optim_apply(const dtf_optim *o, float *param, const float *grad,
                     float *slot0, float *slot1, size_t n, int64_t step);

/* dtf_optim_apply, and grad zeroed behind it block by block while the
 * block is in cache: in one process the next step's backward accumulates
 * into zeros without a separate pass over the gradients. The same bits as
 * dtf_optim_apply (no element depends on where a block starts). */
void dtf_optim_apply_zero(const dtf_optim *o, float *param, float *grad, float *slot0,
                          float *slot1, size_t n, int64_t step);

#endif
