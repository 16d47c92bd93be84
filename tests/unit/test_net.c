/* Unit tests for net_server.c and net_client.c: the ps server and the
 * worker's client over loopback in one process (the server's event loop
 * runs in a thread, the client in the test's), and raw peers that break
 * the protocol. The shard's rules are test_ps.c's. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "net.h"
#include "ps.h"
#include "util.h"
#include "wire.h"

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

/* ============================================================================
 * Over loopback
 * ========================================================================== */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char logbuf[1 << 16];
static size_t loglen;

static void test_log(void *ud, int level, const char *msg)
{
    (void)ud;
    (void)level;
    pthread_mutex_lock(&log_mu);
    int k = snprintf(logbuf + loglen, sizeof logbuf - loglen, "%s\n", msg);
    if (k > 0 && (size_t)k < sizeof logbuf - loglen)
        loglen += (size_t)k;
    pthread_mutex_unlock(&log_mu);
    if (getenv("TEST_PS_VERBOSE"))
        fprintf(stderr, "    log: %s\n", msg);
}

static int log_has(const char *s)
{
    pthread_mutex_lock(&log_mu);
    int r = strstr(logbuf, s) != NULL;
    pthread_mutex_unlock(&log_mu);
    return r;
}

/* Waits (up to secs) for s to appear in the log. */
static int wait_log(const char *s, double secs)
{
    double end = dtf_now() + secs;
    while (!log_has(s)) {
        if (dtf_now() > end)
            return 0;
        usleep(5000);
    }
    return 1;
}

/* The value of "key=N" in a STATS text, or -1 when the key is missing. */
static long long stat_value(const char *text, const char *key)
{
    char k[128];
    snprintf(k, sizeof k, "%s=", key);
    for (const char *p = text; p && (p = strstr(p, k)) != NULL; p++)
        if (p == text || p[-1] == '\n')
            return strtoll(p + strlen(k), NULL, 10);
    return -1;
}

static void log_reset(void)
{
    pthread_mutex_lock(&log_mu);
    loglen = 0;
    logbuf[0] = 0;
    pthread_mutex_unlock(&log_mu);
}

typedef struct srv {
    dtf_shard *shard;
    dtf_server *server;
    pthread_t th;
    int rc;
    char addr[64];
} srv;

static void *srv_main(void *arg)
{
    srv *s = arg;
    s->rc = dtf_server_run(s->server);
    return NULL;
}

#define CHECKSUM 0xfeedfacecafebeefULL

/* A server in a thread; its shard starts at step0 (as if restored). */
static int srv_start_at(srv *s, const dtf_shard_config *c, const float *params,
                        const char *token, int64_t step0)
{
    memset(s, 0, sizeof *s);
    s->shard = dtf_shard_new(c, params);
    if (!s->shard)
        return -1;
    s->shard->step = step0;
    dtf_server_config sc;
    memset(&sc, 0, sizeof sc);
    sc.host = "127.0.0.1";
    sc.port = 0;
    sc.checksum = CHECKSUM;
    sc.token = token;
    sc.token_len = token ? strlen(token) : 0;
    sc.hello_timeout = 5;
    sc.log = test_log;
    s->server = dtf_server_new(&sc, s->shard);
    if (!s->server)
        return -1;
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", dtf_server_port(s->server));
    return pthread_create(&s->th, NULL, srv_main, s);
}

static int srv_start(srv *s, const dtf_shard_config *c, const float *params, const char *token)
{
    return srv_start_at(s, c, params, token, 0);
}

static void srv_join(srv *s)
{
    pthread_join(s->th, NULL);
    dtf_server_free(s->server);
    dtf_shard_free(s->shard);
}

static dtf_client_config client_config(const char *const *addrs, int n, int index, uint64_t P)
{
    dtf_client_config cc;
    memset(&cc, 0, sizeof cc);
    cc.addrs = addrs;
    cc.naddrs = n;
    cc.role = DTF_ROLE_WORKER;
    cc.index = index;
    cc.P = P;
    cc.checksum = CHECKSUM;
    cc.connect_timeout = 5;
    cc.timeout = 5;
    cc.wait_timeout = 5;
    cc.log = test_log;
    return cc;
}

