/* main: the dtf command. Parses subcommands and flags, runs the host, and is
 * the only place that picks an exit status (0 ok, 1 failure, 2 usage). */
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas.h"
#include "cpu.h"
#include "host.h"
#include "local.h"
#include "repl.h"
#include "util.h"
#include "version.h"

#define MAX_SET 256

static void usage_main(FILE *f)
{
    fputs("dtf " DTF_VERSION " - a distributed neural-network trainer (parameter servers, Lua 5.4)\n"
          "\n"
          "usage: dtf COMMAND [ARGS]\n"
          "\n"
          "commands:\n"
          "  run SCRIPT [FLAGS] [-- ARGS]   run a Lua script (train.lua) as one task\n"
          "  local SCRIPT --ps=N --workers=M [FLAGS]\n"
          "                                 run a whole cluster on this machine (loopback)\n"
          "  repl [--ps=HOST:PORT,...]      interactive Lua with every dtf module loaded\n"
          "  export CKPT_DIR OUT.safetensors\n"
          "                                 merge the ps shards of a checkpoint into one file\n"
          "  version                        print the version\n"
          "  help [COMMAND]                 this text, or a command's flags\n"
          "\n"
          "`dtf` alone on a terminal starts the REPL.\n",
          f);
}

static void usage_run(FILE *f)
{
    fputs("usage: dtf run SCRIPT [FLAGS] [-- ARGS...]\n"
          "\n"
          "Runs SCRIPT with the dtf.* modules preloaded. Flags may come before or\n"
          "after SCRIPT; ARGS after `--` reach the script as arg[1..] and `...`.\n"
          "\n"
          "  --set KEY=VALUE     override a hyperparameter (repeatable), as helm's --set:\n"
          "                      batchsize, learningrate, trainsteps, epochs, model,\n"
          "                      modelfile, datadir, logdir, logevery, seed, optimizer,\n"
          "                      sync, replicas_to_aggregate, checkpoint_dir, ...\n"
          "                      (`dtf run train.lua --set help=true` lists them all)\n"
          "  --config FILE       a Lua file returning a table of hyperparameters,\n"
          "                      applied before --set (the chart's ConfigMap uses it)\n"
          "  --role=ps|worker    this task's role; none trains in one process\n"
          "  --index=N           this task's index among its role (0-based)\n"
          "  --ps=H:P,...        the ps tasks' addresses\n"
          "  --workers=H:P,...   the worker tasks' addresses\n"
          "  --token-file=FILE   the cluster's shared token (else $DTF_TOKEN)\n"
          "\n"
          "Without flags the cluster comes from $DTF_CLUSTER, then $TF_CONFIG (Kubeflow's\n"
          "TFJob format); the index from $JOB_COMPLETION_INDEX or the hostname's ordinal.\n"
          "Lua modules are found next to the binary and in $DTF_PATH (colon-separated).\n"
          "Exit status: 0 success, 1 a runtime or Lua error, 2 bad usage.\n",
          f);
}

static void usage_repl(FILE *f)
{
    fputs("usage: dtf repl [--ps=H:P,...] [--workers=H:P,...] [--token-file=FILE] [--set KEY=VALUE]...\n"
          "\n"
          "An interactive Lua 5.4 prompt with tensor, nn, optim, data, ps, ckpt loaded as\n"
          "globals. With --ps it can reach a running cluster: cluster.step(),\n"
          "cluster.stats(), cluster.pull(), cluster.evaluate() (see README).\n"
          "Ctrl-C interrupts a running statement; Ctrl-D exits.\n",
          f);
}

static void usage_export(FILE *f)
{
    fputs("usage: dtf export CKPT_DIR OUT.safetensors\n"
          "\n"
          "Merges the newest checkpoint of every ps shard in CKPT_DIR into one\n"
          "safetensors file holding the model's tensors under their layer names.\n",
          f);
}

static int usage_error(const char *cmd, const char *fmt, ...) DTF_PRINTF(2, 3);

