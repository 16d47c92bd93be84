/* ckpt: checkpoints in the safetensors format, written atomically.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   8 bytes    N, the header length, unsigned little-endian
 *   N bytes    JSON: {"__metadata__":{"k":"v",...},
 *                     "name":{"dtype":"F32","shape":[..],"data_offsets":[b,e]},...}
 *              padded with spaces so that the data starts 8-byte aligned
 *   the rest   the tensors' bytes, little-endian; offsets are relative to
 *              the start of this section, which they cover exactly
 * dtf writes and reads dtype F32 only; metadata values are strings.
 *
 * Atomicity: dtf_ckpt_save writes DIR/.NAME.tmp.PID, fsyncs it, renames it
 * over DIR/NAME and fsyncs DIR, so a crash at any moment leaves either the
 * previous complete file or the new complete file under NAME.
 *
 * Reading trusts nothing: the header length is capped and checked against
 * the file size, the JSON is parsed strictly, offsets must lie in bounds,
 * not overlap, cover the data exactly and match each shape. Every error
 * names the file. */
#ifndef DTF_CKPT_H
#define DTF_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define DTF_CKPT_MAX_HEADER ((uint64_t)100 << 20) /* bytes of JSON */
#define DTF_CKPT_MAXDIM 8

/* ---- writing ------------------------------------------------------------- */

typedef struct dtf_ckpt_in {
    const char *name;       /* unique, non-empty, not "__metadata__" */
    int ndim;               /* 0..DTF_CKPT_MAXDIM; 0 is a scalar */
    const int64_t *shape;   /* ndim entries, each >= 0 */
    const float *data;      /* count contiguous floats (may be NULL if 0) */
    size_t count;           /* must equal the product of shape */
} dtf_ckpt_in;

typedef struct dtf_kv {
    const char *key, *value;
} dtf_kv;

/* Writes tensors t[0..nt) (in that order) and metadata meta[0..nmeta) to
 * path, atomically as described above. Fails on invalid input (duplicate
 * or reserved name, count not matching shape) or on any I/O error; on
 * failure the temporary file is removed and path is untouched. */
int dtf_ckpt_save(const char *path, const dtf_ckpt_in *t, size_t nt,
                  const dtf_kv *meta, size_t nmeta);

/* ---- reading ------------------------------------------------------------- */

typedef struct dtf_ckpt_tensor {
    char *name;
    int ndim;
    int64_t shape[DTF_CKPT_MAXDIM];
    size_t count;           /* floats */
    size_t offset;          /* bytes, from the start of the data section */
    const float *data;      /* into the checkpoint's data buffer */
} dtf_ckpt_tensor;

typedef struct dtf_ckpt_meta {
    char *key, *value;
} dtf_ckpt_meta;

typedef struct dtf_ckpt {
    dtf_ckpt_tensor *t;     /* in header order */
    size_t nt;
    dtf_ckpt_meta *meta;    /* in header order */
    size_t nmeta;
    float *data;            /* the data section, owned, aligned */
    size_t data_bytes;
} dtf_ckpt;

/* Reads and validates a whole checkpoint file. */
dtf_ckpt *dtf_ckpt_load(const char *path);

/* The same, without reading the data: the tensors' names, shapes and
 * offsets and the metadata (data and every tensor's data are NULL). The
 * header is checked against the file's size, so a truncated file fails
 * here too. */
dtf_ckpt *dtf_ckpt_load_header(const char *path);

/* The same over a file held in memory (for the fuzzer); name is used in
 * messages. The data is copied: buf may be freed afterwards. */
dtf_ckpt *dtf_ckpt_parse(const void *buf, size_t len, const char *name);

void dtf_ckpt_free(dtf_ckpt *c);

/* Lookups; NULL when absent. */
const dtf_ckpt_tensor *dtf_ckpt_find(const dtf_ckpt *c, const char *name);
const char *dtf_ckpt_get_meta(const dtf_ckpt *c, const char *key);

/* ---- naming and listing -------------------------------------------------- */

/* The file name of shard `shard` of `nps` ps tasks at step `step`:
 * "ckpt-<step, 8 digits or more>-ps<shard>-of-<nps>.safetensors". Returns
 * the length snprintf would, like snprintf. */
int dtf_ckpt_name(char *buf, size_t len, uint64_t step, unsigned shard, unsigned nps);

/* Parses a name made by dtf_ckpt_name (no directory), or the older form
 * without "-of-<nps>" (*nps = 0: only the file's metadata says); 0 on a
 * match. */
int dtf_ckpt_parse_name(const char *name, uint64_t *step, unsigned *shard, unsigned *nps);

typedef struct dtf_ckpt_file {
    char *path;             /* dir "/" name */
    uint64_t step;
    unsigned shard, nps;    /* nps 0: an older name without it */
} dtf_ckpt_file;

/* The checkpoints in dir (shard < 0: of every shard), oldest first: sorted
 * by step, then shard. A missing directory is an empty list, not an error.
 * Temporary files (.NAME.tmp.PID) are never listed. */
int dtf_ckpt_list(const char *dir, int shard, dtf_ckpt_file **out, size_t *n);
void dtf_ckpt_list_free(dtf_ckpt_file *files, size_t n);

/* Deletes all but the newest `keep` checkpoints of `shard` in dir; returns
 * how many it deleted, or -1. */
int dtf_ckpt_prune(const char *dir, unsigned shard, size_t keep);

/* Removes the temporary files (DIR/.NAME.tmp.PID) that a process killed
 * while it saved shard `shard` of `nps` left behind (an older name without
 * nps counts as any). Only for the one process that owns that shard: none
 * of them can still be in progress (the PID may be this process's own, in
 * a container restarted with a fresh PID namespace). Returns how many went;
 * their names go to names (comma-separated, truncated to n). */
int dtf_ckpt_remove_temps(const char *dir, unsigned shard, unsigned nps, char *names, size_t n);

#endif