/* A raw TCP connection to the server, for hostile peers. */
static int raw_connect(const srv *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)dtf_server_port(s->server));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Reads until the server closes (returns bytes read, or -1 on timeout). */
static ssize_t read_until_close(int fd, uint8_t *b, size_t n)
{
    size_t got = 0;
    for (;;) {
        ssize_t k = read(fd, b + got, n - got);
        if (k == 0)
            return (ssize_t)got;
        if (k < 0)
            return -1;
        got += (size_t)k;
        if (got == n)
            return (ssize_t)got;
    }
}

/* Sends bytes and expects the server to answer with an ERROR frame whose
 * text contains `want`, then close. */
static void expect_rejected(const srv *s, const void *bytes, size_t n, const char *want)
{
    int fd = raw_connect(s);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK_EQ_INT(write(fd, bytes, n), n);
    uint8_t b[4096];
    ssize_t got = read_until_close(fd, b, sizeof b - 1);
    close(fd);
    if (got < DTF_WIRE_HDR) {
        FAIL("no ERROR frame for \"%s\" (read %zd)", want, got);
        return;
    }
    dtf_wire_hdr h;
    CHECK_EQ_INT(dtf_wire_decode_hdr(b, DTF_WIRE_HDR, 4096, &h), DTF_WIRE_FRAME);
    CHECK_EQ_INT(h.type, DTF_MSG_ERROR);
    b[got] = 0;
    CHECK_STR_CONTAINS((char *)b + DTF_WIRE_HDR, want);
}

static size_t hello_frame(uint8_t *out, uint64_t P, uint64_t checksum, const char *token,
                          uint32_t index)
{
    uint8_t p[300];
    dtf_wire_hello m = {DTF_ROLE_WORKER, index, P, checksum, token,
                        (uint16_t)(token ? strlen(token) : 0), DTF_DTYPE_FP32};
    size_t n = dtf_wire_encode_hello(p, sizeof p, &m);
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_HELLO, 1, 0, 0, 0, 0);
    return dtf_wire_frame(out, 400, &h, p, (uint32_t)n);
}

TEST(loopback_async_two_shards)
{
    enum { P = 1001 };
    static float init[P], params[P], grads[P];
    for (int i = 0; i < P; i++)
        init[i] = (float)i * 0.01f;
    srv s[2];
    for (int i = 0; i < 2; i++) {
        dtf_shard_config c = sgd_config(P, 2, i, 1, 0, 0, 0.5f);
        if (srv_start(&s[i], &c, init, NULL) != 0) {
            FAIL("server %d: %s", i, dtf_error());
            return;
        }
    }
    const char *addrs[2] = {s[0].addr, s[1].addr};
    dtf_client_config cc = client_config(addrs, 2, 0, P);
    dtf_client *cl = dtf_client_connect(&cc);
    if (!cl) {
        FAIL("connect: %s", dtf_error());
        return;
    }
    uint64_t off, cnt;
    dtf_client_range(cl, 1, &off, &cnt);
    CHECK_EQ_INT(off, 500);
    CHECK_EQ_INT(cnt, 501);
    CHECK_EQ_INT(dtf_client_sync(cl), 0);
    int64_t gs = -1;
    CHECK_EQ_INT(dtf_client_pull(cl, params, 0, &gs), 0);
    CHECK_EQ_INT(gs, 0);
    CHECK(memcmp(params, init, sizeof params) == 0);
    for (int i = 0; i < P; i++)
        grads[i] = 1.0f;
    CHECK_EQ_INT(dtf_client_push(cl, grads, NULL, 0, &gs), 0);
    CHECK_EQ_INT(gs, 1);
    CHECK_EQ_INT(dtf_client_last_push(cl, 1), DTF_PUSH_APPLIED);
    CHECK_EQ_INT(dtf_client_push_pull(cl, grads, NULL, params, 1, &gs), 0);
    CHECK_EQ_INT(gs, 2);
    CHECK_NEAR(params[0], 0.0 - 1.0, 1e-5);
    CHECK_NEAR(params[P - 1], (P - 1) * 0.01 - 1.0, 1e-4);
    CHECK_EQ_INT(dtf_client_get_step(cl, &gs), 0);
    CHECK_EQ_INT(gs, 2);
    /* the zero-copy path retains and releases the storage */
    dtf_storage *st = dtf_storage_wrap(grads, P, 0);
    CHECK_EQ_INT(dtf_client_push(cl, grads, st, 2, &gs), 0);
    CHECK_EQ_INT(st->refs, 1);
    dtf_storage_release(st);
    char *texts[2] = {NULL, NULL};
    CHECK_EQ_INT(dtf_client_stats(cl, texts), 0);
    CHECK_STR_CONTAINS(texts[0], "index=0\n");
    CHECK_STR_CONTAINS(texts[1], "step=3\n");
    CHECK_STR_CONTAINS(texts[1], "worker.0.pushes=3\n");
    CHECK_STR_CONTAINS(texts[1], "reason=running\n");
    free(texts[0]);
    free(texts[1]);
    CHECK_EQ_INT(dtf_client_done(cl, 3), 0);
    dtf_client_free(cl);
    for (int i = 0; i < 2; i++) {
        srv_join(&s[i]);
        CHECK_EQ_INT(s[i].rc, 0);
    }
    CHECK(log_has("ps 1: serving parameters [500, 1001) of 1001 (2.0 KB) on port"));
    CHECK(log_has("ps 0: all 1 workers are done"));
}

