/* local: `dtf local SCRIPT --ps=N --workers=M`, the whole cluster on one
 * machine (see local.h).
 *
 * One supervisor loop: poll() over every task's output pipe and a
 * self-pipe that the signal handlers write to (SIGCHLD, SIGINT, SIGTERM,
 * SIGHUP), then reap with waitpid(WNOHANG). Each task runs in its own
 * process group with PR_SET_PDEATHSIG, so a Ctrl-C at the terminal reaches
 * only the supervisor (which stops the tasks in order) and a SIGKILLed
 * supervisor still takes its tasks down. */
#include "local.h"
#include "progress.h"

#include "cli.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#define MAX_TASKS      256
#define MAX_LINE       65536   /* a longer line is emitted in pieces */
#define STOP_GRACE_S   5.0     /* SIGTERM, then SIGKILL after this */
#define RESTART_DELAY  0.5     /* seconds before a failed task restarts */
#define READY_FD       3       /* a task's ready pipe ($DTF_READY_FD, util.ready()) */
#define READY_FD_STR   "3"

/* ---- options ------------------------------------------------------------ */

typedef struct opts {
    const char *script;
    int nps, nworkers, restarts, port_base;
    int ps_grace;                  /* seconds a ps may outlive the workers */
    const char *host;
    const char *config;            /* --config, passed to every task */
    const char *token_file;        /* --token-file, passed to every task */
    dtf_strlist set;               /* --set KEY=VALUE, passed to every task */
    char **args;                   /* after `--` */
    int nargs;
} opts;

void dtf_local_usage(FILE *f)
{
    fputs(
"usage: dtf local SCRIPT --ps=N --workers=M [options] [-- ARGS]\n"
"\n"
"Runs the whole cluster on this machine: N ps tasks and M worker tasks,\n"
"each `dtf run SCRIPT --role=... --index=...` on a loopback port. Every\n"
"line a task prints is prefixed with its name (ps0 | , worker1 | ).\n"
"A task that fails once it is up is restarted with the same command line,\n"
"like a pod.\n"
"\n"
"options:\n"
"  --ps=N              number of ps tasks (N >= 1)\n"
"  --workers=M         number of worker tasks (M >= 1)\n"
"  --set KEY=VALUE     passed to every task (repeatable)\n"
"  --config FILE       passed to every task\n"
"  --restarts=K        restarts allowed per task before the run fails (3)\n"
"  --port-base=P       use ports P, P+1, ...: the tasks', then their metrics\n"
"                      ports (default: free ports)\n"
"  --host=ADDR         address the tasks listen on (127.0.0.1; each ps binds\n"
"                      only it unless the tasks are given bind=all)\n"
"  --token-file=FILE   the cluster's token, passed to every task (default:\n"
"                      $DTF_TOKEN, else a random one made for the run)\n"
"  --ps-grace=S        seconds a ps may keep running after the last worker\n"
"                      finished before the run fails (30)\n"
"  -- ARGS             passed to the script as arg[1..]\n"
"\n"
"Each task gets DTF_TASK (ps0, worker1), DTF_RESTART (0, 1, ...) and\n"
"DTF_METRICS_PORT (a free port: train.lua's metrics_port) in its environment.\n"
"On a terminal the tasks' step lines fold into one status line\n"
"(--set progress=false: the lines as they are). A task that exits 2 (bad\n"
"usage) or fails before it is up (a ps serving, a worker past its first\n"
"step) is not restarted: the run stops with its status. Exit status: 0 when\n"
"every task finished with status 0, 1 when a task failed, 2 on bad usage,\n"
"130 on Ctrl-C.\n",
        f);
}

