/* log: formats and writes the seed's log lines (see log.h). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

/* deploy.log may be shared by every task on a node (the chart's hostPath
 * volume), so lines are buffered here and written whole, a batch of lines
 * per write(2) on an O_APPEND descriptor: tasks never split each other's
 * lines, and a line a step costs no system call. The buffer goes out when
 * full, a second after the last write, on warnings, and at close/exit. */
static int logfd = -1;
static char logpath[4096];
static char logbuf[1 << 16];
static size_t loglen;
static double lastflush;
static uint64_t logmax = DTF_LOG_MAX_DEFAULT;

/* ---- rotation ---------------------------------------------------------------------
 *
 * Before a batch would take the file past logmax, deploy.log becomes
 * deploy.log.1 (replacing the previous one) and a fresh deploy.log is
 * opened. Several processes append to the same file, so the check and the
 * rename happen under flock() on the file being rotated: the first one in
 * renames it; any other, once it has the lock, sees that the name now
 * belongs to another file and only reopens it. A process that finds its
 * descriptor no longer under the name (another rotated it) reopens too, so
 * no task keeps writing into deploy.log.1. */

static int open_log(void)
{
    int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (logfd >= 0)
        close(logfd);
    logfd = fd;
    return 0;
}

/* 1 when the name deploy.log still refers to the file logfd has open. */
static int still_named(void)
{
    struct stat a, b;
    return fstat(logfd, &a) == 0 && stat(logpath, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

static void rotate_if_needed(size_t adding)
{
    if (!still_named())
        open_log(); /* rotated by another task, or deleted: follow the name */
    struct stat st;
    if (logmax == 0 || fstat(logfd, &st) != 0 || (uint64_t)st.st_size + adding <= logmax ||
        st.st_size == 0)
        return;
    if (flock(logfd, LOCK_EX) != 0)
        return;
    int fd = logfd;
    if (still_named()) {
        char old[sizeof logpath + 4];
        snprintf(old, sizeof old, "%s.1", logpath);
        rename(logpath, old);
    }
    open_log(); /* closing fd releases the lock */
    if (logfd == fd)
        flock(fd, LOCK_UN); /* the reopen failed: keep writing where we were */
}

static void flush_file(void)
{
    if (logfd >= 0 && loglen > 0)
        rotate_if_needed(loglen);
    size_t done = 0;
    while (logfd >= 0 && done < loglen) {
        ssize_t n = write(logfd, logbuf + done, loglen - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a full disk must not stop training: drop the batch */
        done += (size_t)n;
    }
    loglen = 0;
    lastflush = dtf_now();
}

static void flush_at_exit(void)
{
    flush_file();
    dtf_status_end(1);
}

void dtf_log_set_max(uint64_t bytes)
{
    logmax = bytes;
}

int dtf_log_open(const char *dir)
{
    char path[sizeof logpath];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        dtf_seterr("log directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (snprintf(path, sizeof path, "%s/deploy.log", dir) >= (int)sizeof path) {
        dtf_seterr("log directory %s: path too long", dir);
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        dtf_seterr("%s: %s", path, strerror(errno));
        return -1;
    }
    static int registered;
    if (!registered && atexit(flush_at_exit) == 0)
        registered = 1;
    dtf_log_close();
    logfd = fd;
    memcpy(logpath, path, sizeof path);
    return 0;
}

void dtf_log_close(void)
{
    if (logfd >= 0) {
        flush_file();
        close(logfd);
        logfd = -1;
    }
}

const char *dtf_log_level_name(int level)
{
    if (level >= DTF_LOG_ERROR) return "ERROR";
    if (level >= DTF_LOG_WARNING) return "WARNING";
    if (level >= DTF_LOG_INFO) return "INFO";
    return "DEBUG";
}

void dtf_log_write(int level, int to_stdout, const char *msg)
{
    struct timeval tv;
    struct tm tm;
    char stamp[32];
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    const char *lv = dtf_log_level_name(level);
    int ms = (int)(tv.tv_usec / 1000);
    char line[2304];
    int n = snprintf(line, sizeof line, "%s,%03d - dtf - %s - %s\n", stamp, ms, lv, msg);
    if (n >= (int)sizeof line) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    if (logfd >= 0) {
        /* a batch is at most half of logmax, so that a file stays under it */
        if (loglen + (size_t)n > sizeof logbuf || (logmax && loglen + (size_t)n > logmax / 2))
            flush_file();
        memcpy(logbuf + loglen, line, (size_t)n);
        loglen += (size_t)n;
        if (level >= DTF_LOG_WARNING || dtf_now() - lastflush > 1.0)
            flush_file();
    }
    if (to_stdout) {
        /* Line-at-a-time to stdout even when it is a pipe (dtf local, kubectl
         * logs): a task's lines must not sit in a buffer when it dies. With a
         * status line on the terminal, the line goes above it. */
        dtf_status_write(line, (size_t)n);
    }
}

void dtf_log_cb(void *ud, int level, const char *msg)
{
    (void)ud;
    dtf_log_write(level, 1, msg);
}