TEST(loopback_sync_two_workers)
{
    enum { P = 64 };
    static float params[P], g0[P], g1[P];
    srv s;
    dtf_shard_config c = sgd_config(P, 1, 0, 2, 1, 0, 1.0f);
    if (srv_start(&s, &c, NULL, "tok") != 0) {
        FAIL("server: %s", dtf_error());
        return;
    }
    const char *addrs[1] = {s.addr};
    dtf_client_config c0 = client_config(addrs, 1, 0, P), c1 = client_config(addrs, 1, 1, P);
    c0.token = c1.token = "tok";
    c0.token_len = c1.token_len = 3;
    dtf_client *a = dtf_client_connect(&c0), *b = dtf_client_connect(&c1);
    CHECK(a && b);
    if (!a || !b)
        return;
    CHECK_EQ_INT(dtf_client_sync(a), 1);
    for (int i = 0; i < P; i++) {
        g0[i] = 1.0f;
        g1[i] = 3.0f;
    }
    int64_t gs;
    CHECK_EQ_INT(dtf_client_push(a, g0, NULL, 0, &gs), 0);
    CHECK_EQ_INT(gs, 0);
    CHECK_EQ_INT(dtf_client_last_push(a, 0), DTF_PUSH_PENDING);
    CHECK_EQ_INT(dtf_client_push(a, g0, NULL, 0, &gs), 0);
    CHECK_EQ_INT(dtf_client_last_push(a, 0), DTF_PUSH_DUPLICATE);
    CHECK_EQ_INT(dtf_client_push(b, g1, NULL, 0, &gs), 0);
    CHECK_EQ_INT(gs, 1);
    CHECK_EQ_INT(dtf_client_last_push(b, 0), DTF_PUSH_APPLIED);
    CHECK_EQ_INT(dtf_client_pull(a, params, 1, &gs), 0);
    CHECK_EQ_INT(gs, 1);
    CHECK_NEAR(params[5], -2.0, 1e-6);
    /* stale: b pushes for step 0 again */
    CHECK_EQ_INT(dtf_client_push(b, g1, NULL, 0, &gs), 0);
    CHECK_EQ_INT(dtf_client_last_push(b, 0), DTF_PUSH_STALE);
    /* a finishes; b's next push completes the step alone, and b's pull
     * with min_step 2 is answered */
    CHECK_EQ_INT(dtf_client_done(a, 1), 0);
    CHECK_EQ_INT(dtf_client_push_pull(b, g1, NULL, params, 1, &gs), 0);
    CHECK_EQ_INT(gs, 2);
    CHECK_NEAR(params[0], -5.0, 1e-6);
    CHECK_EQ_INT(dtf_client_done(b, 2), 0);
    dtf_client_free(a);
    dtf_client_free(b);
    srv_join(&s);
    CHECK_EQ_INT(s.rc, 0);
}

