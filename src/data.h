/* data: IDX datasets (MNIST, Fashion-MNIST), shuffled batches, worker shards.
 *
 * A dataset keeps its labels as the bytes of the file and its pixels as
 * bytes too, with runs of zero pixels packed (the background of MNIST-style
 * images); a batch is converted to float32 (byte / 255, in [0, 1]) only when
 * it is handed out, so the whole set never exists as floats.
 *
 * IDX (big-endian header): magic 0x00000803, then n, rows, cols for an
 * images file; magic 0x00000801, then n for a labels file; then the bytes.
 * Files are read with zlib, so plain and gzip-compressed files both work.
 *
 * Epochs and shards: every worker computes the same permutation of [0, n)
 * for an epoch (Fisher-Yates seeded from (seed, epoch), or the identity when
 * shuffling is off) and takes a CONTIGUOUS slice of it: shard s of S gets
 * positions [n*s/S, n*(s+1)/S). The slices are disjoint and cover the set,
 * so within an epoch no two workers see the same example; the permutation
 * changes every epoch, so each worker sees different examples each epoch.
 *
 * Errors: functions that fail return -1 or NULL and set dtf_error() to a
 * message naming the file and what is wrong. */
#ifndef DTF_DATA_H
#define DTF_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define DTF_IDX_IMAGES 0x00000803u
#define DTF_IDX_LABELS 0x00000801u
#define DTF_IDX_MAX_BYTES ((size_t)1 << 31) /* cap on an IDX file's body */

/* ---- IDX parsing (pure, over bytes; fuzzed) ------------------------------ */

typedef struct dtf_idx {
    uint32_t magic;          /* DTF_IDX_IMAGES or DTF_IDX_LABELS */
    uint32_t n, rows, cols;  /* rows = cols = 1 for labels */
    size_t header;           /* header bytes: 16 for images, 8 for labels */
    size_t body;             /* n * rows * cols */
    const uint8_t *data;     /* points into the parsed buffer, at header */
} dtf_idx;

/* Parses only the header from the first len bytes of a file: checks the
 * magic (want is DTF_IDX_IMAGES or DTF_IDX_LABELS) and the dimensions.
 * out->data is NULL. name is the file's name for messages. */
int dtf_idx_parse_header(const void *buf, size_t len, uint32_t want,
                         const char *name, dtf_idx *out);

/* Parses a whole file held in memory: the header as above, then the body,
 * which must be exactly n*rows*cols bytes (truncated and trailing bytes are
 * both errors). out->data points into buf. */
int dtf_idx_parse(const void *buf, size_t len, uint32_t want,
                  const char *name, dtf_idx *out);

/* Reads a whole IDX file (plain or gzip) into a new buffer and parses it.
 * On success *bufp owns the bytes (free() it) and out->data points into it. */
int dtf_idx_read(const char *path, uint32_t want, uint8_t **bufp, dtf_idx *out);

/* ---- datasets ------------------------------------------------------------ */

typedef struct dtf_dataset dtf_dataset;

/* Loads an images file and its labels file; the counts must agree. labels
 * NULL: images alone (labels read as 0, dtf_dataset_labels NULL). */
dtf_dataset *dtf_dataset_load(const char *images, const char *labels);
void dtf_dataset_free(dtf_dataset *ds);

uint32_t dtf_dataset_count(const dtf_dataset *ds);
uint32_t dtf_dataset_rows(const dtf_dataset *ds);
uint32_t dtf_dataset_cols(const dtf_dataset *ds);
const char *dtf_dataset_images_path(const dtf_dataset *ds);
const char *dtf_dataset_labels_path(const dtf_dataset *ds);
/* The labels (count). */
const uint8_t *dtf_dataset_labels(const dtf_dataset *ds);
/* Image i (0-based) as its rows*cols bytes into out; -1 out of range. */
int dtf_dataset_image(const dtf_dataset *ds, uint32_t i, uint8_t *out);
/* Bytes the pixels take in memory: images are kept packed (runs of zero
 * pixels as one count) where that is smaller, raw otherwise. */
size_t dtf_dataset_pixel_bytes(const dtf_dataset *ds);

/* Converts examples idx[0..n) (0-based) into x_out (n, rows*cols), as
 * byte/255 floats, and y_out (n), the class as a float (0..255). y_out may
 * be NULL. Fails (and writes nothing) if an index is >= count. */
int dtf_dataset_batch(const dtf_dataset *ds, const uint32_t *idx, size_t n,
                      float *x_out, float *y_out);

/* ---- epoch order and shards ---------------------------------------------- */

/* Fills order[0..n) with the permutation of epoch `epoch` (1-based):
 * Fisher-Yates driven by dtf_rng seeded with dtf_epoch_seed(seed, epoch),
 * or the identity when shuffle is 0. Same arguments, same order, on every
 * machine. */
void dtf_epoch_order(uint32_t *order, uint32_t n, uint64_t seed,
                     uint64_t epoch, int shuffle);
uint64_t dtf_epoch_seed(uint64_t seed, uint64_t epoch);

/* Shard s of S: positions [*begin, *end) of the epoch order, that is
 * [n*s/S, n*(s+1)/S). Sizes differ by at most one. Fails if S == 0 or
 * s >= S. */
int dtf_data_shard_range(uint32_t n, uint32_t s, uint32_t S,
                    uint32_t *begin, uint32_t *end);

/* ---- loader: one worker's batches, epoch after epoch --------------------- */

typedef struct dtf_loader_opts {
    uint32_t batchsize;    /* > 0 */
    uint64_t seed;
    uint32_t shard, shards;/* this worker's slice; shards >= 1 */
    int shuffle;           /* reshuffle every epoch */
    int drop_last;         /* drop a last partial batch */
    uint32_t limit;        /* draw from examples [0, limit) only (the rest held
                            * out for validation); 0: all of them */
} dtf_loader_opts;

typedef struct dtf_loader dtf_loader;

/* The loader borrows ds, which must outlive it. With drop_last, every
 * shard has the same number of batches per epoch, floor(floor(n/S) / B),
 * so synchronous workers stay in step; without it a shard's last batch
 * may be partial. Fails when a shard would hold no batch at all. */
dtf_loader *dtf_loader_new(const dtf_dataset *ds, const dtf_loader_opts *o);
void dtf_loader_free(dtf_loader *l);

/* Fills x (batchsize, rows*cols) and y (batchsize, may be NULL) with the
 * next batch and returns the number of rows filled (batchsize, or fewer for
 * a last partial batch; rows past it are zeroed). At the end of an epoch it
 * moves to the next one and reshuffles. */
int dtf_loader_next(dtf_loader *l, float *x, float *y);

/* The epoch (1-based) of the last batch handed out (1 before the first),
 * and how many batches of that epoch have been handed out (0..per epoch). */
uint64_t dtf_loader_epoch(const dtf_loader *l);
uint32_t dtf_loader_position(const dtf_loader *l);
uint32_t dtf_loader_batches_per_epoch(const dtf_loader *l);
uint32_t dtf_loader_batchsize(const dtf_loader *l);
/* This worker's examples per epoch (before drop_last). */
uint32_t dtf_loader_shard_size(const dtf_loader *l);

/* Positions the loader so that the next batch is batch `batch` (0-based) of
 * epoch `epoch` (1-based), e.g. to resume from a checkpoint. */
int dtf_loader_seek(dtf_loader *l, uint64_t epoch, uint32_t batch);

#endif
