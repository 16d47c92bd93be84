/* libFuzzer target for the checkpoint reader (ckpt.c): the input is a whole
 * safetensors file, parsed from memory. A file it accepts must hold
 * tensors that lie inside the data and tile it exactly. Build and run:
 * tests/fuzz/build-one fuzz_ckpt OUTDIR, see tests/fuzz/README. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    dtf_ckpt *c = dtf_ckpt_parse(buf, len, "fuzz");
    if (!c)
        return 0;
    size_t total = 0;
    float s = 0;
    for (size_t i = 0; i < c->nt; i++) {
        const dtf_ckpt_tensor *t = &c->t[i];
        for (size_t k = 0; k < t->count; k++)
            s += t->data[k];
        total += t->count * 4;
        if (dtf_ckpt_find(c, t->name) == NULL)
            abort();
        if ((const char *)(t->data + t->count) > (const char *)c->data + c->data_bytes)
            abort();
    }
    for (size_t i = 0; i < c->nmeta; i++)
        if (dtf_ckpt_get_meta(c, c->meta[i].key) == NULL)
            abort();
    if (total != c->data_bytes)
        abort();
    sink = s;
    dtf_ckpt_free(c);
    return 0;
}