TEST(loopback_sync_shards_at_different_steps)
{
    /* ps 1 came back from an older or newer checkpoint than ps 0: each
     * shard gets the gradient tagged with its own step, so neither drops
     * it as stale. */
    enum { P = 10 };
    static float params[P], grads[P];
    srv s[2];
    for (int i = 0; i < 2; i++) {
        dtf_shard_config c = sgd_config(P, 2, i, 1, 1, 0, 1.0f);
        if (srv_start_at(&s[i], &c, NULL, NULL, i == 0 ? 3 : 8) != 0) {
            FAIL("server %d: %s", i, dtf_error());
            return;
        }
    }
    const char *addrs[2] = {s[0].addr, s[1].addr};
    dtf_client_config cc = client_config(addrs, 2, 0, P);
    dtf_client *cl = dtf_client_connect(&cc);
    if (!cl) {
        FAIL("connect: %s", dtf_error());
        return;
    }
    int64_t gs;
    CHECK_EQ_INT(dtf_client_pull(cl, params, 0, &gs), 0);
    CHECK_EQ_INT(gs, 3);
    for (int i = 0; i < P; i++)
        grads[i] = 1.0f;
    for (int k = 0; k < 3; k++) {
        CHECK_EQ_INT(dtf_client_push_pull(cl, grads, NULL, params, gs, &gs), 0);
        CHECK_EQ_INT(dtf_client_last_push(cl, 1), DTF_PUSH_APPLIED);
    }
    CHECK_EQ_INT(gs, 6);
    CHECK_NEAR(params[0], -3.0, 1e-6);
    CHECK_NEAR(params[P - 1], -3.0, 1e-6);
    char *texts[2] = {NULL, NULL};
    CHECK_EQ_INT(dtf_client_stats(cl, texts), 0);
    CHECK_STR_CONTAINS(texts[1], "step=11\n");
    CHECK_STR_CONTAINS(texts[1], "stale=0\n");
    free(texts[0]);
    free(texts[1]);
    CHECK_EQ_INT(dtf_client_done(cl, gs), 0);
    dtf_client_free(cl);
    for (int i = 0; i < 2; i++)
        srv_join(&s[i]);
}

TEST(loopback_sync_pull_after_a_restart_does_not_wait_for_the_next_step)
{
    /* A ps restored at step 3 while the workers were at step 10: their
     * pushes tagged 10 complete step 4, and the pulls that follow (min_step
     * 11) are answered with step 4 at once. Waiting for step 5 would need
     * the next pushes, which the workers send only after these pulls. */
    enum { P = 8 };
    static float params[P], grads[P];
    srv s;
    dtf_shard_config c = sgd_config(P, 1, 0, 2, 1, 0, 1.0f);
    if (srv_start_at(&s, &c, NULL, NULL, 3) != 0) {
        FAIL("server: %s", dtf_error());
        return;
    }
    const char *addrs[1] = {s.addr};
    dtf_client_config c0 = client_config(addrs, 1, 0, P), c1 = client_config(addrs, 1, 1, P);
    c0.wait_timeout = c1.wait_timeout = 3;
    dtf_client *a = dtf_client_connect(&c0), *b = dtf_client_connect(&c1);
    CHECK(a && b);
    if (!a || !b)
        return;
    for (int i = 0; i < P; i++)
        grads[i] = 1.0f;
    int64_t gs = -1;
    CHECK_EQ_INT(dtf_client_push(a, grads, NULL, 10, &gs), 0);
    CHECK_EQ_INT(dtf_client_last_push(a, 0), DTF_PUSH_PENDING);
    CHECK_EQ_INT(dtf_client_push(b, grads, NULL, 10, &gs), 0);
    CHECK_EQ_INT(dtf_client_last_push(b, 0), DTF_PUSH_APPLIED);
    CHECK_EQ_INT(gs, 4);
    double t0 = dtf_now();
    CHECK_EQ_INT(dtf_client_pull(b, params, 11, &gs), 0);
    CHECK_EQ_INT(gs, 4);
    CHECK_EQ_INT(dtf_client_pull(a, params, 11, &gs), 0);
    CHECK_EQ_INT(gs, 4);
    CHECK(dtf_now() - t0 < 1.0);
    CHECK_NEAR(params[0], -1.0, 1e-6);
    /* a plain pull for a later step still waits for at most the next one */
    CHECK_EQ_INT(dtf_client_push(a, grads, NULL, 4, &gs), 0);
    CHECK_EQ_INT(dtf_client_push_pull(b, grads, NULL, params, 4, &gs), 0);
    CHECK_EQ_INT(gs, 5);
    CHECK_EQ_INT(dtf_client_done(a, 5), 0);
    CHECK_EQ_INT(dtf_client_done(b, 5), 0);
    dtf_client_free(a);
    dtf_client_free(b);
    srv_join(&s);
    CHECK_EQ_INT(s.rc, 0);
}

