/* tfevents: TensorBoard event files, written and read back.
 *
 * A file is a sequence of TFRecords, each
 *   u64  length n of the record, little-endian
 *   u32  masked CRC32C of those 8 bytes
 *   n    bytes: one serialized tensorflow.Event
 *   u32  masked CRC32C of the n bytes
 * where mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (TensorFlow's, so a
 * CRC over data that holds CRCs does not degenerate).
 *
 * The Event protos are encoded here by hand, with TensorBoard's field
 * numbers (tensorboard/compat/proto/event.proto, summary.proto):
 *   Event   { double wall_time = 1; int64 step = 2;
 *             oneof { string file_version = 3; Summary summary = 5; ... } }
 *   Summary { repeated Value value = 1; }
 *   Value   { string tag = 1; oneof { float simple_value = 2; ... } }
 * The first record of every file is an Event with file_version
 * "brain.Event:2", which TensorBoard expects; each scalar is an Event of its
 * own with one simple_value.
 *
 * The reader trusts nothing: lengths are bounded before anything is read or
 * allocated, both CRCs are checked, every protobuf length and varint is
 * checked against what is left of its message, and fields the reader does
 * not know are skipped. The C core: no printing, errors through
 * dtf_seterr(). */
#ifndef DTF_TFEVENTS_H
#define DTF_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define DTF_TFEVENTS_VERSION "brain.Event:2"
#define DTF_TFRECORD_MAX (16u << 20) /* bytes of one record the reader accepts */
#define DTF_TFEVENTS_MAX_TAG 256     /* bytes of a tag the writer accepts */

/* CRC32C (Castagnoli), chainable: start with crc = 0. */
uint32_t dtf_crc32c(uint32_t crc, const void *data, size_t n);
uint32_t dtf_crc32c_mask(uint32_t crc);

/* ---- encoding (pure) ------------------------------------------------------ */

/* Each writes at most cap bytes to out and returns the length the whole
 * encoding has (as snprintf: larger than cap means it did not fit). */
size_t dtf_event_encode_version(uint8_t *out, size_t cap, double wall, const char *version);
size_t dtf_event_encode_scalar(uint8_t *out, size_t cap, double wall, int64_t step,
                               const char *tag, float value);
/* Frames a record: 12 + n + 4 bytes. */
size_t dtf_tfrecord_frame(uint8_t *out, size_t cap, const uint8_t *rec, size_t n);

/* ---- writer --------------------------------------------------------------- */

typedef struct dtf_tfevents dtf_tfevents;

/* Creates dir (and its parents) and a new file in it,
 * events.out.tfevents.<wall seconds>.<host>.<pid> (host: gethostname() when
 * NULL; '/' becomes '_'; a numeric suffix when that name exists already),
 * and queues its file_version record. NULL with dtf_error(). */
dtf_tfevents *dtf_tfevents_open(const char *dir, const char *host);
const char *dtf_tfevents_path(const dtf_tfevents *w);
/* Queues one scalar at step, stamped with the wall clock now. Records wait
 * in memory until dtf_tfevents_flush (or until 1 MiB is queued). -1 with
 * dtf_error() for a tag that is empty or too long, or a failed write. */
int dtf_tfevents_scalar(dtf_tfevents *w, const char *tag, int64_t step, double value);
/* Writes what is queued (write(2), no fsync: a killed process loses
 * nothing that was flushed). -1 with dtf_error() when the write fails; the
 * queued records are then dropped, so a full disk never grows memory. */
int dtf_tfevents_flush(dtf_tfevents *w);
/* Flushes and frees; 0, or -1 with dtf_error() when the last flush failed. */
int dtf_tfevents_close(dtf_tfevents *w);

/* ---- reader (pure) -------------------------------------------------------- */

/* One record at buf[0..len): 1 with *rec, *rlen (the Event's bytes, inside
 * buf) and *used (the whole frame); 0 when buf ends before the record does
 * (a file still being written); -1 with dtf_error() for a CRC mismatch or a
 * length over max. */
int dtf_tfrecord_parse(const uint8_t *buf, size_t len, size_t max, const uint8_t **rec,
                       size_t *rlen, size_t *used);

typedef struct dtf_event {
    double wall;
    int64_t step;
    const char *version; /* file_version, inside the record; NULL if none */
    size_t version_len;
} dtf_event;

/* Called for every simple_value of the Event's summary; tag points into the
 * record (taglen bytes, not NUL-terminated). */
typedef void (*dtf_scalar_fn)(void *ud, const dtf_event *ev, const char *tag, size_t taglen,
                              float value);

/* Decodes one Event. 0, or -1 with dtf_error() for a malformed proto. */
int dtf_event_decode(const uint8_t *rec, size_t n, dtf_event *ev, dtf_scalar_fn fn, void *ud);

/* Reads a whole file through fn. 0 with *truncated = 1 when its last record
 * is incomplete (a writer still at work, or killed mid-write); -1 with
 * dtf_error() naming the file and the byte offset of a bad record. */
int dtf_tfevents_read(const char *path, dtf_scalar_fn fn, void *ud, int *truncated);

#endif