/* Reads the flags into o; 0, or the exit status of a usage error. */
static int parse_opts(opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->nps = o->nworkers = -1;
    o->restarts = 3;
    o->ps_grace = 30;
    o->host = "127.0.0.1";
    o->set = (dtf_strlist){calloc((size_t)argc + 1, sizeof(char *)), 0, argc + 1};
    if (!o->set.v)
        return dtf_usage_error("local", "out of memory");
    const dtf_flag flags[] = {
        {"--ps", DTF_FLAG_INT, &o->nps, 1, MAX_TASKS, NULL, "a number of tasks"},
        {"--workers", DTF_FLAG_INT, &o->nworkers, 1, MAX_TASKS, NULL, "a number of tasks"},
        {"--restarts", DTF_FLAG_INT, &o->restarts, 0, 1000, NULL, "a number"},
        {"--port-base", DTF_FLAG_INT, &o->port_base, 1, 65535, NULL, "a port"},
        {"--ps-grace", DTF_FLAG_INT, &o->ps_grace, 0, 86400, NULL, "a number of seconds"},
        {"--host", DTF_FLAG_STRING, &o->host, 0, 0, NULL, NULL},
        {"--config", DTF_FLAG_STRING, &o->config, 0, 0, NULL, NULL},
        {"--token-file", DTF_FLAG_STRING, &o->token_file, 0, 0, NULL, NULL},
        {"--set", DTF_FLAG_KV, &o->set, 0, 0, NULL, NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    dtf_args args;
    int rc = dtf_cli_parse("local", flags, argc, argv, &args);
    if (rc)
        return rc;
    o->script = args.nwords ? args.words[0] : NULL;
    o->args = args.after;
    o->nargs = args.nafter;
    if (args.nwords > 1)
        rc = dtf_usage_error("local", "unexpected argument '%s' (script arguments go after '--')",
                             args.words[1]);
    free(args.words);
    if (rc)
        return rc;
    if (!o->script)
        return dtf_usage_error("local", "missing SCRIPT");
    if (o->nps < 0)
        return dtf_usage_error("local", "missing --ps=N");
    if (o->nworkers < 0)
        return dtf_usage_error("local", "missing --workers=M");
    if (o->nps + o->nworkers > MAX_TASKS)
        return dtf_usage_error("local", "at most %d tasks", MAX_TASKS);
    if (o->port_base && o->port_base + 2 * (o->nps + o->nworkers) - 1 > 65535)
        return dtf_usage_error("local", "--port-base=%d leaves too few ports for %d tasks",
                               o->port_base, o->nps + o->nworkers);
    return 0;
}

/* ---- ports -------------------------------------------------------------- */

/* Binds n sockets to port 0 on host, all open at once so the ports differ,
 * reads the ports and closes them. */
static int pick_ports(const char *host, int n, int *ports)
{
    struct addrinfo hints, *ai = NULL;
    int *fds, i, rc = 0, gai;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    gai = getaddrinfo(host, "0", &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "local: cannot resolve --host=%s: %s\n", host,
                gai_strerror(gai));
        return -1;
    }
    fds = malloc((size_t)n * sizeof *fds);
    if (!fds) {
        freeaddrinfo(ai);
        return -1;
    }
    for (i = 0; i < n; i++)
        fds[i] = -1;
    for (i = 0; i < n && rc == 0; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        fds[i] = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], ai->ai_addr, ai->ai_addrlen) < 0 ||
            getsockname(fds[i], (struct sockaddr *)&ss, &len) < 0) {
            fprintf(stderr, "local: cannot bind a port on %s: %s\n", host,
                    strerror(errno));
            rc = -1;
        } else if (ss.ss_family == AF_INET6) {
            ports[i] = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            ports[i] = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    for (i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    freeaddrinfo(ai);
    return rc;
}

/* "h:p0,h:p1,..." for count ports (IPv6 hosts in brackets). */
static char *addr_list(const char *host, const int *ports, int count)
{
    int bracket = strchr(host, ':') != NULL;
    size_t cap = (size_t)count * (strlen(host) + 10) + 1, len = 0;
    char *s = malloc(cap);
    int i;
    if (!s)
        return NULL;
    s[0] = '\0';
    for (i = 0; i < count; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%s%s%s:%d",
                                i ? "," : "", bracket ? "[" : "", host,
                                bracket ? "]" : "", ports[i]);
    return s;
}

/* ---- signals ------------------------------------------------------------ */

static int wake_fds[2] = {-1, -1};
static volatile sig_atomic_t got_stop;    /* the signal that asks us to stop */
static volatile sig_atomic_t stop_count;  /* how many such signals so far */

static void on_signal(int sig)
{
    int e = errno;
    char c = 0;
    if (sig != SIGCHLD) {
        got_stop = sig;
        stop_count++;
    }
    if (wake_fds[1] >= 0 && write(wake_fds[1], &c, 1) < 0) {
        /* full pipe: a wakeup is already pending */
    }
    errno = e;
}

static const int handled[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP};
#define NHANDLED ((int)(sizeof handled / sizeof handled[0]))

/* ---- tasks -------------------------------------------------------------- */

typedef struct task {
    char name[32];       /* ps0, worker1 */
    int is_ps;
    char **argv;         /* the `dtf run` command line; owned */
    pid_t pid;           /* 0: not running */
    int fd;              /* read end of its output pipe; -1: closed */
    int ready_fd;        /* read end of its ready pipe ($DTF_READY_FD); -1: closed */
    int ready;           /* it said it is up (a ps serves, a worker trained a step) */
    char *buf;           /* the partial line read so far (MAX_LINE) */
    size_t len;
    int metrics_port;    /* DTF_METRICS_PORT, the metrics_port default */
    int restarts;        /* restarts used */
    int done;            /* exited with status 0 */
    double restart_at;   /* > 0: restart due at this time */
} task;

typedef struct sup {
    const char *exe;
    task *t;
    int n;
    int width;           /* the longest task name: prefixes line up */
    int exit_status;     /* a task's failure that stops the run: its status */
    int max_restarts;
    int stopping;        /* stop_all() has begun: exits are expected */
    int failed;          /* a task failed past its restarts */
} sup;

static int prefix_width;  /* the longest task name (sup.width), for emit */

/* Writes "name    | line\n" (names padded to line up) with one write() so
 * that lines never interleave; a step line goes into the status line
 * instead, on a terminal. */
static void emit(const task *t, const char *line, size_t n)
{
    if (dtf_fold_line(t->name, line, n))
        return;
    size_t name = strlen(t->name), w = (size_t)prefix_width > name ? (size_t)prefix_width : name;
    size_t plen = w + 3;
    char *out = malloc(plen + n + 1);
    if (!out)
        return;
    memcpy(out, t->name, name);
    memset(out + name, ' ', w - name);
    memcpy(out + w, " | ", 3);
    memcpy(out + plen, line, n);
    out[plen + n] = '\n';
    dtf_status_write(out, plen + n + 1); /* above the status line, if any */
    free(out);
}

/* Appends n bytes of output and emits every whole line. */
static void take_output(task *t, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        if (t->len + k > MAX_LINE) {             /* too long: emit a piece */
            k = MAX_LINE - t->len;
            nl = NULL;
        }
        memcpy(t->buf + t->len, p, k);
        t->len += k;
        p += k;
        n -= k;
        if (nl) {
            p++;
            n--;
        }
        if (nl || t->len == MAX_LINE) {
            if (t->len > 0 && t->buf[t->len - 1] == '\r')
                t->len--;
            emit(t, t->buf, t->len);
            t->len = 0;
        }
    }
}