/* ---- a scripted ps: frames by hand, to kill the ps at a chosen moment ---- */

typedef struct fake_ps {
    int lfd, port;
    pthread_t th;
    int64_t step0;       /* the step it says at HELLO (the second time: restored) */
    int resent_push;     /* the second connection's first request was a PUSH */
    int ok;
} fake_ps;

static int read_full(int fd, uint8_t *b, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, b + got, n - got);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

/* Reads one frame: its header into *h, its payload (up to cap) into body. */
static int read_frame(int fd, dtf_wire_hdr *h, uint8_t *body, size_t cap)
{
    uint8_t hb[DTF_WIRE_HDR];
    if (read_full(fd, hb, sizeof hb) < 0 ||
        dtf_wire_decode_hdr(hb, sizeof hb, 1u << 20, h) != DTF_WIRE_FRAME || h->len > cap)
        return -1;
    return read_full(fd, body, h->len);
}

static void send_reply(int fd, int type, uint32_t id, uint64_t off, uint64_t count, int64_t step,
                       int aux, const void *payload, uint32_t len)
{
    uint8_t b[4096];
    dtf_wire_hdr h = dtf_wire_make(type, id, off, count, step, len);
    h.aux = (uint8_t)aux;
    size_t n = dtf_wire_frame(b, sizeof b, &h, payload, len);
    if (write(fd, b, n) != (ssize_t)n)
        return;
}

static int fake_hello(int fd, int64_t step, uint64_t P)
{
    dtf_wire_hdr h;
    uint8_t body[512];
    if (read_frame(fd, &h, body, sizeof body) < 0 || h.type != DTF_MSG_HELLO)
        return -1;
    dtf_wire_hello_reply r = {0, 1, 2, 1, 0};
    r.P = P;
    uint8_t rb[DTF_WIRE_HELLO_REPLY_LEN];
    dtf_wire_encode_hello_reply(rb, sizeof rb, &r);
    send_reply(fd, DTF_MSG_HELLO_REPLY, h.id, 0, P, step, 1, rb, sizeof rb);
    return 0;
}

/* One sync ps with P = 4 floats: acknowledges the first PUSH as pending,
 * takes the PULL and dies (closes) before answering it; comes back at the
 * step before, and must be sent the PUSH again before the PULL. */
static void *fake_ps_main(void *arg)
{
    fake_ps *f = arg;
    enum { P = 4 };
    uint8_t body[4096];
    float params[P] = {1, 2, 3, 4};
    dtf_wire_hdr h;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0 || fake_hello(fd, f->step0, P) < 0)
        return NULL;
    if (read_frame(fd, &h, body, sizeof body) < 0 || h.type != DTF_MSG_PUSH)
        return NULL;
    send_reply(fd, DTF_MSG_PUSH_REPLY, h.id, 0, 0, f->step0, DTF_PUSH_PENDING, NULL, 0);
    if (read_frame(fd, &h, body, sizeof body) < 0 || h.type != DTF_MSG_PULL)
        return NULL;
    close(fd); /* killed: the pending gradient is lost with it */
    fd = accept(f->lfd, NULL, NULL);
    if (fd < 0 || fake_hello(fd, f->step0, P) < 0)
        return NULL;
    if (read_frame(fd, &h, body, sizeof body) < 0)
        return NULL;
    f->resent_push = h.type == DTF_MSG_PUSH;
    if (h.type == DTF_MSG_PUSH) {
        send_reply(fd, DTF_MSG_PUSH_REPLY, h.id, 0, 0, f->step0 + 1, DTF_PUSH_APPLIED, NULL, 0);
        if (read_frame(fd, &h, body, sizeof body) == 0 && h.type == DTF_MSG_PULL) {
            send_reply(fd, DTF_MSG_PULL_REPLY, h.id, 0, P, f->step0 + 1, 0, params, sizeof params);
            f->ok = 1;
        }
    }
    /* wait for the client to go */
    while (read(fd, body, sizeof body) > 0)
        ;
    close(fd);
    return NULL;
}

