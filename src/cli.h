/* cli: the one command-line parser of dtf's subcommands (run, repl, local).
 *
 * A subcommand lists its flags in a table; each flag is `--name=VALUE` or
 * `--name VALUE`, checked by kind (a string, an integer in a range, one of
 * some choices, or a repeatable KEY=VALUE). Words that are not flags are
 * kept in order; everything after `--` is kept apart. Every mistake is one
 * line "dtf CMD: ... (see `dtf help CMD`)" on stderr and exit status 2.
 * Host-side code: it prints, and returns the status for main to use. */
#ifndef DTF_CLI_H
#define DTF_CLI_H

#include <stddef.h>

#include "util.h"

enum { DTF_EXIT_OK = 0, DTF_EXIT_FAIL = 1, DTF_EXIT_USAGE = 2 };

typedef enum dtf_flag_kind {
    DTF_FLAG_STRING,   /* dst: const char ** (non-empty) */
    DTF_FLAG_INT,      /* dst: int *, in [lo, hi] */
    DTF_FLAG_CHOICE,   /* dst: const char **, one of choices (NULL-terminated) */
    DTF_FLAG_KV        /* dst: dtf_strlist *, repeatable "KEY=VALUE" */
} dtf_flag_kind;

/* The strings of a repeatable flag, in order; v has room for cap. */
typedef struct dtf_strlist {
    const char **v;
    int n, cap;
} dtf_strlist;

typedef struct dtf_flag {
    const char *name;              /* "--ps" */
    dtf_flag_kind kind;
    void *dst;
    long lo, hi;                   /* DTF_FLAG_INT */
    const char *const *choices;    /* DTF_FLAG_CHOICE */
    const char *what;              /* for messages: "a number of ps tasks" */
} dtf_flag;

/* Words that are not flags (the script first), and those after `--`. */
typedef struct dtf_args {
    char **words;
    int nwords;
    char **after;                  /* NULL when there is no `--` */
    int nafter;
} dtf_args;

/* Parses argv[0..argc) against flags (ending with a {NULL} entry). words
 * points into argv (room for argc is allocated; free args->words). Returns
 * 0, or DTF_EXIT_USAGE after printing the message. */
int dtf_cli_parse(const char *cmd, const dtf_flag *flags, int argc, char **argv, dtf_args *args);

/* 1 when argv (before `--`) asks for help: -h or --help. */
int dtf_cli_wants_help(int argc, char **argv);

/* Prints "dtf CMD: MESSAGE (see `dtf help CMD`)" and returns DTF_EXIT_USAGE. */
int dtf_usage_error(const char *cmd, const char *fmt, ...) DTF_PRINTF(2, 3);

#endif