static void close_output(task *t)
{
    if (t->fd < 0)
        return;
    if (t->len > 0) {                            /* the partial last line */
        emit(t, t->buf, t->len);
        t->len = 0;
    }
    close(t->fd);
    t->fd = -1;
}

static void close_ready(task *t)
{
    if (t->ready_fd >= 0)
        close(t->ready_fd);
    t->ready_fd = -1;
}

/* The task wrote to its ready pipe (or closed it: exec'd or gone). */
static void read_ready(task *t)
{
    char c;
    ssize_t r = read(t->ready_fd, &c, 1);
    if (r > 0)
        t->ready = 1;
    if (r >= 0 || errno != EAGAIN)
        close_ready(t);
}

/* Reads what is there; closes the pipe at EOF. Returns bytes read. */
static ssize_t read_output(task *t)
{
    char chunk[16384];
    ssize_t r;
    do
        r = read(t->fd, chunk, sizeof chunk);
    while (r < 0 && errno == EINTR);
    if (r > 0)
        take_output(t, chunk, (size_t)r);
    else if (r == 0 || errno != EAGAIN)
        close_output(t);
    return r;
}

static int spawn(sup *s, task *t)
{
    int p[2];
    pid_t parent = getpid(), pid;
    char restart[16];

    int rp[2];
    if (t->fd >= 0)                 /* a grandchild still holds the old pipe */
        close_output(t);
    close_ready(t);
    if (pipe2(p, O_CLOEXEC) < 0 || pipe2(rp, O_CLOEXEC) < 0) {
        fprintf(stderr, "local: cannot start %s: pipe: %s\n", t->name,
                strerror(errno));
        return -1;
    }
    snprintf(restart, sizeof restart, "%d", t->restarts);
    char mport[16];
    snprintf(mport, sizeof mport, "%d", t->metrics_port);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "local: cannot start %s: fork: %s\n", t->name,
                strerror(errno));
        close(p[0]);
        close(p[1]);
        close(rp[0]);
        close(rp[1]);
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        int i, nul;
        setpgid(0, 0);
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
            _exit(127);             /* the supervisor is already gone */
        for (i = 0; i < NHANDLED; i++)
            signal(handled[i], SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        nul = open("/dev/null", O_RDONLY);
        if (nul >= 0 && nul != STDIN_FILENO) {
            dup2(nul, STDIN_FILENO);
            close(nul);
        }
        if (dup2(p[1], STDOUT_FILENO) < 0 || dup2(p[1], STDERR_FILENO) < 0)
            _exit(127);
        /* the ready pipe as fd 3, kept across exec (dup2 clears CLOEXEC) */
        if (rp[1] == READY_FD ? fcntl(READY_FD, F_SETFD, 0) < 0 : dup2(rp[1], READY_FD) < 0)
            _exit(127);
        setenv("DTF_READY_FD", READY_FD_STR, 1);
        setenv("DTF_TASK", t->name, 1);
        setenv("DTF_RESTART", restart, 1);
        setenv("DTF_METRICS_PORT", mport, 1);
        execv(s->exe, t->argv);
        dprintf(STDERR_FILENO, "local: cannot run %s: %s\n", s->exe,
                strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);              /* also here, so kill(-pid) never races */
    close(p[1]);
    close(rp[1]);
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    fcntl(rp[0], F_SETFL, fcntl(rp[0], F_GETFL) | O_NONBLOCK);
    t->fd = p[0];
    t->ready_fd = rp[0];
    t->ready = 0;
    t->pid = pid;
    t->len = 0;
    t->restart_at = 0;
    return 0;
}

