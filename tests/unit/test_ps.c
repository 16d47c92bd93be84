/* Unit tests for ps.c: a shard's rules (async apply, sync aggregation,
 * stale and duplicate pushes, the steps pulls wait for, workers done and
 * dropped, checkpoint metadata), without sockets. The server and client
 * over loopback are test_net.c's. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ps.h"
#include "util.h"
#include "wire.h"

/* ============================================================================
 * Shard logic
 * ========================================================================== */

static dtf_shard_config sgd_config(uint64_t P, int nps, int index, int workers, int sync,
                                   int replicas, float lr)
{
    dtf_shard_config c;
    memset(&c, 0, sizeof c);
    c.index = index;
    c.nps = nps;
    c.P = P;
    c.workers = workers;
    c.sync = sync;
    c.replicas = replicas;
    dtf_optim_defaults(&c.optim, DTF_SGD);
    c.optim.lr = lr;
    return c;
}

static float gbuf[64];

static void fill_grad(dtf_shard *s, float v)
{
    for (uint64_t i = 0; i < s->count && i < 64; i++)
        gbuf[i] = v;
}

/* gbuf from worker with step tag, as a fresh request (a new id each time);
 * the dtf_push_result, or -1. */
static uint32_t next_id;
static int push(dtf_shard *s, int worker, int64_t tag, int *adv)
{
    dtf_push_outcome o;
    *adv = 0;
    if (dtf_shard_push(s, worker, ++next_id, tag, gbuf, &o) < 0)
        return -1;
    *adv = o.advanced;
    return o.result;
}

/* WORKER_DONE: 1 when the step advanced, 0 when not, -1 for a bad index. */
static int done(dtf_shard *s, int worker)
{
    int newly;
    return dtf_shard_worker_done(s, worker, &newly);
}

TEST(shard_ranges_tile_and_balance)
{
    uint64_t off, cnt;
    dtf_shard_range(79510, 2, 0, &off, &cnt);
    CHECK_EQ_INT(off, 0);
    CHECK_EQ_INT(cnt, 39755);
    dtf_shard_range(79510, 2, 1, &off, &cnt);
    CHECK_EQ_INT(off, 39755);
    CHECK_EQ_INT(cnt, 39755);
    static const uint64_t Ps[] = {0, 1, 2, 7, 10, 79510, 1000003, UINT64_MAX / 3};
    for (size_t k = 0; k < sizeof Ps / sizeof Ps[0]; k++)
        for (int n = 1; n <= 9; n++) {
            uint64_t end = 0, lo = UINT64_MAX, hi = 0;
            for (int i = 0; i < n; i++) {
                dtf_shard_range(Ps[k], n, i, &off, &cnt);
                CHECK(off == end);
                end = off + cnt;
                lo = cnt < lo ? cnt : lo;
                hi = cnt > hi ? cnt : hi;
            }
            CHECK(end == Ps[k]);
            CHECK(hi - lo <= 1);
        }
    /* shard 1 of 3 over 10: [floor(10/3), floor(20/3)) = [3, 6) */
    dtf_shard_range(10, 3, 1, &off, &cnt);
    CHECK_EQ_INT(off, 3);
    CHECK_EQ_INT(cnt, 3);
    dtf_shard_range(10, 3, 3, &off, &cnt);
    CHECK_EQ_INT(cnt, 0);
}

TEST(shard_copies_only_its_range)
{
    float all[10];
    for (int i = 0; i < 10; i++)
        all[i] = (float)i;
    dtf_shard_config c = sgd_config(10, 3, 2, 1, 0, 0, 0.1f);
    dtf_shard *s = dtf_shard_new(&c, all);
    CHECK(s != NULL);
    CHECK_EQ_INT(s->offset, 6);
    CHECK_EQ_INT(s->count, 4);
    CHECK(s->params[0] == 6.0f && s->params[3] == 9.0f);
    CHECK(s->slot0 == NULL); /* plain SGD keeps no slot */
    dtf_shard_free(s);
    c.index = 3;
    CHECK(dtf_shard_new(&c, all) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "ps index 3");
    c.index = 0;
    c.replicas = 2;
    CHECK(dtf_shard_new(&c, all) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "replicas_to_aggregate");
}

