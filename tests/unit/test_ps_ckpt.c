/* Unit tests for ps_ckpt.c: a shard's checkpoints saved and restored, the
 * newest readable one, resharding between numbers of ps tasks (params and
 * optimizer slots), other models left alone, pruning, temp files, and the
 * merge dtf export makes. Real files in a scratch directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "ckpt.h"
#include "ps.h"
#include "ps_ckpt.h"

#define LAYOUT 0x00000000c0ffee00ULL
#define OTHER 0x00000000deadbeefULL

static char root[64];
static char logbuf[1 << 15];

static void test_log(void *ud, int level, const char *msg)
{
    (void)ud;
    (void)level;
    size_t n = strlen(logbuf);
    snprintf(logbuf + n, sizeof logbuf - n, "%s\n", msg);
}

/* A fresh scratch directory for one case. */
static const char *dir_for(const char *name)
{
    static char d[128];
    if (!root[0]) {
        snprintf(root, sizeof root, "/tmp/dtf-test-ps-ckpt-XXXXXX");
        if (!mkdtemp(root))
            abort();
    }
    snprintf(d, sizeof d, "%s/%s", root, name);
    mkdir(d, 0755);
    logbuf[0] = 0;
    return d;
}

/* Shard i of n over P parameters with Adam; params[k] = base + global k.
 * Sync unless async_shards is set. */
static int async_shards;
static dtf_shard *adam_shard(uint64_t P, int n, int i, float base)
{
    dtf_shard_config c;
    memset(&c, 0, sizeof c);
    c.index = i;
    c.nps = n;
    c.P = P;
    c.workers = 2;
    c.sync = !async_shards;
    dtf_optim_defaults(&c.optim, DTF_ADAM);
    dtf_shard *s = dtf_shard_new(&c, NULL);
    for (uint64_t k = 0; k < s->count; k++) {
        s->params[k] = base + (float)(s->offset + k);
        s->slot0[k] = 1000 + (float)(s->offset + k);
        s->slot1[k] = 2000 + (float)(s->offset + k);
    }
    return s;
}

static dtf_ps_ckpt_config config(const char *dir, uint64_t layout)
{
    dtf_ps_ckpt_config k;
    memset(&k, 0, sizeof k);
    k.dir = dir;
    k.layout = layout;
    k.layout_json = "[{\"name\":\"w\",\"offset\":0,\"shape\":[2,5]}]";
    k.log = test_log;
    return k;
}

/* Saves shard s at step `step` through a checkpointer that restores
 * nothing (a scratch copy), so the files are exactly what we asked for. */
static void save_at(const char *dir, uint64_t layout, dtf_shard *s, int64_t step)
{
    dtf_ps_ckpt_config k = config(dir, layout);
    dtf_shard *blank = adam_shard(s->cfg.P, s->cfg.nps, s->cfg.index, 0);
    dtf_ps_ckpt *ck = dtf_ps_ckpt_open(&k, blank);
    CHECK(ck != NULL);
    s->step = step;
    if (ck) {
        CHECK_EQ_INT(dtf_ps_ckpt_save(ck, s), 0);
        dtf_ps_ckpt_close(ck, s); /* no second save: the step did not move */
    }
    dtf_shard_free(blank);
}

/* Opens a checkpointer over a new shard i of n: the restored shard. */
static dtf_shard *restored(const char *dir, uint64_t layout, uint64_t P, int n, int i)
{
    dtf_ps_ckpt_config k = config(dir, layout);
    dtf_shard *s = adam_shard(P, n, i, -1);
    dtf_ps_ckpt *ck = dtf_ps_ckpt_open(&k, s);
    if (!ck) {
        dtf_shard_free(s);
        return NULL;
    }
    dtf_ps_ckpt_close(ck, s);
    return s;
}

