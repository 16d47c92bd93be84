/* cli: the subcommands' flag parser (cli.h). */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dtf_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dtf %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see `dtf help %s`)\n", cmd);
    va_end(ap);
    return DTF_EXIT_USAGE;
}

int dtf_cli_wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}

/* The flag argv[*i] names, or NULL. */
static const dtf_flag *find_flag(const dtf_flag *flags, const char *a)
{
    for (const dtf_flag *f = flags; f->name; f++) {
        size_t n = strlen(f->name);
        if (strncmp(a, f->name, n) == 0 && (a[n] == '\0' || a[n] == '='))
            return f;
    }
    return NULL;
}

/* Checks v against f and stores it. */
static int store(const char *cmd, const dtf_flag *f, const char *v)
{
    const char *what = f->what ? f->what : "a value";
    switch (f->kind) {
    case DTF_FLAG_STRING:
        *(const char **)f->dst = v;
        return 0;
    case DTF_FLAG_INT: {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || *end || x < f->lo || x > f->hi)
            return dtf_usage_error(cmd, "%s must be %s from %ld to %ld, not '%s'", f->name, what,
                                   f->lo, f->hi, v);
        *(int *)f->dst = (int)x;
        return 0;
    }
    case DTF_FLAG_CHOICE:
        for (const char *const *c = f->choices; *c; c++)
            if (strcmp(*c, v) == 0) {
                *(const char **)f->dst = v;
                return 0;
            }
        return dtf_usage_error(cmd, "%s '%s' is not %s", f->name, v, what);
    case DTF_FLAG_KV: {
        dtf_strlist *l = f->dst;
        const char *eq = strchr(v, '=');
        if (!eq || eq == v)
            return dtf_usage_error(cmd, "%s '%s' is not KEY=VALUE", f->name, v);
        if (l->n >= l->cap)
            return dtf_usage_error(cmd, "too many %s flags (at most %d)", f->name, l->cap);
        l->v[l->n++] = v;
        return 0;
    }
    }
    return DTF_EXIT_USAGE;
}

static int parse(const char *cmd, const dtf_flag *flags, int argc, char **argv, dtf_args *args)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            args->after = argv + i + 1;
            args->nafter = argc - i - 1;
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            args->words[args->nwords++] = argv[i];
            continue;
        }
        const dtf_flag *f = find_flag(flags, a);
        if (!f)
            return dtf_usage_error(cmd, "unknown flag '%s'", a);
        size_t n = strlen(f->name);
        const char *v;
        if (a[n] == '=')
            v = a + n + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else
            return dtf_usage_error(cmd, "flag %s needs a value", f->name);
        if (!*v)
            return dtf_usage_error(cmd, "flag %s has an empty value", f->name);
        int rc = store(cmd, f, v);
        if (rc)
            return rc;
    }
    return 0;
}

int dtf_cli_parse(const char *cmd, const dtf_flag *flags, int argc, char **argv, dtf_args *args)
{
    memset(args, 0, sizeof *args);
    args->words = calloc((size_t)argc + 1, sizeof *args->words);
    if (!args->words) {
        fprintf(stderr, "dtf %s: out of memory\n", cmd);
        return DTF_EXIT_FAIL;
    }
    int rc = parse(cmd, flags, argc, argv, args);
    if (rc) {
        free(args->words);
        memset(args, 0, sizeof *args);
    }
    return rc;
}
