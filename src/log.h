/* log: the seed's log lines, to stdout and to LOGDIR/deploy.log.
 *
 *   2026-11-28 10:07:34,373 - dtf - INFO - Worker 0: training step 132 done (global step: 132)
 *
 * Not part of the C core: the core reports through a dtf_log_fn callback it
 * is handed, and the host/bindings pass dtf_log_cb. Every line goes to the
 * file (when one is open); stdout gets a line unless to_stdout is 0. With a
 * status line on the terminal (progress.h), stdout lines print above it.
 * deploy.log rotates by size: past dtf_log_set_max bytes it becomes
 * deploy.log.1 (one old file kept) and a new deploy.log starts. */
#ifndef DTF_LOG_H
#define DTF_LOG_H

#include <stdint.h>

#include "util.h"

#define DTF_LOG_MAX_DEFAULT ((uint64_t)64 << 20)

/* Opens (appending) DIR/deploy.log, creating DIR; -1 and dtf_error() on failure. */
int dtf_log_open(const char *dir);
void dtf_log_close(void);
/* The size deploy.log may reach before it rotates; 0: never rotate. */
void dtf_log_set_max(uint64_t bytes);
/* Writes one line; to_stdout = 0 writes to the file only. */
void dtf_log_write(int level, int to_stdout, const char *msg);
/* A dtf_log_fn for the core: writes to stdout and the file. */
void dtf_log_cb(void *ud, int level, const char *msg);
const char *dtf_log_level_name(int level);

#endif