TEST(async_applies_each_push)
{
    dtf_shard_config c = sgd_config(4, 1, 0, 2, 0, 0, 0.5f);
    dtf_shard *s = dtf_shard_new(&c, NULL);
    int adv;
    fill_grad(s, 1.0f);
    CHECK_EQ_INT(push(s, 0, 0, &adv), DTF_PUSH_APPLIED);
    CHECK_EQ_INT(adv, 1);
    CHECK_EQ_INT(s->step, 1);
    CHECK_NEAR(s->params[0], -0.5, 1e-7);
    /* an old step is still applied in async mode */
    fill_grad(s, 2.0f);
    CHECK_EQ_INT(push(s, 1, 0, &adv), DTF_PUSH_APPLIED);
    CHECK_EQ_INT(s->step, 2);
    CHECK_NEAR(s->params[3], -1.5, 1e-7);
    CHECK_EQ_INT(s->gradients, 2);
    CHECK_EQ_INT(s->updates, 2);
    CHECK_EQ_INT(s->stale, 0);
    CHECK_EQ_INT(push(s, 2, 0, &adv), -1);
    CHECK_STR_CONTAINS(dtf_error(), "worker index 2 out of range");
    /* a worker that said done and pushes again is back in the game */
    CHECK_EQ_INT(done(s, 0), 0);
    CHECK_EQ_INT(done(s, 0), 0);
    CHECK_EQ_INT(s->ndone, 1);
    push(s, 0, 2, &adv);
    CHECK_EQ_INT(s->ndone, 0);
    CHECK_EQ_INT(s->w[0].done, 0);
    dtf_shard_free(s);
}

TEST(sync_averages_replicas_and_drops_stale)
{
    dtf_shard_config c = sgd_config(3, 1, 0, 2, 1, 0, 1.0f);
    dtf_shard *s = dtf_shard_new(&c, NULL);
    int adv;
    CHECK_EQ_INT(s->cfg.replicas, 2);
    fill_grad(s, 1.0f);
    CHECK_EQ_INT(push(s, 0, 0, &adv), DTF_PUSH_PENDING);
    CHECK_EQ_INT(adv, 0);
    CHECK_EQ_INT(s->step, 0);
    CHECK(s->params[0] == 0.0f);
    int w[4];
    CHECK_EQ_INT(dtf_shard_waiting(s, w, 4), 1);
    CHECK_EQ_INT(w[0], 1);
    /* worker 0 again for the same step: a duplicate, kept out */
    fill_grad(s, 100.0f);
    CHECK_EQ_INT(push(s, 0, 0, &adv), DTF_PUSH_DUPLICATE);
    CHECK_EQ_INT(s->duplicates, 1);
    fill_grad(s, 3.0f);
    CHECK_EQ_INT(push(s, 1, 0, &adv), DTF_PUSH_APPLIED);
    CHECK_EQ_INT(adv, 1);
    CHECK_EQ_INT(s->step, 1);
    CHECK_NEAR(s->params[2], -2.0, 1e-6); /* mean of 1 and 3, lr 1 */
    /* a gradient for step 0 now is stale */
    CHECK_EQ_INT(push(s, 0, 0, &adv), DTF_PUSH_STALE);
    CHECK_EQ_INT(s->stale, 1);
    CHECK_EQ_INT(s->w[0].stale, 1);
    CHECK_EQ_INT(s->have, 0);
    CHECK_EQ_INT(s->gradients, 2);
    CHECK_EQ_INT(s->updates, 1);
    dtf_shard_free(s);
}

TEST(pushes_round_trip_through_checkpoint_metadata)
{
    dtf_shard_config c = sgd_config(4, 1, 0, 3, 0, 0, 0.1f);
    dtf_shard *s = dtf_shard_new(&c, NULL);
    char *str = dtf_shard_format_pushes(s);
    CHECK(str && str[0] == 0); /* nobody pushed yet */
    free(str);
    s->w[0] = (dtf_worker_state){.push_seen = 1, .push_id = 7, .push_tag = -1};
    s->w[2] = (dtf_worker_state){.push_seen = 1, .push_id = UINT32_MAX, .push_tag = INT64_MAX};
    str = dtf_shard_format_pushes(s);
    CHECK(str && strcmp(str, "0:7:-1 2:4294967295:9223372036854775807") == 0);

    dtf_shard *r = dtf_shard_new(&c, NULL);
    r->w[1].push_seen = 1; /* restore clears what the checkpoint does not hold */
    dtf_shard_restore(r, NULL, NULL, NULL, 5);
    CHECK(dtf_shard_parse_pushes(r, str) == 0);
    CHECK(r->w[0].push_seen && r->w[0].push_id == 7 && r->w[0].push_tag == -1);
    CHECK(!r->w[1].push_seen);
    CHECK(r->w[2].push_seen && r->w[2].push_id == UINT32_MAX && r->w[2].push_tag == INT64_MAX);
    free(str);
    /* a worker this cluster does not have (fewer workers now) is ignored */
    CHECK(dtf_shard_parse_pushes(r, "  9:1:1  1:3:4 ") == 0);
    CHECK(r->w[1].push_seen && r->w[1].push_id == 3 && r->w[1].push_tag == 4);

    static const char *const bad[] = {"x", "0", "0:7", "0:7:", "0:-7:1", "-1:7:1", "0:4294967296:1",
                                      "0:7:1x", "0:7:1:2", "0:7:99999999999999999999",
                                      "2147483648:1:1", "0::1", "0:7:1,1:2:3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(dtf_shard_parse_pushes(r, bad[i]) == -1);
        CHECK_STR_CONTAINS(dtf_error(), "'pushes' is malformed");
    }
    dtf_shard_free(r);
    dtf_shard_free(s);
}

