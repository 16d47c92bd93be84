/* optim: SGD (momentum, Nesterov, L2), Adam (L2) and AdamW (decoupled
 * weight decay) with PyTorch's update rules (torch.optim, dampening 0,
 * amsgrad off), one loop over a range of the flat parameter buffer. */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "util.h"

void dtf_optim_defaults(dtf_optim *o, dtf_optim_kind kind)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->lr = 0.001f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    /* PyTorch's AdamW decays by default; SGD and Adam do not. */
    o->weight_decay = kind == DTF_ADAMW ? 0.01f : 0.0f;
}

int dtf_optim_kind_from_name(const char *name)
{
    if (!strcmp(name, "sgd"))
        return DTF_SGD;
    if (!strcmp(name, "adam"))
        return DTF_ADAM;
    if (!strcmp(name, "adamw"))
        return DTF_ADAMW;
    dtf_seterr("unknown optimizer '%s' (sgd, adam, adamw)", name);
    return -1;
}

const char *dtf_optim_kind_name(dtf_optim_kind kind)
{
    switch (kind) {
    case DTF_SGD: return "sgd";
    case DTF_ADAM: return "adam";
    case DTF_ADAMW: return "adamw";
    }
    return "?";
}

int dtf_optim_nslots(const dtf_optim *o)
{
    if (o->kind == DTF_SGD)
        return o->momentum != 0 ? 1 : 0;
    return 2;
}

static void sgd(const dtf_optim *o, float *p, const float *g, float *buf, size_t n)
{
    float lr = o->lr, wd = o->weight_decay, mu = o->momentum;
    if (mu == 0 || !buf) {
        for (size_t i = 0; i < n; i++)
            p[i] -= lr * (g[i] + wd * p[i]);
        return;
    }
    /* buf = mu * buf + d (torch starts buf at d on the first step, which is
     * the same thing with buf zeroed). */
    if (o->nesterov) {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            float b = mu * buf[i] + d;
            buf[i] = b;
            p[i] -= lr * (d + mu * b);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            float b = mu * buf[i] + d;
            buf[i] = b;
            p[i] -= lr * b;
        }
    }
}

static void adam(const dtf_optim *o, float *p, const float *g, float *m, float *v,
                 size_t n, int64_t step, int decoupled)
{
    if (step < 1)
        step = 1;
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps, lr = o->lr, wd = o->weight_decay;
    double bc1 = 1.0 - pow((double)b1, (double)step);
    double bc2 = 1.0 - pow((double)b2, (double)step);
    float step_size = (float)(lr / bc1);
    float rbc2 = (float)(1.0 / sqrt(bc2));
    float l2 = decoupled ? 0.0f : wd;
    float shrink = decoupled ? 1.0f - lr * wd : 1.0f;
    for (size_t i = 0; i < n; i++) {
        float pi = p[i] * shrink;
        float d = g[i] + l2 * p[i];
        float mi = b1 * m[i] + (1 - b1) * d;
        float vi = b2 * v[i] + (1 - b2) * d * d;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi) * rbc2 + eps);
    }
}

void dtf_optim_apply(const dtf_optim *o, float *param, const float *grad,
                     float *slot0, float *slot1, size_t n, int64_t step)
{
    switch (o->kind) {
    case DTF_SGD:
        sgd(o, param, grad, slot0, n);
        break;
    case DTF_ADAM:
        adam(o, param, grad, slot0, slot1, n, step, 0);
        break;
    case DTF_ADAMW:
        adam(o, param, grad, slot0, slot1, n, step, 1);
        break;
    }
}