/* Prints "dtf CMD: MESSAGE (see `dtf help CMD`)" and returns exit status 2. */
static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dtf %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see `dtf help %s`)\n", cmd);
    va_end(ap);
    return DTF_EXIT_USAGE;
}

/* Parses the flags `run` and `repl` share. Non-flag words go to *rest (the
 * script first); everything after `--` too. Returns 0, or an exit status. */
typedef struct parsed {
    dtf_cli cli;
    const char *set[MAX_SET];
    char *rest[256];
    int nrest;
    int ndash; /* index in rest where `--` arguments start, -1 if none */
} parsed;

static int take_value(const char *cmd, int argc, char **argv, int *i, const char *name,
                      const char **out)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (a[n] == '=') {
        *out = a + n + 1;
    } else if (*i + 1 < argc) {
        *out = argv[++*i];
    } else {
        return usage_error(cmd, "flag %s needs a value", name);
    }
    if (!**out)
        return usage_error(cmd, "flag %s has an empty value", name);
    return 0;
}

static int parse_flags(const char *cmd, int argc, char **argv, parsed *p)
{
    static const char *const valued[] = {"--role", "--index", "--ps", "--workers",
                                         "--token-file", "--config", "--set"};
    memset(p, 0, sizeof *p);
    p->cli.set = p->set;
    p->ndash = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            p->ndash = p->nrest;
            for (i++; i < argc; i++) {
                if (p->nrest >= (int)(sizeof p->rest / sizeof p->rest[0]))
                    return usage_error(cmd, "too many arguments");
                p->rest[p->nrest++] = argv[i];
            }
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (p->nrest >= (int)(sizeof p->rest / sizeof p->rest[0]))
                return usage_error(cmd, "too many arguments");
            p->rest[p->nrest++] = argv[i];
            continue;
        }
        const char *name = NULL;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
            size_t n = strlen(valued[k]);
            if (strncmp(a, valued[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                name = valued[k];
                break;
            }
        }
        if (!name)
            return usage_error(cmd, "unknown flag '%s'", a);
        const char *v = NULL;
        int rc = take_value(cmd, argc, argv, &i, name, &v);
        if (rc)
            return rc;
        if (strcmp(name, "--set") == 0) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v)
                return usage_error(cmd, "--set '%s' is not KEY=VALUE", v);
            if (p->cli.nset >= MAX_SET)
                return usage_error(cmd, "too many --set flags");
            p->set[p->cli.nset++] = v;
        } else if (strcmp(name, "--role") == 0) {
            if (strcmp(v, "ps") != 0 && strcmp(v, "worker") != 0)
                return usage_error(cmd, "--role '%s' is neither ps nor worker", v);
            p->cli.role = v;
        } else if (strcmp(name, "--index") == 0) {
            char *end;
            long idx = strtol(v, &end, 10);
            if (*end || idx < 0 || idx > 100000)
                return usage_error(cmd, "--index '%s' is not a non-negative integer", v);
            p->cli.index = v;
        } else if (strcmp(name, "--ps") == 0) {
            p->cli.ps = v;
        } else if (strcmp(name, "--workers") == 0) {
            p->cli.workers = v;
        } else if (strcmp(name, "--token-file") == 0) {
            p->cli.token_file = v;
        } else {
            p->cli.config = v;
        }
    }
    return 0;
}

static int cmd_run(const char *argv0, int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage_run(stdout);
            return DTF_EXIT_OK;
        }
    parsed p;
    int rc = parse_flags("run", argc, argv, &p);
    if (rc)
        return rc;
    if (p.nrest == 0 || p.ndash == 0)
        return usage_error("run", "needs a SCRIPT");
    const char *script = p.rest[0];
    if (access(script, R_OK) != 0) {
        fprintf(stderr, "dtf run: cannot read script '%s'\n", script);
        return DTF_EXIT_USAGE;
    }
    lua_State *L = dtf_host_new(argv0, &p.cli);
    if (!L)
        return DTF_EXIT_FAIL;
    rc = dtf_host_run_file(L, script, p.nrest - 1, p.rest + 1);
    lua_close(L);
    return rc;
}

