/* net: the parameter server and the worker-side client over libevent.
 *
 * Both run one event loop (event_base) each and speak the frames of wire.h
 * over TCP. The server serves one dtf_shard (ps.h); the client connects to
 * every ps at once and makes pull/push look synchronous: each call sends a
 * request to every shard (all in flight in parallel) and runs the loop
 * until every shard has answered.
 *
 * Errors: functions return 0 / -1 (or NULL) and set dtf_error(); a network
 * failure names the ps ("ps 1 at 127.0.0.1:8001: connection closed"). Log
 * lines go through the dtf_log_fn the config carries (NULL: silent). */
#ifndef DTF_NET_H
#define DTF_NET_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "ps.h"
#include "tensor.h"

/* The defaults of the timeouts (seconds), in one place: ps.serve and
 * ps.connect take them when an option is not given, and train.lua's
 * hyperparameters read them from dtf.ps.defaults. */
#define DTF_DEFAULT_CONNECT_TIMEOUT 120.0   /* a worker waits this long for the ps tasks */
#define DTF_DEFAULT_TIMEOUT 60.0            /* one request */
#define DTF_DEFAULT_RECONNECT_TIMEOUT 60.0  /* getting a lost ps back (a restarting pod) */
#define DTF_DEFAULT_SYNC_TIMEOUT 30.0       /* sync: a silent worker is dropped from a step */
#define DTF_DEFAULT_DONE_TIMEOUT 600.0      /* once a worker is done, one with no connection */
#define DTF_DEFAULT_KEEPALIVE 25.0          /* a half-open connection is dropped */
#define DTF_DEFAULT_CHECKPOINT_SECS 30.0    /* between ps checkpoints */

/* ---- server ------------------------------------------------------------------ */

typedef struct dtf_server_config {
    const char *host;          /* address to bind; NULL: every address, IPv6 and
                                * IPv4 (IPv4 alone where IPv6 is off) */
    int port;                  /* 0 picks a free port (dtf_server_port) */
    uint64_t checksum;         /* the parameter layout's checksum */
    const char *token;         /* NULL: any client; else HELLO must carry it */
    size_t token_len;
    double hello_timeout;      /* s a new connection has to say HELLO; 0 = none */
    double idle_timeout;       /* s without a byte from a peer; 0 = none */
    double sync_timeout;       /* sync: s a step waits for a worker before it
                                * is dropped from the replicas; 0 = forever */
    double done_timeout;       /* once a worker is done: s a worker with no
                                * connection is waited for; 0 = forever */
    double keepalive;          /* s after which a peer gone without a FIN is
                                * dropped (TCP keepalive, TCP_USER_TIMEOUT); 0 = 25 */
    int max_connections;       /* 0 = 256 */
    size_t max_payload;        /* frame cap; 0 = DTF_WIRE_MAX_PAYLOAD */
    int wire_dtype;            /* dtf_wire_dtype of PUSH/PULL_REPLY bodies; a peer
                                * with another is refused at HELLO */
    int handle_signals;        /* SIGTERM/SIGINT end dtf_server_run */
    dtf_log_fn log;            /* NULL: silent */
    void *log_ud;
    /* Called after every update of the shard (the step moved): the hook for
     * periodic snapshots. NULL: none. */
    void (*on_step)(void *ud, dtf_shard *shard);
    void *on_step_ud;
    /* What the ps shows of itself (metrics, TensorBoard scalars): fed after
     * every push and once a second. NULL: nothing. */
    struct dtf_pswatch *watch;
} dtf_server_config;

/* Memory stays bounded whatever peers send. Per connection: the input
 * buffer holds at most one read (16 KiB), a header and a short text (float
 * bodies go straight into the shard's gradient buffer); replies queue up
 * to 2 shards + 256 KiB before the ps stops reading from that peer until
 * it has read them (backpressure), plus the reply in hand; at most 8 PULLs
 * wait for a step. For all connections together: while the queued replies
 * pass 2 shards per worker (+ 2) + 4 MiB, no peer with replies of its own
 * still queued is served (the others may each add one reply: what the
 * socket did not take). A peer that breaks the rules is sent an ERROR
 * and closed; past max_connections new ones are refused; one that says no
 * HELLO within hello_timeout is closed. */
typedef struct dtf_server dtf_server;

/* Binds and listens (the shard is borrowed and must outlive the server). */
dtf_server *dtf_server_new(const dtf_server_config *cfg, dtf_shard *shard);
int dtf_server_port(const dtf_server *s);
/* Runs the loop until every worker has sent WORKER_DONE (reason "done"), a
 * signal arrives ("signal") or dtf_server_stop ("stopped"). 0, or -1 with
 * dtf_error() when the loop itself failed. */