/* Signals the task's process group (it and anything it started), or the task
 * alone while its setpgid has not happened yet; once, not both: a ps
 * stopping on the first SIGTERM is writing its last checkpoint when a
 * second one comes. */
static void signal_task(task *t, int sig)
{
    if (t->pid > 0 && kill(-t->pid, sig) < 0)
        kill(t->pid, sig);
}

static void describe(int status, char *out, size_t n)
{
    if (WIFEXITED(status))
        snprintf(out, n, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, n, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, n, "stopped with wait status %d", status);
}

static task *find_pid(sup *s, pid_t pid)
{
    int i;
    for (i = 0; i < s->n; i++)
        if (s->t[i].pid == pid)
            return &s->t[i];
    return NULL;
}

static void on_exit_status(sup *s, task *t, int status)
{
    char what[96];

    /* Everything the task wrote is in the pipe now; a grandchild that
     * still holds it open is not waited for. */
    while (t->fd >= 0 && read_output(t) > 0)
        ;
    close_output(t);
    t->pid = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        t->done = 1;
        return;
    }
    if (t->ready_fd >= 0)
        read_ready(t);              /* it may have said so just before it exited */
    if (s->stopping)
        return;
    describe(status, what, sizeof what);
    dtf_fold_pause(); /* the message goes on a line of its own */
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code == 2 || !t->ready) {
        /* A usage error, or a failure before the task was up (bad data, a
         * model that does not build, a port in use): a restart would fail
         * the same way. */
        fprintf(stderr, "local: %s %s %s; not restarting it (it would fail the same way); "
                "stopping the run\n", t->name, what,
                code == 2 ? "(a usage error)" : "before it was up");
        s->failed = 1;
        s->exit_status = code == 2 ? 2 : 1;
        return;
    }
    if (t->restarts < s->max_restarts) {
        t->restarts++;
        fprintf(stderr, "local: %s %s, restarting (%d of %d)\n", t->name,
                what, t->restarts, s->max_restarts);
        t->restart_at = dtf_now() + RESTART_DELAY;
    } else {
        fprintf(stderr, "local: %s %s and has no restarts left (%d used); "
                "stopping the run\n", t->name, what, t->restarts);
        s->failed = 1;
    }
}

