/* tensor_impl: helpers shared by the kernels in tensor.c and tensor_conv.c
 * (internal; the interface is tensor.h). */
#ifndef DTF_TENSOR_IMPL_H
#define DTF_TENSOR_IMPL_H

#include "tensor.h" /* and util.h: dtf_seterr */

/* Two shapes for an error message. */
typedef struct { char a[96], b[96]; } shapes2;

static inline shapes2 sh2(const dtf_tensor *a, const dtf_tensor *b)
{
    shapes2 s;
    dtf_shape_str(a, s.a, sizeof s.a);
    dtf_shape_str(b, s.b, sizeof s.b);
    return s;
}

static inline const char *sh(const dtf_tensor *t, char *buf)
{
    return dtf_shape_str(t, buf, 96);
}

/* Sets the error "what: (a shape) and (b shape) do not match". */
#define MISMATCH(what, x, y)                                               \
    do {                                                                   \
        shapes2 s_ = sh2((x), (y));                                        \
        dtf_seterr("%s: (%s) and (%s) do not match", (what), s_.a, s_.b);  \
    } while (0)

#endif