int dtf_server_run(dtf_server *s);
const char *dtf_server_reason(const dtf_server *s);
/* Makes dtf_server_run return (from a callback on the loop's thread). */
void dtf_server_stop(dtf_server *s);
/* "key=value\n" lines: the shard's (dtf_shard_stats) and the server's
 * counters (bytes, connections, rejected peers, reason). As snprintf. */
size_t dtf_server_stats(const dtf_server *s, char *buf, size_t n);
void dtf_server_free(dtf_server *s);

/* ---- client ------------------------------------------------------------------ */

typedef struct dtf_client_config {
    const char *const *addrs;  /* "host:port" of ps 0 .. naddrs-1 */
    int naddrs;
    int role;                  /* DTF_ROLE_WORKER or DTF_ROLE_OBSERVER */
    int index;                 /* the worker's index */
    uint64_t P;
    uint64_t checksum;
    const char *token;         /* NULL: none */
    size_t token_len;
    double connect_timeout;    /* s to keep retrying a ps that is not up */
    double timeout;            /* s a request may take */
    double wait_timeout;       /* s a PULL may wait for its min_step */
    double reconnect_timeout;  /* s to get a dropped connection back, then
                                * re-send what was in flight; 0: fail at once */
    double keepalive;          /* as the server's; 0 = 25 */
    size_t max_payload;        /* 0 = DTF_WIRE_MAX_PAYLOAD */
    int copy_sends;            /* 1: copy pushed gradients into the output
                                * buffer instead of sending them by reference */
    int wire_dtype;            /* dtf_wire_dtype: must be the ps tasks' */
    const volatile sig_atomic_t *stop; /* non-zero ends any wait ("stopped"): the
                                * host's trapped SIGTERM or SIGINT, so that a worker
                                * waiting for a lost ps stops now, not after
                                * reconnect_timeout; NULL: none */
    dtf_log_fn log;
    void *log_ud;
} dtf_client_config;

typedef struct dtf_client dtf_client;

/* Connects to every ps (retrying while one is not up), says HELLO to each
 * and checks that their ranges tile [0, P). NULL with dtf_error(). */
dtf_client *dtf_client_connect(const dtf_client_config *cfg);
int dtf_client_nps(const dtf_client *c);
void dtf_client_range(const dtf_client *c, int i, uint64_t *offset, uint64_t *count);
int dtf_client_sync(const dtf_client *c);  /* 1 when the ps run in sync mode */

/* params and grads hold P floats: each shard's slice is read from / written
 * to its range. keep (may be NULL) is the storage behind grads: retained
 * while the gradient is referenced by an output buffer. *global_step gets
 * ps 0's step from its reply. A pushed gradient is tagged, per shard, with
 * that shard's step when its slice was last pulled (step only before the
 * first pull), so shards whose steps differ aggregate it correctly. */
int dtf_client_pull(dtf_client *c, float *params, int64_t min_step, int64_t *global_step);
int dtf_client_push(dtf_client *c, const float *grads, dtf_storage *keep,
                    int64_t step, int64_t *global_step);
/* PUSH then PULL to every shard back to back: one round trip. In sync mode
 * the PULL waits for step + 1. */
int dtf_client_push_pull(dtf_client *c, const float *grads, dtf_storage *keep,
                         float *params, int64_t step, int64_t *global_step);
/* Overlap, async only: exchange_start sends each ps a PULL of its slice
 * into params (ahead of the push: the reply does not include grads) and
 * the PUSH of a copy of grads, and returns; the caller computes on other
 * memory meanwhile, leaves params alone and makes no other call until
 * exchange_finish has collected the round (global_step: ps 0's, as
 * push_pull). Refused in sync mode. Meanwhile the client's own thread runs
 * its event loop: the round crosses the link while the caller computes. */
int dtf_client_exchange_start(dtf_client *c, const float *grads, float *params, int64_t step);
int dtf_client_exchange_finish(dtf_client *c, int64_t *global_step);
int dtf_client_get_step(dtf_client *c, int64_t *global_step);
/* WORKER_DONE to every ps. */
int dtf_client_done(dtf_client *c, int64_t step);
/* texts[i] (malloc'd, NUL-terminated; the caller frees each) gets ps i's
 * STATS_REPLY; texts has dtf_client_nps() entries. */
int dtf_client_stats(dtf_client *c, char **texts);
/* What the last push got from ps i (dtf_push_result), -1 before any. */
int dtf_client_last_push(const dtf_client *c, int i);
void dtf_client_free(dtf_client *c);

#endif