static int running(const sup *s)
{
    int i, k = 0;
    for (i = 0; i < s->n; i++)
        k += s->t[i].pid > 0;
    return k;
}

/* One turn of the loop: waits up to timeout_ms for output, a signal or a
 * child's exit, then handles all of them. */
static void pump(sup *s, int timeout_ms)
{
    struct pollfd pf[2 * MAX_TASKS + 1];
    task *who[2 * MAX_TASKS + 1];
    int is_ready[2 * MAX_TASKS + 1];
    int i, k = 0, st;
    pid_t pid;

    pf[k].fd = wake_fds[0];
    pf[k].events = POLLIN;
    is_ready[k] = 0;
    who[k++] = NULL;
    for (i = 0; i < s->n; i++) {
        if (s->t[i].fd >= 0) {
            pf[k].fd = s->t[i].fd;
            pf[k].events = POLLIN;
            is_ready[k] = 0;
            who[k++] = &s->t[i];
        }
        if (s->t[i].ready_fd >= 0) {
            pf[k].fd = s->t[i].ready_fd;
            pf[k].events = POLLIN;
            is_ready[k] = 1;
            who[k++] = &s->t[i];
        }
    }
    if (poll(pf, (nfds_t)k, timeout_ms) > 0) {
        for (i = 0; i < k; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (who[i] && is_ready[i]) {
                read_ready(who[i]);
            } else if (who[i]) {
                read_output(who[i]);
            } else {
                char drain[64];
                while (read(wake_fds[0], drain, sizeof drain) > 0)
                    ;
            }
        }
    }
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        task *t = find_pid(s, pid);
        if (t)
            on_exit_status(s, t, st);
    }
}

/* SIGTERM to every task, SIGKILL to those still there after STOP_GRACE_S
 * (or at once on a second Ctrl-C); returns once all are reaped. */
static void stop_all(sup *s)
{
    double deadline = dtf_now() + STOP_GRACE_S;
    int i, killed = 0, count0 = stop_count;

    s->stopping = 1;
    for (i = 0; i < s->n; i++) {
        s->t[i].restart_at = 0;
        signal_task(&s->t[i], SIGTERM);
    }
    while (running(s) > 0) {
        if (!killed && (dtf_now() >= deadline || stop_count > count0)) {
            for (i = 0; i < s->n; i++)
                if (s->t[i].pid > 0) {
                    fprintf(stderr, "local: %s did not stop; killing it\n",
                            s->t[i].name);
                    signal_task(&s->t[i], SIGKILL);
                }
            killed = 1;
        }
        pump(s, 100);
    }
    for (i = 0; i < s->n; i++)
        close_output(&s->t[i]);
}

/* ---- the run ------------------------------------------------------------ */

