/* progress: the status line a training shows on a terminal.
 *
 *   step 12345/60000 (20%)  1850 steps/s  59200 ex/s  loss 0.4123  0:07 elapsed  ETA 0:26
 *
 * One line at the bottom of the terminal, redrawn in place (carriage
 * return, erase to the end of the line) a few times a second, cut to the
 * terminal's width so that it never wraps. Whatever else goes to stdout
 * (log lines, a task's output under `dtf local`) goes through
 * dtf_status_write, which erases the line, writes the text and draws the
 * line again below it: the text scrolls up, the status stays at the bottom.
 *
 * Two users: `dtf run` (train.lua feeds its steps through dtf.watch, the
 * binding is lwatch.c) and `dtf local`'s supervisor, which folds the step
 * lines its tasks print into the one line (dtf_fold_*). Host code, not the
 * core: it writes to the terminal. */
#ifndef DTF_PROGRESS_H
#define DTF_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#define DTF_PROGRESS_REDRAW 0.2 /* s between redraws */

/* ---- rates and the line's text (pure) ------------------------------------------- */

#define DTF_PROGRESS_SAMPLES 32 /* ring of (time, step, examples), 0.2 s apart: ~6 s window */

typedef struct dtf_progress {
    int64_t total;   /* global steps to train; 0: no end */
    double t0;       /* when it started (dtf_now) */
    int64_t step;    /* latest global step */
    double examples; /* examples trained so far (every worker) */
    double loss;
    int have_loss;
    double last_draw;
    /* samples for the smoothed rates */
    double st[DTF_PROGRESS_SAMPLES], ss[DTF_PROGRESS_SAMPLES], se[DTF_PROGRESS_SAMPLES];
    int head, count;
} dtf_progress;

void dtf_progress_init(dtf_progress *p, int64_t total, double now);
/* The latest state; loss < 0 leaves the loss as it was. */
void dtf_progress_update(dtf_progress *p, double now, int64_t step, double examples, double loss);
/* Steps and examples per second over the last few seconds (0 before two
 * samples). */
void dtf_progress_rates(const dtf_progress *p, double *steps_s, double *ex_s);
/* The line's text (no newline), as snprintf. */
size_t dtf_progress_format(const dtf_progress *p, double now, char *buf, size_t n);
/* 1 when DTF_PROGRESS_REDRAW has passed since the last draw (and marks
 * this one as drawn). */
int dtf_progress_due(dtf_progress *p, double now);

/* ---- the terminal line ------------------------------------------------------------ */

/* Draws (or redraws) the status line. */
void dtf_status_show(const char *text);
/* Ends the line: keep = 1 leaves it on the screen followed by a newline
 * (the final state), 0 erases it. Then nothing is drawn until the next
 * dtf_status_show. */
void dtf_status_end(int keep);
int dtf_status_active(void);
/* Writes text (whole lines) to stdout above the status line, or plainly
 * when none is shown; one write(2) either way. */
void dtf_status_write(const char *text, size_t n);

/* ---- `dtf local`: the tasks' step lines folded into one status line ------------------- */

/* Starts folding when stdout is a terminal and the --set values `dtf local`
 * passes to every task ("KEY=VALUE", or helm's "a=1,b=2") do not say
 * progress=false. */
void dtf_fold_start(int nset, const char *const *set);
/* One line a task printed (without its newline). 1 when it was folded into
 * the status line (a worker's step line: not to be printed), 0 otherwise. */
int dtf_fold_line(const char *task, const char *line, size_t n);
/* Redraws when due; the supervisor calls it at least every
 * dtf_fold_interval_ms(). */
void dtf_fold_tick(void);
int dtf_fold_interval_ms(int otherwise);
/* Erases the line before the supervisor's own message on stderr; the
 * next tick draws it again below. */
void dtf_fold_pause(void);
/* Leaves the final status on the screen and stops folding; again: no-op. */
void dtf_fold_end(void);

#endif