static int count_files(const char *dir, const char *needle)
{
    dtf_ckpt_file *f;
    size_t n;
    int k = 0;
    if (dtf_ckpt_list(dir, -1, &f, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        k += strstr(f[i].path, needle) != NULL;
    dtf_ckpt_list_free(f, n);
    return k;
}

TEST(save_and_restore_the_same_sharding)
{
    const char *d = dir_for("same");
    dtf_shard *s = adam_shard(10, 2, 1, 0);
    s->w[1] = (dtf_worker_state){.last_step = -1, .push_seen = 1, .push_id = 7, .push_tag = 3};
    save_at(d, LAYOUT, s, 40);
    CHECK_EQ_INT(count_files(d, "ckpt-00000040-ps1-of-2.safetensors"), 1);
    dtf_shard *r = restored(d, LAYOUT, 10, 2, 1);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->step, 40);
        CHECK(r->params[0] == 5.0f && r->params[4] == 9.0f);
        CHECK(r->slot0[2] == 1007.0f && r->slot1[4] == 2009.0f);
        CHECK(r->w[1].push_seen && r->w[1].push_id == 7 && r->w[1].push_tag == 3);
        CHECK_STR_CONTAINS(logbuf, "ps 1: restored step 40 from ");
        CHECK_STR_CONTAINS(logbuf, "/ckpt-00000040-ps1-of-2.safetensors");
    }
    /* shard 0 has no file: it starts fresh, saying so */
    dtf_shard *r0 = restored(d, LAYOUT, 10, 2, 0);
    CHECK(r0 && r0->step == 0 && r0->params[0] == -1.0f);
    CHECK_STR_CONTAINS(logbuf, "ps 0: no checkpoint of this shard in ");
    dtf_shard_free(r0);
    dtf_shard_free(r);
    dtf_shard_free(s);
}

TEST(an_unreadable_newest_falls_back_to_the_one_before)
{
    const char *d = dir_for("fallback");
    dtf_shard *s = adam_shard(10, 1, 0, 0);
    save_at(d, LAYOUT, s, 5);
    s->params[0] = 77;
    save_at(d, LAYOUT, s, 10);
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt-00000010-ps0-of-1.safetensors", d);
    CHECK_EQ_INT(truncate(path, 100), 0);
    dtf_shard *r = restored(d, LAYOUT, 10, 1, 0);
    CHECK(r && r->step == 5 && r->params[0] == 0.0f);
    CHECK_STR_CONTAINS(logbuf, "skipping a checkpoint that cannot be read: ");
    CHECK_STR_CONTAINS(logbuf, "ckpt-00000010-ps0-of-1.safetensors");
    dtf_shard_free(r);
    /* every file unreadable: never a silent start from scratch */
    snprintf(path, sizeof path, "%s/ckpt-00000005-ps0-of-1.safetensors", d);
    CHECK_EQ_INT(truncate(path, 100), 0);
    CHECK(restored(d, LAYOUT, 10, 1, 0) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "none of the 2 checkpoints in ");
    dtf_shard_free(s);
}

/* Every new shard of n holds what the old ones held at its range. */
static void check_resharded(const char *d, int n, int64_t step, float base)
{
    for (int i = 0; i < n; i++) {
        dtf_shard *r = restored(d, LAYOUT, 10, n, i);
        CHECK(r != NULL);
        if (!r)
            continue;
        CHECK_EQ_INT(r->step, step);
        for (uint64_t k = 0; k < r->count; k++) {
            float g = (float)(r->offset + k);
            if (r->params[k] != base + g || r->slot0[k] != 1000 + g || r->slot1[k] != 2000 + g)
                FAIL("shard %d of %d, element %d: %g %g %g", i, n, (int)(r->offset + k),
                     r->params[k], r->slot0[k], r->slot1[k]);
        }
        dtf_shard_free(r);
    }
}

TEST(reshard_two_to_three_and_back)
{
    const char *d = dir_for("reshard");
    for (int i = 0; i < 2; i++) {
        dtf_shard *s = adam_shard(10, 2, i, 0);
        save_at(d, LAYOUT, s, 100);
        dtf_shard_free(s);
    }
    check_resharded(d, 3, 100, 0);
    CHECK_STR_CONTAINS(logbuf, "ps 2: restored step 100 from 2 ps checkpoints in ");
    CHECK_STR_CONTAINS(logbuf, "(ps0@100 ps1@100), resharded from 2 to 3 ps tasks: "
                               "this ps holds [6, 10)");
    /* the 3-ps training goes on and checkpoints at 150: the newest sharding
     * wins when 2 ps come back */
    for (int i = 0; i < 3; i++) {
        dtf_shard *s = adam_shard(10, 3, i, 0.5f);
        save_at(d, LAYOUT, s, 150);
        dtf_shard_free(s);
    }
    check_resharded(d, 2, 150, 0.5f);
    CHECK_STR_CONTAINS(logbuf, "resharded from 3 to 2 ps tasks");
    /* one ps: the whole buffer */
    check_resharded(d, 1, 150, 0.5f);
}

