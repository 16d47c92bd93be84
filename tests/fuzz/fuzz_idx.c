/* libFuzzer target for the IDX parser (data.c): the input is one file's
 * bytes, parsed from memory as an images file and as a labels file, and
 * read through zlib from a memfd, which covers the gzip path. Build and run:
 * tests/fuzz/build-one fuzz_idx OUTDIR, see tests/fuzz/README. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);

static volatile unsigned sink;

static void touch(const dtf_idx *x)
{
    unsigned s = 0;
    for (size_t i = 0; i < x->body; i++)
        s += x->data[i];
    sink = s;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    static const uint32_t kinds[2] = {DTF_IDX_IMAGES, DTF_IDX_LABELS};
    dtf_idx x;
    for (int k = 0; k < 2; k++)
        if (dtf_idx_parse(buf, len, kinds[k], "fuzz", &x) == 0)
            touch(&x);

    /* The same bytes as a file: plain or gzip, zlib decides. */
    int fd = memfd_create("fuzz-idx", 0);
    if (fd < 0)
        return 0;
    if (write(fd, buf, len) == (ssize_t)len) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        for (int k = 0; k < 2; k++) {
            uint8_t *owned;
            if (dtf_idx_read(path, kinds[k], &owned, &x) == 0) {
                touch(&x);
                free(owned);
            }
        }
    }
    close(fd);
    return 0;
}
