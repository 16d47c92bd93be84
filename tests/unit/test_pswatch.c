/* Unit tests for pswatch.c, the ps's hooks: a real shard pushed to and
 * the hooks called as the ps loop calls them; the metrics follow the
 * shard's counters, the TensorBoard file gets ps/updates_per_second and
 * ps/staleness once an interval is over and at the end, and NULL watches
 * cost nothing. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pswatch.h"
#include "util.h"

static double value_of(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

typedef struct got {
    int ups, stale;
    double last_ups, last_stale;
    int64_t last_step;
} got;

static void on_scalar(void *ud, const dtf_event *ev, const char *tag, size_t n, float v)
{
    got *g = ud;
    if (n == 21 && memcmp(tag, "ps/updates_per_second", n) == 0) {
        g->ups++;
        g->last_ups = v;
        g->last_step = ev->step;
    } else if (n == 12 && memcmp(tag, "ps/staleness", n) == 0) {
        g->stale++;
        g->last_stale = v;
    }
}

/* The one event file in dir. */
static int events_file(const char *dir, char *out, size_t n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, "tfevents")) {
            snprintf(out, n, "%s/%s", dir, e->d_name);
            found++;
        }
    if (d)
        closedir(d);
    return found;
}

TEST(hooks_follow_the_shard)
{
    char tmp[] = "/tmp/dtf-test-pswatch.XXXXXX", dir[128];
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(dir, sizeof dir, "%s/tensorboard/ps0", tmp);
    dtf_metrics *r = dtf_metrics_new();
    dtf_pswatch *w = dtf_pswatch_new(r, dir, 0.05);
    CHECK(w != NULL);
    if (!w)
        return;
    CHECK(dtf_pswatch_current() == NULL);
    dtf_pswatch_set_current(w);
    CHECK(dtf_pswatch_current() == w);

    dtf_shard_config sc;
    memset(&sc, 0, sizeof sc);
    sc.nps = 1;
    sc.P = 4;
    sc.workers = 2;
    dtf_optim_defaults(&sc.optim, DTF_SGD);
    dtf_shard *sh = dtf_shard_new(&sc, NULL);
    float g[4] = {1, 1, 1, 1};
    dtf_push_outcome o;
    double t0 = dtf_now();
    int pushes = 0;
    /* pushes until more than one interval has gone by */
    while (dtf_now() - t0 < 0.2 || pushes < 10) {
        int64_t tag = sh->step > 2 ? sh->step - 2 : 0; /* two steps behind */
        dtf_shard_push(sh, pushes % 2, (uint32_t)pushes, tag, g, &o);
        dtf_pswatch_applied(w, o.behind);
        dtf_pswatch_step(dtf_pswatch_current(), sh);
        pushes++;
        usleep(1000);
    }
    dtf_pswatch_traffic(w, 1000, 2000, 2);
    dtf_pswatch_checkpoint(w, 7, 0.25);
    size_t n;
    char *t = dtf_metrics_render(r, &n);
    CHECK_NEAR(value_of(t, "dtf_ps_global_step"), (double)sh->step, 0);
    CHECK_NEAR(value_of(t, "dtf_ps_updates_total"), (double)pushes, 0);
    CHECK_NEAR(value_of(t, "dtf_ps_bytes_received_total"), 1000, 0);
    CHECK_NEAR(value_of(t, "dtf_ps_bytes_sent_total"), 2000, 0);
    CHECK_NEAR(value_of(t, "dtf_ps_workers_connected"), 2, 0);
    CHECK_NEAR(value_of(t, "dtf_ps_checkpoint_step"), 7, 0);
    CHECK_NEAR(value_of(t, "dtf_ps_checkpoint_seconds"), 0.25, 0);
    CHECK_NEAR(value_of(t, "dtf_ps_staleness_count"), (double)pushes, 0);
    CHECK_NEAR(value_of(t, "dtf_ps_stale_total"), 0, 0);
    free(t);

    char path[512];
    CHECK_EQ_INT(events_file(dir, path, sizeof path), 1);
    CHECK(strcmp(path, dtf_pswatch_events_path(w)) == 0);
    /* the scalars of the intervals that ended are on disk already */
    got before = {0}, after = {0};
    int trunc;
    CHECK_EQ_INT(dtf_tfevents_read(path, on_scalar, &before, &trunc), 0);
    CHECK(before.ups >= 1);
    CHECK(before.last_ups > 0);
    CHECK_EQ_INT(dtf_pswatch_free(w), 0);
    CHECK(dtf_pswatch_current() == NULL);
    /* and the last one is written at the end */
    CHECK_EQ_INT(dtf_tfevents_read(path, on_scalar, &after, &trunc), 0);
    CHECK(after.ups >= before.ups);
    CHECK_EQ_INT(after.last_step, sh->step);
    CHECK(after.stale >= 1);
    /* pushes 3 on were two steps behind, the first ones less */
    CHECK(after.last_stale > 1.5 && after.last_stale <= 2);
    dtf_shard_free(sh);
    dtf_metrics_free(r);
    unlink(path);
    rmdir(dir);
    snprintf(dir, sizeof dir, "%s/tensorboard", tmp);
    rmdir(dir);
    rmdir(tmp);
}

TEST(null_watch_is_a_no_op)
{
    dtf_pswatch_step(NULL, NULL);
    dtf_pswatch_applied(NULL, 3);
    dtf_pswatch_traffic(NULL, 1, 2, 3);
    dtf_pswatch_checkpoint(NULL, 1, 1);
    CHECK_EQ_INT(dtf_pswatch_free(NULL), 0);
    /* metrics only, no TensorBoard */
    dtf_metrics *r = dtf_metrics_new();
    dtf_pswatch *w = dtf_pswatch_new(r, NULL, 0);
    CHECK(w != NULL && dtf_pswatch_events_path(w) == NULL);
    CHECK_EQ_INT(dtf_pswatch_free(w), 0);
    CHECK(dtf_pswatch_new(NULL, "/proc/none/such", 1) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "/proc/none");
    dtf_metrics_free(r);
}

RUN_TESTS("test_pswatch")