TEST(client_resends_a_push_the_restarted_ps_lost)
{
    fake_ps f;
    memset(&f, 0, sizeof f);
    f.step0 = 93;
    f.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    CHECK(bind(f.lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(f.lfd, 4) == 0 &&
          getsockname(f.lfd, (struct sockaddr *)&a, &al) == 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    pthread_create(&f.th, NULL, fake_ps_main, &f);
    const char *addrs[1] = {addr};
    dtf_client_config cc = client_config(addrs, 1, 0, 4);
    cc.checksum = 0;
    cc.reconnect_timeout = 5;
    dtf_client *cl = dtf_client_connect(&cc);
    CHECK(cl != NULL);
    if (cl) {
        static float grads[4] = {1, 1, 1, 1}, params[4];
        int64_t gs = -1;
        CHECK_EQ_INT(dtf_client_push_pull(cl, grads, NULL, params, 93, &gs), 0);
        CHECK_EQ_INT(gs, 94);
        CHECK_NEAR(params[3], 4.0, 1e-6);
        dtf_client_free(cl);
    }
    pthread_join(f.th, NULL);
    close(f.lfd);
    CHECK(f.resent_push);
    CHECK(f.ok);
}

TEST(async_push_resent_after_a_reconnect_is_not_applied_twice)
{
    /* The connection drops after the ps applied a push but before its reply
     * arrived; the client re-sends it (same id, same step tag) on a new
     * connection: the ps answers DUPLICATE and applies it once. */
    enum { P = 4 };
    srv s;
    dtf_shard_config c = sgd_config(P, 1, 0, 1, 0, 0, 1.0f);
    if (srv_start(&s, &c, NULL, NULL) != 0) {
        FAIL("server: %s", dtf_error());
        return;
    }
    static const float ones[P] = {1, 1, 1, 1};
    uint8_t b[1024], got[1024];
    int results[3];
    for (int k = 0; k < 3; k++) {
        /* connections 1 and 2 send push id 7 tag 0; 3 sends id 8 tag 1 */
        int fd = raw_connect(&s);
        size_t n = hello_frame(b, P, CHECKSUM, NULL, 0);
        dtf_wire_hdr h = dtf_wire_make(DTF_MSG_PUSH, k < 2 ? 7 : 8, 0, P, k < 2 ? 0 : 1, 0);
        n += dtf_wire_frame(b + n, sizeof b - n, &h, ones, sizeof ones);
        CHECK_EQ_INT(write(fd, b, n), n);
        size_t want = 2 * DTF_WIRE_HDR + DTF_WIRE_HELLO_REPLY_LEN;
        CHECK_EQ_INT(read_full(fd, got, want), 0);
        dtf_wire_hdr rh;
        CHECK_EQ_INT(dtf_wire_decode_hdr(got + DTF_WIRE_HDR + DTF_WIRE_HELLO_REPLY_LEN, DTF_WIRE_HDR,
                                         1024, &rh), DTF_WIRE_FRAME);
        CHECK_EQ_INT(rh.type, DTF_MSG_PUSH_REPLY);
        results[k] = rh.aux;
        if (k == 1)
            CHECK_EQ_INT(rh.step, 1);
        close(fd);
    }
    CHECK_EQ_INT(results[0], DTF_PUSH_APPLIED);
    CHECK_EQ_INT(results[1], DTF_PUSH_DUPLICATE);
    CHECK_EQ_INT(results[2], DTF_PUSH_APPLIED);
    const char *addrs[1] = {s.addr};
    dtf_client_config cc = client_config(addrs, 1, 0, P);
    dtf_client *cl = dtf_client_connect(&cc);
    CHECK(cl != NULL);
    if (cl) {
        static float params[P];
        int64_t gs;
        CHECK_EQ_INT(dtf_client_pull(cl, params, 0, &gs), 0);
        CHECK_EQ_INT(gs, 2);
        CHECK_NEAR(params[0], -2.0, 1e-6);
        CHECK_EQ_INT(dtf_client_done(cl, gs), 0);
        dtf_client_free(cl);
    }
    srv_join(&s);
}

TEST(loopback_hostile_peers)
{
    enum { P = 16 };
    srv s;
    log_reset();
    dtf_shard_config c = sgd_config(P, 1, 0, 1, 0, 0, 1.0f);
    if (srv_start(&s, &c, NULL, "sesame") != 0) {
        FAIL("server: %s", dtf_error());
        return;
    }
    uint8_t f[512];
    size_t n;
    expect_rejected(&s, "GET / HTTP/1.1\r\n\r\n", 18, "bad magic");
    n = hello_frame(f, P, CHECKSUM, "sesame", 0);
    f[4] = 2;
    expect_rejected(&s, f, n, "protocol version 2");
    n = hello_frame(f, P, CHECKSUM, "wrong!", 0);
    expect_rejected(&s, f, n, "wrong token");
    CHECK(!log_has("wrong!"));      /* tokens never reach the log */
    CHECK(!log_has("sesame"));
    n = hello_frame(f, P, CHECKSUM, NULL, 0);
    expect_rejected(&s, f, n, "needs a token");
    n = hello_frame(f, P, 0x1234, "sesame", 0);
    expect_rejected(&s, f, n, "worker runs a different model: layout checksum 0000000000001234");
    n = hello_frame(f, P, CHECKSUM, "sesame", 5);
    expect_rejected(&s, f, n, "worker index 5 out of range");
    {   /* a request before HELLO */
        dtf_wire_hdr h = dtf_wire_make(DTF_MSG_PULL, 9, 0, 4, 0, 0);
        n = dtf_wire_frame(f, sizeof f, &h, NULL, 0);
        expect_rejected(&s, f, n, "PULL before HELLO");
    }
    {   /* a frame announcing 1 GiB */
        dtf_wire_hdr h = dtf_wire_make(DTF_MSG_PUSH, 9, 0, 1u << 28, 0, 0);
        h.len = 1u << 30;
        dtf_wire_encode_hdr(f, &h);
        expect_rejected(&s, f, DTF_WIRE_HDR, "over the cap");
    }
    {   /* a pull outside the shard after a good HELLO */
        n = hello_frame(f, P, CHECKSUM, "sesame", 0);
        dtf_wire_hdr h = dtf_wire_make(DTF_MSG_PULL, 2, 10, 10, 0, 0);
        n += dtf_wire_frame(f + n, sizeof f - n, &h, NULL, 0);
        int fd = raw_connect(&s);
        CHECK_EQ_INT(write(fd, f, n), n);
        uint8_t b[1024];
        ssize_t got = read_until_close(fd, b, sizeof b - 1);
        close(fd);
        CHECK(got > 2 * DTF_WIRE_HDR + DTF_WIRE_HELLO_REPLY_LEN);
        if (got > 2 * DTF_WIRE_HDR + DTF_WIRE_HELLO_REPLY_LEN) {
            b[got] = 0;
            CHECK_STR_CONTAINS((char *)b + 2 * DTF_WIRE_HDR + DTF_WIRE_HELLO_REPLY_LEN,
                               "outside this shard's range [0, 16)");
        }
    }
    /* half a frame, then a good client is served meanwhile, then the
     * half-frame peer disconnects */
    int slow = raw_connect(&s);
    n = hello_frame(f, P, CHECKSUM, "sesame", 0);
    CHECK_EQ_INT(write(slow, f, 20), 20);
    const char *addrs[1] = {s.addr};
    dtf_client_config cc = client_config(addrs, 1, 0, P);
    cc.token = "sesame";
    cc.token_len = 6;
    dtf_client *cl = dtf_client_connect(&cc);
    CHECK(cl != NULL);
    static float params[P];
    int64_t gs;
    if (cl)
        CHECK_EQ_INT(dtf_client_pull(cl, params, 0, &gs), 0);
    close(slow);
    CHECK(wait_log("disconnected mid-frame (20 of 40 header bytes)", 10));
    /* a client with the wrong token gets the ps's reason, not a retry loop */
    cc.token = "nope";
    cc.token_len = 4;
    dtf_client *bad = dtf_client_connect(&cc);
    CHECK(bad == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "ps 0 at 127.0.0.1:");
    CHECK_STR_CONTAINS(dtf_error(), ": wrong token");
    if (cl) {
        CHECK_EQ_INT(dtf_client_done(cl, 0), 0);
        dtf_client_free(cl);
    }
    srv_join(&s);
    CHECK_EQ_INT(s.rc, 0);
    CHECK(log_has("closing connection from 127.0.0.1:"));
    CHECK(log_has("closing connection from worker 0 (127.0.0.1:"));
}

TEST(loopback_backpressure)
{
    /* A peer that pipelines 2000 pulls of 16 KB and does not read the
     * replies: the ps stops reading from it once 16 MB are queued, keeps
     * serving others, and answers every pull once the peer reads. */
    enum { P = 4096, NPULL = 2000 };
    srv s;
    dtf_shard_config c = sgd_config(P, 1, 0, 1, 0, 0, 1.0f);
    if (srv_start(&s, &c, NULL, NULL) != 0) {
        FAIL("server: %s", dtf_error());
        return;
    }
    static uint8_t req[400 + NPULL * DTF_WIRE_HDR];
    uint8_t p[64];
    dtf_wire_hello m = {DTF_ROLE_OBSERVER, 0, P, CHECKSUM, NULL, 0, DTF_DTYPE_FP32};
    size_t n = dtf_wire_encode_hello(p, sizeof p, &m);
    dtf_wire_hdr h = dtf_wire_make(DTF_MSG_HELLO, 1, 0, 0, 0, 0);
    size_t len = dtf_wire_frame(req, sizeof req, &h, p, (uint32_t)n);
    for (int i = 0; i < NPULL; i++) {
        h = dtf_wire_make(DTF_MSG_PULL, 2 + (uint32_t)i, 0, P, 0, 0);
        len += dtf_wire_frame(req + len, sizeof req - len, &h, NULL, 0);
    }
    int fd = raw_connect(&s);
    CHECK_EQ_INT(write(fd, req, len), len);
    /* another client is served while the ps has stopped reading the peer */
    const char *addrs[1] = {s.addr};
    dtf_client_config cc = client_config(addrs, 1, 0, P);
    dtf_client *cl = dtf_client_connect(&cc);
    CHECK(cl != NULL);
    static float params[P];
    int64_t gs;
    char *texts[1] = {NULL};
    long long pauses = -1;
    for (double end = dtf_now() + 10; cl && pauses <= 0 && dtf_now() < end;) {
        CHECK_EQ_INT(dtf_client_stats(cl, texts), 0);
        pauses = stat_value(texts[0], "backpressure_pauses");
        free(texts[0]);
        texts[0] = NULL;
        if (pauses <= 0)
            usleep(5000);
    }
    CHECK(pauses > 0);
    if (cl)
        CHECK_EQ_INT(dtf_client_pull(cl, params, 0, &gs), 0);
    /* now read everything the slow peer was sent */
    size_t want = DTF_WIRE_HDR + DTF_WIRE_HELLO_REPLY_LEN +
                  (size_t)NPULL * (DTF_WIRE_HDR + 4 * P), got = 0;
    static uint8_t b[1 << 16];
    while (got < want) {
        ssize_t k = read(fd, b, sizeof b);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    CHECK_EQ_INT(got, want);
    if (cl) {
        CHECK_EQ_INT(dtf_client_stats(cl, texts), 0);
        CHECK(stat_value(texts[0], "backpressure_pauses") > 0);
        CHECK_EQ_INT(stat_value(texts[0], "pulls"), 2001);
        free(texts[0]);
        CHECK_EQ_INT(dtf_client_done(cl, 0), 0);
        dtf_client_free(cl);
    }
    srv_join(&s);
    CHECK_EQ_INT(s.rc, 0);
}

TEST(client_gives_up_and_names_the_ps)
{
    /* a port nobody listens on: bind one, close it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    const char *addrs[1] = {addr};
    dtf_client_config cc = client_config(addrs, 1, 0, 10);
    cc.connect_timeout = 0.5;
    log_reset();
    double t0 = dtf_now();
    dtf_client *cl = dtf_client_connect(&cc);
    double dt = dtf_now() - t0;
    CHECK(cl == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "ps 0 at 127.0.0.1:");
    CHECK_STR_CONTAINS(dtf_error(), "not reachable within 0.5 s (connection refused)");
    CHECK(dt >= 0.4 && dt < 2.0);
    CHECK(log_has("waiting for ps 0 at 127.0.0.1:"));
    CHECK(log_has("(connection refused), retry in 0.1 s"));
    const char *bad[1] = {"no-port"};
    cc.addrs = bad;
    CHECK(dtf_client_connect(&cc) == NULL);
    CHECK_STR_CONTAINS(dtf_error(), "is not HOST:PORT");
}

RUN_TESTS("test_net")
