/* main: the dtf command. Parses subcommands and flags, runs the host, and is
 * the only place that picks an exit status (0 ok, 1 failure, 2 usage). */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas.h"
#include "cli.h"
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
          "  predict MODEL.safetensors IMAGES [--labels LABELS]\n"
          "                                 classify images with a saved model\n"
          "  plot LOGDIR [-o FILE.svg]      draw a training's TensorBoard scalars as an SVG\n"
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
    fputs("usage: dtf repl [--ps=H:P,...] [--token-file=FILE] [--config FILE] [--set KEY=VALUE]...\n"
          "\n"
          "An interactive Lua 5.4 prompt with tensor, nn, optim, data, ps, ckpt loaded as\n"
          "globals; help() lists them, help(x) says what x is. With --ps it can reach a\n"
          "running cluster: cluster.step(), cluster.stats(), cluster.pull(),\n"
          "cluster.evaluate() (see README); --config (the file the tasks were given) and\n"
          "--set give the training's hyperparameters, so it builds the same model.\n"
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

static void usage_plot(FILE *f)
{
    fputs("usage: dtf plot LOGDIR [-o FILE.svg]\n"
          "\n"
          "Reads the TensorBoard event files under LOGDIR (LOGDIR/tensorboard/TASK/)\n"
          "and draws loss, accuracy and the ps tasks' updates per second against the\n"
          "global step, one line per task, as one SVG (default LOGDIR/plot.svg).\n",
          f);
}

/* The flags `run` and `repl` share, parsed into a dtf_cli for the host. */
typedef struct parsed {
    dtf_cli cli;
    const char *set[MAX_SET];
    dtf_strlist sets;
    char index[16];
    int idx;
    dtf_args args;
} parsed;

static int parse_flags(const char *cmd, int argc, char **argv, parsed *p)
{
    static const char *const roles[] = {"ps", "worker", NULL};
    memset(p, 0, sizeof *p);
    p->idx = -1;
    p->sets = (dtf_strlist){p->set, 0, MAX_SET};
    const dtf_flag flags[] = {
        {"--role", DTF_FLAG_CHOICE, &p->cli.role, 0, 0, roles, "ps or worker"},
        {"--index", DTF_FLAG_INT, &p->idx, 0, 100000, NULL, "a task index"},
        {"--ps", DTF_FLAG_STRING, &p->cli.ps, 0, 0, NULL, NULL},
        {"--workers", DTF_FLAG_STRING, &p->cli.workers, 0, 0, NULL, NULL},
        {"--token-file", DTF_FLAG_STRING, &p->cli.token_file, 0, 0, NULL, NULL},
        {"--config", DTF_FLAG_STRING, &p->cli.config, 0, 0, NULL, NULL},
        {"--set", DTF_FLAG_KV, &p->sets, 0, 0, NULL, NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int rc = dtf_cli_parse(cmd, flags, argc, argv, &p->args);
    p->cli.set = p->set;
    p->cli.nset = p->sets.n;
    if (p->idx >= 0) {
        snprintf(p->index, sizeof p->index, "%d", p->idx);
        p->cli.index = p->index;
    }
    return rc;
}

static int cmd_run(const char *argv0, int argc, char **argv)
{
    if (dtf_cli_wants_help(argc, argv)) {
        usage_run(stdout);
        return DTF_EXIT_OK;
    }
    parsed p;
    int rc = parse_flags("run", argc, argv, &p);
    if (rc == 0 && p.args.nwords == 0)
        rc = dtf_usage_error("run", "needs a SCRIPT");
    if (rc == 0 && access(p.args.words[0], R_OK) != 0) {
        fprintf(stderr, "dtf run: cannot read script '%s'\n", p.args.words[0]);
        rc = DTF_EXIT_USAGE;
    }
    lua_State *L = rc == 0 ? dtf_host_new(argv0, &p.cli) : NULL;
    if (rc == 0 && !L)
        rc = DTF_EXIT_FAIL;
    if (L) {
        /* the script's arguments: the words after it, then those after `--` */
        char **sargs = calloc((size_t)argc + 1, sizeof *sargs);
        int n = 0;
        for (int i = 1; sargs && i < p.args.nwords; i++)
            sargs[n++] = p.args.words[i];
        for (int i = 0; sargs && i < p.args.nafter; i++)
            sargs[n++] = p.args.after[i];
        rc = sargs ? dtf_host_run_file(L, p.args.words[0], n, sargs) : DTF_EXIT_FAIL;
        free(sargs);
        lua_close(L);
    }
    free(p.args.words);
    return rc;
}

static int cmd_repl(const char *argv0, int argc, char **argv)
{
    if (dtf_cli_wants_help(argc, argv)) {
        usage_repl(stdout);
        return DTF_EXIT_OK;
    }
    parsed p;
    int rc = parse_flags("repl", argc, argv, &p);
    if (rc == 0 && (p.args.nwords > 0 || p.args.after))
        rc = dtf_usage_error("repl", "unexpected argument '%s'",
                             p.args.nwords ? p.args.words[0] : "--");
    free(p.args.words);
    if (rc)
        return rc;
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
        return dtf_usage_error("export", "needs CKPT_DIR and OUT.safetensors");
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

static void usage_predict(FILE *f)
{
    fputs("usage: dtf predict MODEL.safetensors IMAGES [--labels LABELS] [--modelfile F]\n"
          "\n"
          "Rebuilds the network MODEL records (train.lua's save=: the model file's source\n"
          "and the hyperparameters; --modelfile gives another model file), classifies\n"
          "every image of the IDX file IMAGES (plain or gzip) and prints one line per\n"
          "image, \"INDEX CLASS\", both 0-based as the labels are. With --labels (an IDX\n"
          "labels file) a last line says \"accuracy A (N images)\".\n",
          f);
}

static int cmd_predict(const char *argv0, int argc, char **argv)
{
    if (dtf_cli_wants_help(argc, argv)) {
        usage_predict(stdout);
        return DTF_EXIT_OK;
    }
    const char *labels = NULL, *modelfile = NULL;
    const dtf_flag flags[] = {
        {"--labels", DTF_FLAG_STRING, &labels, 0, 0, NULL, NULL},
        {"--modelfile", DTF_FLAG_STRING, &modelfile, 0, 0, NULL, NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    dtf_args a;
    int rc = dtf_cli_parse("predict", flags, argc, argv, &a);
    if (rc)
        return rc;
    if (a.nwords != 2 || a.after)
        rc = dtf_usage_error("predict", "needs MODEL.safetensors and IMAGES");
    lua_State *L = rc == 0 ? dtf_host_new(argv0, NULL) : NULL;
    if (L) {
        lua_getglobal(L, "require");
        lua_pushstring(L, "dtf.predict");
        int status = dtf_host_docall(L, 1, 1);
        if (status == LUA_OK) {
            lua_pushstring(L, a.words[0]);
            lua_pushstring(L, a.words[1]);
            lua_pushstring(L, labels);
            lua_pushstring(L, modelfile);
            status = dtf_host_docall(L, 4, 0);
        }
        rc = dtf_host_report(L, status, "dtf predict");
        lua_close(L);
    } else if (rc == 0) {
        rc = DTF_EXIT_FAIL;
    }
    free(a.words);
    return rc;
}

static int cmd_plot(const char *argv0, int argc, char **argv)
{
    if (dtf_cli_wants_help(argc, argv)) {
        usage_plot(stdout);
        return DTF_EXIT_OK;
    }
    const char *out = NULL;
    const dtf_flag flags[] = {
        {"-o", DTF_FLAG_STRING, &out, 0, 0, NULL, NULL},
        {"--output", DTF_FLAG_STRING, &out, 0, 0, NULL, NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    dtf_args a;
    int rc = dtf_cli_parse("plot", flags, argc, argv, &a);
    if (rc)
        return rc;
    if (a.nwords != 1 || a.after)
        rc = dtf_usage_error("plot", a.nwords ? "unexpected argument '%s'" : "needs a LOGDIR%s",
                             a.nwords > 1 ? a.words[1] : "");
    lua_State *L = rc == 0 ? dtf_host_new(argv0, NULL) : NULL;
    if (L) {
        lua_getglobal(L, "require");
        lua_pushstring(L, "dtf.plot");
        int status = dtf_host_docall(L, 1, 1);
        if (status == LUA_OK) {
            lua_pushstring(L, a.words[0]);
            lua_pushstring(L, out);
            status = dtf_host_docall(L, 2, 0);
        }
        rc = dtf_host_report(L, status, "dtf plot");
        lua_close(L);
    } else if (rc == 0) {
        rc = DTF_EXIT_FAIL;
    }
    free(a.words);
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
    else if (strcmp(c, "predict") == 0)
        usage_predict(stdout);
    else if (strcmp(c, "plot") == 0)
        usage_plot(stdout);
    else if (strcmp(c, "version") == 0 || strcmp(c, "help") == 0)
        usage_main(stdout);
    else
        return dtf_usage_error("help", "unknown command '%s'", c);
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
    if (strcmp(cmd, "predict") == 0)
        return cmd_predict(argv0, n, rest);
    if (strcmp(cmd, "plot") == 0)
        return cmd_plot(argv0, n, rest);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("dtf %s (%s)\nBLAS: %s\n", DTF_VERSION, LUA_RELEASE, dtf_blas_info());
        return DTF_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return cmd_help(n, rest);
    fprintf(stderr, "dtf: unknown command '%s' (see `dtf help`)\n", cmd);
    return DTF_EXIT_USAGE;
}