TEST(reshard_takes_the_newest_step_every_shard_has)
{
    /* sync: the shards step together, and the consistent set is one step */
    const char *d = dir_for("steps");
    dtf_shard *a = adam_shard(10, 2, 0, 0), *b = adam_shard(10, 2, 1, 0);
    save_at(d, LAYOUT, a, 10);
    save_at(d, LAYOUT, b, 10);
    b->params[0] = 99;
    save_at(d, LAYOUT, b, 11); /* async: shard 1 one step ahead */
    check_resharded(d, 3, 10, 0);
    CHECK_STR_CONTAINS(logbuf, "(ps0@10 ps1@10)");
    /* no common step: each shard's newest, at shard 0's step */
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt-00000010-ps1-of-2.safetensors", d);
    CHECK_EQ_INT(unlink(path), 0);
    dtf_shard *r = restored(d, LAYOUT, 10, 1, 0);
    CHECK(r && r->step == 10 && r->params[5] == 99.0f && r->params[4] == 4.0f);
    CHECK_STR_CONTAINS(logbuf, "(ps0@10 ps1@11, each shard's newest)");
    dtf_shard_free(r);
    dtf_shard_free(a);
    dtf_shard_free(b);
}

TEST(async_reshard_takes_each_shards_newest)
{
    /* async shards never agree exactly: their newest files are the state
     * the ps tasks had when they stopped (here at 437 and 436) */
    const char *d = dir_for("async");
    async_shards = 1;
    dtf_shard *a = adam_shard(10, 2, 0, 0), *b = adam_shard(10, 2, 1, 0);
    save_at(d, LAYOUT, a, 400);
    save_at(d, LAYOUT, b, 400);
    save_at(d, LAYOUT, a, 437);
    b->params[0] = 55;
    save_at(d, LAYOUT, b, 436);
    dtf_shard *r = restored(d, LAYOUT, 10, 3, 2);
    CHECK(r && r->step == 437 && r->params[0] == 6.0f && r->params[3] == 9.0f);
    r = r ? (dtf_shard_free(r), restored(d, LAYOUT, 10, 3, 1)) : NULL;
    CHECK(r && r->step == 437 && r->params[2] == 55.0f && r->params[1] == 4.0f);
    CHECK_STR_CONTAINS(logbuf, "(ps0@437 ps1@436, each shard's newest)");
    dtf_shard_free(r);
    dtf_shard_free(a);
    dtf_shard_free(b);
    async_shards = 0;
}

TEST(an_incomplete_old_sharding_is_refused)
{
    const char *d = dir_for("incomplete");
    dtf_shard *s = adam_shard(10, 2, 0, 0);
    save_at(d, LAYOUT, s, 10);
    CHECK(restored(d, LAYOUT, 10, 3, 1) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "lack a shard, so they cannot be resharded to 3 ps tasks");
    dtf_shard_free(s);
}

TEST(other_models_start_fresh_and_are_left_alone)
{
    const char *d = dir_for("models");
    dtf_shard *s = adam_shard(10, 1, 0, 3);
    for (int64_t step = 1000; step <= 1004; step++)
        save_at(d, OTHER, s, step);
    CHECK_EQ_INT(count_files(d, "-ps0-of-1"), 3); /* pruned to the newest 3 */
    dtf_shard *r = restored(d, LAYOUT, 10, 1, 0);
    CHECK(r && r->step == 0 && r->params[0] == -1.0f);
    CHECK_STR_CONTAINS(logbuf, "the 3 checkpoints in ");
    CHECK_STR_CONTAINS(logbuf, "belong to another model (layout 00000000deadbeef; this model is "
                               "00000000c0ffee00): starting from the initial parameters");
    /* this model's saves at lower steps keep their own newest 3 and never
     * touch the other model's files */
    for (int64_t step = 1; step <= 5; step++)
        save_at(d, LAYOUT, s, step);
    CHECK_EQ_INT(count_files(d, "-ps0-of-1"), 6);
    CHECK_EQ_INT(count_files(d, "ckpt-0000100"), 3);
    dtf_shard_free(r);
    r = restored(d, LAYOUT, 10, 1, 0);
    CHECK(r && r->step == 5);
    dtf_shard_free(r);
    dtf_shard_free(s);
}