TEST(sync_replicas_less_than_workers)
{
    dtf_shard_config c = sgd_config(2, 1, 0, 3, 1, 2, 1.0f);
    dtf_shard *s = dtf_shard_new(&c, NULL);
    int adv;
    fill_grad(s, 2.0f);
    CHECK_EQ_INT(push(s, 2, 0, &adv), DTF_PUSH_PENDING);
    fill_grad(s, 4.0f);
    CHECK_EQ_INT(push(s, 0, 0, &adv), DTF_PUSH_APPLIED);
    CHECK_NEAR(s->params[0], -3.0, 1e-6);
    /* the slow third worker's gradient for step 0 is stale */
    CHECK_EQ_INT(push(s, 1, 0, &adv), DTF_PUSH_STALE);
    dtf_shard_free(s);
}

TEST(sync_done_and_dropped_workers_shrink_the_wait)
{
    dtf_shard_config c = sgd_config(1, 1, 0, 3, 1, 0, 1.0f);
    dtf_shard *s = dtf_shard_new(&c, NULL);
    int adv;
    /* worker 0 pushes its last step and says done: it still counts for
     * this step, so the step waits for workers 1 and 2 as well. */
    fill_grad(s, 1.0f);
    CHECK_EQ_INT(push(s, 0, 0, &adv), DTF_PUSH_PENDING);
    CHECK_EQ_INT(done(s, 0), 0);
    CHECK_EQ_INT(dtf_shard_needed(s), 3);
    fill_grad(s, 2.0f);
    CHECK_EQ_INT(push(s, 1, 0, &adv), DTF_PUSH_PENDING);
    /* worker 2 goes silent: dropping it completes the step with two */
    CHECK_EQ_INT(dtf_shard_drop_worker(s, 2), 1);
    CHECK_EQ_INT(s->step, 1);
    CHECK_NEAR(s->params[0], -1.5, 1e-6);
    /* next step: only worker 1 is left in the game */
    CHECK_EQ_INT(dtf_shard_needed(s), 1);
    fill_grad(s, 1.0f);
    CHECK_EQ_INT(push(s, 1, 1, &adv), DTF_PUSH_APPLIED);
    CHECK_EQ_INT(s->step, 2);
    /* worker 2 comes back: stale first, then it rejoins at the current step */
    CHECK_EQ_INT(push(s, 2, 0, &adv), DTF_PUSH_STALE);
    CHECK_EQ_INT(s->w[2].dropped, 1);
    CHECK_EQ_INT(push(s, 2, 2, &adv), DTF_PUSH_PENDING);
    CHECK_EQ_INT(s->w[2].dropped, 0);
    CHECK_EQ_INT(dtf_shard_needed(s), 2);
    /* worker 1 finishes: the step completes with worker 2's gradient alone */
    CHECK_EQ_INT(done(s, 1), 1);
    CHECK_EQ_INT(s->step, 3);
    CHECK_EQ_INT(s->ndone, 2);
    dtf_shard_free(s);
}