static void free_argv(char **v)
{
    int i;
    if (!v)
        return;
    for (i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

static char *cat2(const char *a, const char *b)
{
    char *s = malloc(strlen(a) + strlen(b) + 1);
    if (s) {
        strcpy(s, a);
        strcat(s, b);
    }
    return s;
}

/* exe run SCRIPT --role=R --index=I --ps=... --workers=... [pass] [-- args];
 * NULL when memory runs out. */
static char **task_argv(const sup *s, const opts *o, const char *role,
                        int index, const char *ps, const char *workers)
{
    int n = 7 + 2 + 1 + o->set.n + 1 + o->nargs, k = 0, i, ok = 1;
    char **v = calloc((size_t)n + 1, sizeof *v);
    char buf[32];
    if (!v)
        return NULL;
#define ADD(expr) do { if (ok && !(v[k++] = (expr))) ok = 0; } while (0)
    ADD(strdup(s->exe));
    ADD(strdup("run"));
    ADD(strdup(o->script));
    ADD(cat2("--role=", role));
    snprintf(buf, sizeof buf, "%d", index);
    ADD(cat2("--index=", buf));
    ADD(cat2("--ps=", ps));
    ADD(cat2("--workers=", workers));
    if (o->config)
        ADD(cat2("--config=", o->config)); /* applied before every --set */
    if (o->token_file)
        ADD(cat2("--token-file=", o->token_file));
    for (i = 0; i < o->set.n; i++)
        ADD(cat2("--set=", o->set.v[i]));
    if (o->nargs > 0) {
        ADD(strdup("--"));
        for (i = 0; i < o->nargs; i++)
            ADD(strdup(o->args[i]));
    }
#undef ADD
    if (!ok) {
        free_argv(v);
        return NULL;
    }
    return v;
}

static int supervise_loop(sup *s, double ps_grace)
{
    double ps_deadline = 0;
    int i;

    for (i = 0; i < s->n; i++)       /* ps tasks come first in s->t */
        if (spawn(s, &s->t[i]) < 0) {
            stop_all(s);
            return 1;
        }
    for (;;) {
        double now, next = 0;
        int workers_left = 0, left = 0, timeout;

        if (got_stop) {
            int sig = got_stop;
            dtf_fold_end();
            fprintf(stderr, "local: %s, stopping every task\n",
                    strsignal(sig));
            stop_all(s);
            return 128 + sig;
        }
        if (s->failed) {
            stop_all(s);
            return s->exit_status ? s->exit_status : 1;
        }
        now = dtf_now();
        for (i = 0; i < s->n; i++) {
            task *t = &s->t[i];
            if (t->restart_at > 0 && now >= t->restart_at &&
                spawn(s, t) < 0) {
                stop_all(s);
                return 1;
            }
            if (t->restart_at > 0 && (next == 0 || t->restart_at < next))
                next = t->restart_at;
            left += !t->done;
            workers_left += !t->is_ps && !t->done;
        }
        if (left == 0) {
            dtf_fold_end();
            fprintf(stderr, "local: every task finished\n");
            return 0;
        }
        if (workers_left == 0) {
            if (ps_deadline == 0)
                ps_deadline = now + ps_grace;
            if (now >= ps_deadline) {
                dtf_fold_end();
                for (i = 0; i < s->n; i++)
                    if (!s->t[i].done)
                        fprintf(stderr, "local: %s is still running %g s "
                                "after the last worker finished; stopping "
                                "it\n", s->t[i].name, ps_grace);
                stop_all(s);
                return 1;
            }
            if (next == 0 || ps_deadline < next)
                next = ps_deadline;
        }
        timeout = dtf_fold_interval_ms(1000);
        if (next > 0) {
            double ms = (next - now) * 1000 + 1;
            timeout = ms < 0 ? 0 : ms < timeout ? (int)ms : timeout;
        }
        pump(s, timeout);
        dtf_fold_tick();
    }
}

/* The run, with the tasks' step lines folded into a status line on a terminal. */
static int supervise(sup *s, const opts *o)
{
    dtf_fold_start(o->set.n, o->set.v);
    int rc = supervise_loop(s, o->ps_grace);
    dtf_fold_end();
    return rc;
}

/* The tasks: ps first, then workers, each with its command line and a
 * metrics port. -1 on failure (said on stderr). */
static int make_tasks(sup *s, const opts *o)
{
    int n = o->nps + o->nworkers, rc = -1;
    int *ports = calloc((size_t)n * 2, sizeof *ports); /* the tasks', then their metrics ports */
    char *ps = NULL, *workers = NULL;
    s->t = calloc((size_t)n, sizeof *s->t);
    if (!ports || !s->t)
        goto oom;
    if (o->port_base) {
        for (int i = 0; i < 2 * n; i++)
            ports[i] = o->port_base + i;
    } else if (pick_ports(o->host, 2 * n, ports) < 0) {
        goto out;
    }
    ps = addr_list(o->host, ports, o->nps);
    workers = addr_list(o->host, ports + o->nps, o->nworkers);
    if (!ps || !workers)
        goto oom;
    s->n = n;
    s->max_restarts = o->restarts;
    for (int i = 0; i < n; i++) {
        task *t = &s->t[i];
        int is_ps = i < o->nps, index = is_ps ? i : i - o->nps;
        t->is_ps = is_ps;
        t->fd = -1;
        t->ready_fd = -1;
        t->metrics_port = ports[n + i];
        snprintf(t->name, sizeof t->name, "%s%d", is_ps ? "ps" : "worker", index);
        t->argv = task_argv(s, o, is_ps ? "ps" : "worker", index, ps, workers);
        t->buf = malloc(MAX_LINE);
        if (!t->argv || !t->buf)
            goto oom;
    }
    for (int i = 0; i < n; i++)
        if ((int)strlen(s->t[i].name) > s->width)
            s->width = (int)strlen(s->t[i].name);
    prefix_width = s->width;
    fprintf(stderr, "local: %d ps (%s), %d worker%s (%s)\n", o->nps, ps, o->nworkers,
            o->nworkers == 1 ? "" : "s", workers);
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "dtf local: out of memory\n");
out:
    free(ports);
    free(ps);
    free(workers);
    return rc;
}

static void free_tasks(sup *s)
{
    if (s->t)
        for (int i = 0; i < s->n; i++) {
            free_argv(s->t[i].argv);
            free(s->t[i].buf);
            close_ready(&s->t[i]);
        }
    free(s->t);
    s->t = NULL;
}

/* Without a token (no --token-file, no $DTF_TOKEN) the run gets a random
 * one in $DTF_TOKEN, which every task inherits: a developer's run on a
 * shared machine takes no gradients from another user's process. 0, or -1
 * when no randomness could be read. */
static int make_token(const opts *o)
{
    const char *t = getenv("DTF_TOKEN");
    if (o->token_file || (t && *t))
        return 0;
    unsigned char r[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, r, sizeof r) : -1;
    if (fd >= 0)
        close(fd);
    if (n != (ssize_t)sizeof r) {
        fprintf(stderr, "dtf local: cannot read /dev/urandom for the run's token: %s\n",
                strerror(errno));
        return -1;
    }
    char hex[2 * sizeof r + 1];
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    setenv("DTF_TOKEN", hex, 1);
    fprintf(stderr, "local: no token given: made one for this run (the tasks get it in "
            "$DTF_TOKEN)\n");
    return 0;
}

/* Supervises the tasks with the signal handlers installed (and the old
 * ones back afterwards). */
static int run_supervised(sup *s, const opts *o)
{
    struct sigaction sa, old[NHANDLED];
    if (pipe2(wake_fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        fprintf(stderr, "local: pipe: %s\n", strerror(errno));
        return 1;
    }
    got_stop = 0;
    stop_count = 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    for (int i = 0; i < NHANDLED; i++)
        sigaction(handled[i], &sa, &old[i]);
    int rc = supervise(s, o);
    for (int i = 0; i < NHANDLED; i++)
        sigaction(handled[i], &old[i], NULL);
    close(wake_fds[0]);
    close(wake_fds[1]);
    wake_fds[0] = wake_fds[1] = -1;
    return rc;
}

int dtf_local_main(const char *argv0, int argc, char **argv)
{
    if (dtf_cli_wants_help(argc, argv)) {
        dtf_local_usage(stdout);
        return 0;
    }
    opts o;
    int rc = parse_opts(&o, argc, argv);
    if (rc) {
        free(o.set.v);
        return rc;
    }
    sup s;
    memset(&s, 0, sizeof s);
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        s.exe = exe;
    } else {
        s.exe = argv0;
    }
    if (access(o.script, R_OK) < 0) {
        fprintf(stderr, "dtf local: cannot read %s: %s\n", o.script, strerror(errno));
        rc = 1;
    } else {
        rc = make_token(&o) < 0 || make_tasks(&s, &o) < 0 ? 1 : run_supervised(&s, &o);
    }
    free_tasks(&s);
    free(o.set.v);
    return rc;
}