TEST(another_optimizer_keeps_params_and_zeroes_slots)
{
    const char *d = dir_for("optim");
    dtf_shard_config c;
    memset(&c, 0, sizeof c);
    c.nps = 1;
    c.P = 10;
    c.workers = 1;
    dtf_optim_defaults(&c.optim, DTF_SGD);
    c.optim.momentum = 0.9f;
    dtf_shard *sgd = dtf_shard_new(&c, NULL);
    for (int k = 0; k < 10; k++) {
        sgd->params[k] = (float)k;
        sgd->slot0[k] = 50;
    }
    save_at(d, LAYOUT, sgd, 7);
    dtf_shard *r = restored(d, LAYOUT, 10, 1, 0);
    CHECK(r && r->step == 7 && r->params[9] == 9.0f && r->slot0[0] == 0.0f && r->slot1[9] == 0.0f);
    CHECK_STR_CONTAINS(logbuf, "the checkpoint's optimizer was sgd, this ps runs adam: its slots "
                               "start from zero");
    dtf_shard_free(r);
    dtf_shard_free(sgd);
}

TEST(temp_files_of_a_killed_ps_are_removed)
{
    const char *d = dir_for("temps");
    char path[256];
    snprintf(path, sizeof path, "%s/.ckpt-00000003-ps0-of-1.safetensors.tmp.4242", d);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    dtf_shard *r = restored(d, LAYOUT, 10, 1, 0);
    CHECK(r != NULL);
    CHECK(access(path, F_OK) != 0);
    CHECK_STR_CONTAINS(logbuf, "ps 0: removed 1 unfinished checkpoint file that a killed ps left "
                               "in ");
    dtf_shard_free(r);
    /* a directory that cannot be made */
    dtf_ps_ckpt_config k = config("/proc/dtf-no", LAYOUT);
    dtf_shard *s = adam_shard(10, 1, 0, 0);
    CHECK(dtf_ps_ckpt_open(&k, s) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "checkpoint_dir: cannot create /proc/dtf-no");
    dtf_shard_free(s);
}

TEST(merge_for_export)
{
    const char *d = dir_for("merge");
    for (int i = 0; i < 3; i++) {
        dtf_shard *s = adam_shard(10, 3, i, 0.25f);
        save_at(d, LAYOUT, s, 20 + i);
        dtf_shard_free(s);
    }
    dtf_shard *o = adam_shard(10, 1, 0, 0);
    save_at(d, OTHER, o, 5); /* an older model's */
    dtf_ps_merged m;
    CHECK_EQ_INT(dtf_ps_ckpt_merge(d, 0, &m), 0);
    CHECK(m.params != NULL);
    if (m.params) {
        CHECK_EQ_INT(m.P, 10);
        CHECK_EQ_INT(m.nps, 3);
        CHECK_EQ_INT(m.step, 20);
        CHECK(m.layout == LAYOUT);
        CHECK(strcmp(m.shards, "ps0@20 ps1@21 ps2@22") == 0);
        CHECK_STR_CONTAINS(m.layout_json, "\"name\":\"w\"");
        for (int k = 0; k < 10; k++)
            CHECK(m.params[k] == 0.25f + (float)k);
        dtf_ps_merged_free(&m);
    }
    CHECK_EQ_INT(dtf_ps_ckpt_merge(d, OTHER, &m), 0);
    CHECK(m.params && m.params[3] == 3.0f && m.nps == 1);
    dtf_ps_merged_free(&m);
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt-00000021-ps1-of-3.safetensors", d);
    CHECK_EQ_INT(unlink(path), 0);
    CHECK_EQ_INT(dtf_ps_ckpt_merge(d, LAYOUT, &m), -1);
    CHECK_STR_CONTAINS(dtf_error(), "no complete set of ps checkpoints");
    dtf_shard_free(o);
}

TEST(cleanup)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (root[0] && system(cmd) != 0)
        CHECK(0);
}

RUN_TESTS("test_ps_ckpt")