TEST(shard_adam_uses_slots_and_restore)
{
    dtf_shard_config c = sgd_config(8, 2, 1, 1, 0, 0, 0.1f);
    dtf_optim_defaults(&c.optim, DTF_ADAM);
    c.optim.lr = 0.1f;
    dtf_shard *s = dtf_shard_new(&c, NULL);
    CHECK(s->slot0 && s->slot1);
    int adv;
    fill_grad(s, 1.0f);
    push(s, 0, 0, &adv);
    /* Adam's first step moves each parameter by lr against the gradient */
    CHECK_NEAR(s->params[0], -0.1, 1e-5);
    CHECK(s->slot0[0] != 0.0f && s->slot1[0] != 0.0f);
    float p[4] = {1, 2, 3, 4};
    dtf_shard_restore(s, p, NULL, NULL, 41);
    CHECK_EQ_INT(s->step, 41);
    CHECK(s->params[3] == 4.0f && s->slot0[0] == 0.0f);
    char buf[2048];
    size_t n = dtf_shard_stats(s, buf, sizeof buf);
    CHECK(n < sizeof buf);
    CHECK_STR_CONTAINS(buf, "step=41\n");
    CHECK_STR_CONTAINS(buf, "offset=4\ncount=4\n");
    CHECK_STR_CONTAINS(buf, "optimizer=adam\n");
    CHECK_STR_CONTAINS(buf, "worker.0.pushes=1\n");
    /* truncation reports the full length, like snprintf */
    CHECK_EQ_INT(dtf_shard_stats(s, buf, 10), n);
    CHECK_EQ_INT(strlen(buf), 9);
    dtf_shard_free(s);
}

TEST(async_resent_push_is_a_duplicate)
{
    dtf_shard_config c = sgd_config(2, 1, 0, 2, 0, 0, 1.0f);
    dtf_shard *s = dtf_shard_new(&c, NULL);
    dtf_push_outcome o;
    fill_grad(s, 1.0f);
    CHECK_EQ_INT(dtf_shard_push(s, 0, 7, 3, gbuf, &o), 0);
    CHECK_EQ_INT(o.result, DTF_PUSH_APPLIED);
    CHECK_EQ_INT(o.advanced, 1);
    CHECK_EQ_INT(o.includes, 1);
    /* the same request id and tag again (its reply was lost): not applied */
    CHECK_EQ_INT(dtf_shard_push(s, 0, 7, 3, gbuf, &o), 0);
    CHECK_EQ_INT(o.result, DTF_PUSH_DUPLICATE);
    CHECK_EQ_INT(o.advanced, 0);
    CHECK_EQ_INT(o.includes, 2); /* a duplicate is in the next step's parameters */
    CHECK_EQ_INT(s->step, 1);
    CHECK_NEAR(s->params[0], -1.0, 1e-7);
    CHECK_EQ_INT(s->duplicates, 1);
    CHECK_EQ_INT(s->w[0].duplicates, 1);
    /* the same id with another tag, another worker with the same id and
     * tag, and the next id: each a gradient of its own */
    CHECK_EQ_INT(dtf_shard_push(s, 0, 7, 4, gbuf, &o), 0);
    CHECK_EQ_INT(o.result, DTF_PUSH_APPLIED);
    CHECK_EQ_INT(dtf_shard_push(s, 1, 7, 4, gbuf, &o), 0);
    CHECK_EQ_INT(o.result, DTF_PUSH_APPLIED);
    CHECK_EQ_INT(dtf_shard_push(s, 0, 8, 4, gbuf, &o), 0);
    CHECK_EQ_INT(o.result, DTF_PUSH_APPLIED);
    CHECK_EQ_INT(s->step, 4);
    /* the latest push survives a checkpoint: a re-send to the restored
     * shard is still caught */
    char *str = dtf_shard_format_pushes(s);
    dtf_shard *r = dtf_shard_new(&c, NULL);
    dtf_shard_restore(r, s->params, NULL, NULL, s->step);
    CHECK_EQ_INT(dtf_shard_parse_pushes(r, str), 0);
    CHECK_EQ_INT(dtf_shard_push(r, 0, 8, 4, gbuf, &o), 0);
    CHECK_EQ_INT(o.result, DTF_PUSH_DUPLICATE);
    CHECK_EQ_INT(r->step, 4);
    free(str);
    dtf_shard_free(r);
    dtf_shard_free(s);
}