static int cmd_repl(const char *argv0, int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage_repl(stdout);
            return DTF_EXIT_OK;
        }
    parsed p;
    int rc = parse_flags("repl", argc, argv, &p);
    if (rc)
        return rc;
    if (p.nrest > 0)
        return usage_error("repl", "unexpected argument '%s'", p.rest[0]);
    lua_State *L = dtf_host_new(argv0, &p.cli);
    if (!L)
        return DTF_EXIT_FAIL;
    /* dtf.repl sets the REPL's globals (modules, and `cluster` with --ps). */
    lua_getglobal(L, "require");
    lua_pushstring(L, "dtf.repl");
    rc = dtf_host_report(L, dtf_host_docall(L, 1, 0), "dtf repl");
    if (rc == DTF_EXIT_OK)
        rc = dtf_repl(L);
    lua_close(L);
    return rc;
}

static int cmd_export(const char *argv0, int argc, char **argv)
{
    if (argc == 1 && (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0)) {
        usage_export(stdout);
        return DTF_EXIT_OK;
    }
    if (argc != 2)
        return usage_error("export", "needs CKPT_DIR and OUT.safetensors");
    lua_State *L = dtf_host_new(argv0, NULL);
    if (!L)
        return DTF_EXIT_FAIL;
    lua_getglobal(L, "require");
    lua_pushstring(L, "dtf.export");
    int status = dtf_host_docall(L, 1, 1);
    if (status == LUA_OK) {
        lua_pushstring(L, argv[0]);
        lua_pushstring(L, argv[1]);
        status = dtf_host_docall(L, 2, 0);
    }
    int rc = dtf_host_report(L, status, "dtf export");
    lua_close(L);
    return rc;
}

static int cmd_help(int argc, char **argv)
{
    if (argc == 0) {
        usage_main(stdout);
        return DTF_EXIT_OK;
    }
    const char *c = argv[0];
    if (strcmp(c, "run") == 0)
        usage_run(stdout);
    else if (strcmp(c, "local") == 0)
        dtf_local_usage(stdout);
    else if (strcmp(c, "repl") == 0)
        usage_repl(stdout);
    else if (strcmp(c, "export") == 0)
        usage_export(stdout);
    else if (strcmp(c, "version") == 0 || strcmp(c, "help") == 0)
        usage_main(stdout);
    else
        return usage_error("help", "unknown command '%s'", c);
    return DTF_EXIT_OK;
}

int main(int argc, char **argv)
{
    /* Before anything else: the BLAS core (may re-exec this program, see
     * blas.h) and flushed subnormals (train.lua's denormals=keep undoes it). */
    const char *blas_warning = dtf_blas_setup(argv);
    if (blas_warning)
        fprintf(stderr, "dtf: warning: %s\n", blas_warning);
    dtf_fp_flush_denormals(1);
    const char *argv0 = argv[0];
    if (argc < 2) {
        if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO))
            return cmd_repl(argv0, 0, NULL);
        usage_main(stderr);
        return DTF_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    int n = argc - 2;
    char **rest = argv + 2;
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argv0, n, rest);
    if (strcmp(cmd, "local") == 0)
        return dtf_local_main(argv0, n, rest);
    if (strcmp(cmd, "repl") == 0)
        return cmd_repl(argv0, n, rest);
    if (strcmp(cmd, "export") == 0)
        return cmd_export(argv0, n, rest);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("dtf %s (%s)\nBLAS: %s\n", DTF_VERSION, LUA_RELEASE, dtf_blas_info());
        return DTF_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return cmd_help(n, rest);
    fprintf(stderr, "dtf: unknown command '%s' (see `dtf help`)\n", cmd);
    return DTF_EXIT_USAGE;
}