TEST(pull_waits_for_at_most_the_step_that_includes_the_push)
{
    dtf_shard_config c = sgd_config(10, 2, 1, 2, 1, 0, 1.0f);
    dtf_shard *s = dtf_shard_new(&c, NULL);
    int64_t w;
    CHECK_EQ_INT(s->offset, 5);
    /* the range must lie inside the shard's [5, 10) */
    CHECK_EQ_INT(dtf_shard_pull(s, 4, 2, 0, -1, &w), -1);
    CHECK_STR_CONTAINS(dtf_error(), "PULL of [4, 6) is outside this shard's range [5, 10)");
    CHECK_EQ_INT(dtf_shard_pull(s, 6, 5, 0, -1, &w), -1);
    CHECK_EQ_INT(dtf_shard_pull(s, 5, 5, 0, -1, &w), 1);
    CHECK_EQ_INT(dtf_shard_pull(s, 9, 1, 0, -1, &w), 1);
    CHECK_EQ_INT(s->pulls, 2);
    /* step 0 now: asking for step 1 waits for it, asking for 7 waits for
     * the next step only (a worker ahead of a restarted ps must not hang) */
    CHECK_EQ_INT(dtf_shard_pull(s, 5, 5, 1, -1, &w), 0);
    CHECK_EQ_INT(w, 1);
    CHECK_EQ_INT(dtf_shard_pull(s, 5, 5, 7, -1, &w), 0);
    CHECK_EQ_INT(w, 1);
    /* a pending sync push: its step is the next one */
    dtf_push_outcome o;
    fill_grad(s, 1.0f);
    CHECK_EQ_INT(dtf_shard_push(s, 0, 1, 0, gbuf, &o), 0);
    CHECK_EQ_INT(o.result, DTF_PUSH_PENDING);
    CHECK_EQ_INT(o.includes, 1);
    CHECK(s->pending_since > 0);
    /* a push that was summed into step 0 caps a pull asking for step 5 at 0
     * (after a restart the ps took it into an earlier step than tagged) */
    CHECK_EQ_INT(dtf_shard_pull(s, 5, 5, 5, 0, &w), 1);
    CHECK_EQ_INT(w, 0);
    CHECK_EQ_INT(dtf_shard_push(s, 1, 2, 0, gbuf, &o), 0);
    CHECK_EQ_INT(o.result, DTF_PUSH_APPLIED);
    CHECK_EQ_INT(o.includes, 1);
    CHECK(s->pending_since == 0);
    CHECK_EQ_INT(dtf_shard_pull(s, 5, 5, 1, o.includes, &w), 1);
    dtf_shard_free(s);
}

TEST(join_and_done_count_workers)
{
    dtf_shard_config c = sgd_config(2, 1, 0, 2, 0, 0, 1.0f);
    dtf_shard *s = dtf_shard_new(&c, NULL);
    int newly;
    CHECK_EQ_INT(dtf_shard_join(s, 1), 0);
    CHECK_EQ_INT(dtf_shard_join(s, 2), -1);
    CHECK_STR_CONTAINS(dtf_error(), "worker index 2 out of range: this ps serves 2 workers");
    char buf[2048];
    dtf_shard_stats(s, buf, sizeof buf);
    CHECK_STR_CONTAINS(buf, "workers_joined=1\n");
    CHECK_EQ_INT(dtf_shard_worker_done(s, 1, &newly), 0);
    CHECK_EQ_INT(newly, 1);
    CHECK_EQ_INT(dtf_shard_all_done(s), 0);
    CHECK_EQ_INT(dtf_shard_worker_done(s, 1, &newly), 0);
    CHECK_EQ_INT(newly, 0);
    CHECK_EQ_INT(dtf_shard_worker_done(s, 0, &newly), 0);
    CHECK_EQ_INT(dtf_shard_all_done(s), 1);
    CHECK_EQ_INT(dtf_shard_worker_done(s, -1, &newly), -1);
    dtf_shard_free(s);
}

TEST(the_schedule_sets_each_update_rate_and_wrap_updates_in_place)
{
    float own[3] = {0, 0, 0};
    dtf_shard_config c = sgd_config(3, 1, 0, 1, 0, 0, 1.0f);
    c.sched = (dtf_lr_schedule){DTF_LR_STEP, 0, 2, 0.5};
    dtf_shard *s = dtf_shard_wrap(&c, own);
    CHECK(s != NULL && s->params == own);
    int adv;
    fill_grad(s, 1.0f);
    /* rates 1, 1, 0.5, 0.5, 0.25: the parameters fall by their sum */
    static const float want[5] = {-1, -2, -2.5f, -3, -3.25f};
    for (int i = 0; i < 5; i++) {
        CHECK_NEAR(dtf_shard_lr(s), i < 2 ? 1.0 : i < 4 ? 0.5 : 0.25, 1e-7);
        CHECK_EQ_INT(push(s, 0, i, &adv), DTF_PUSH_APPLIED);
        CHECK_NEAR(own[2], want[i], 1e-6);
    }
    dtf_shard_free(s); /* the caller's buffer stays */
    CHECK_NEAR(own[0], -3.25, 1e-6);
    c.sched = (dtf_lr_schedule){DTF_LR_COSINE, 0, 0, 0};
    CHECK(dtf_shard_new(&c, NULL) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "needs lr_decay_steps");
}

RUN_TESTS("test_ps")
