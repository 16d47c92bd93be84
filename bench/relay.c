/* relay: a TCP relay that holds every byte for a fixed delay each way, the
 * round-trip latency this kernel's missing netem would give (bench/netlink).
 *
 *   relay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_US
 *
 * Each accepted connection is paired with a new one to the target; what
 * one side sends is queued with the time it arrived and written to the
 * other DELAY_US later, so a request and its reply each take DELAY_US
 * more (a round trip 2 x DELAY_US). A direction stops reading while 16 MiB
 * wait in its queue (backpressure, as a link's buffer). One thread, poll(). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXPAIRS 16
#define CHUNK (256 * 1024)
#define QUEUE_CAP (16u << 20)

typedef struct chunk {
    struct chunk *next;
    double due;
    size_t len, off;
    char data[];
} chunk;

typedef struct {
    int from, to;
    chunk *head, *tail;
    size_t queued;
    int eof;          /* from has closed its side */
} dir;

typedef struct {
    int used;
    dir d[2];         /* client -> target, target -> client */
} pair;

static pair pairs[MAXPAIRS];
static double delay;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int tcp(const char *host, const char *port, int listening)
{
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = listening ? AI_PASSIVE : 0;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM, 0), one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int r = listening ? bind(fd, res->ai_addr, res->ai_addrlen) : connect(fd, res->ai_addr, res->ai_addrlen);
        if (r < 0 || (listening && listen(fd, 16) < 0)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    return fd;
}

static void close_pair(pair *p)
{
    for (int k = 0; k < 2; k++)
        while (p->d[k].head) {
            chunk *c = p->d[k].head;
            p->d[k].head = c->next;
            free(c);
        }
    close(p->d[0].from);
    close(p->d[0].to);
    p->used = 0;
}

/* Reads what is there into a new chunk. -1: the pair is broken. */
static int pull_in(dir *d)
{
    chunk *c = malloc(sizeof *c + CHUNK);
    if (!c)
        return -1;
    ssize_t n = read(d->from, c->data, CHUNK);
    if (n <= 0) {
        free(c);
        if (n == 0) {
            d->eof = 1;
            return 0;
        }
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    }
    c->next = NULL;
    c->due = now() + delay;
    c->len = (size_t)n;
    c->off = 0;
    if (d->tail)
        d->tail->next = c;
    else
        d->head = c;
    d->tail = c;
    d->queued += (size_t)n;
    return 0;
}

/* Writes the chunks that are due. -1: the pair is broken. */
static int push_out(dir *d, double t)
{
    while (d->head && d->head->due <= t) {
        chunk *c = d->head;
        ssize_t n = write(d->to, c->data + c->off, c->len - c->off);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        c->off += (size_t)n;
        d->queued -= (size_t)n;
        if (c->off < c->len)
            return 0;
        d->head = c->next;
        if (!d->head)
            d->tail = NULL;
        free(c);
    }
    if (d->eof && !d->head)
        shutdown(d->to, SHUT_WR);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: relay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_US\n");
        return 2;
    }
    delay = atof(argv[5]) * 1e-6;
    int lis = tcp(argv[1], argv[2], 1);
    if (lis < 0) {
        perror("relay: listen");
        return 1;
    }
    for (;;) {
        struct pollfd fds[1 + 4 * MAXPAIRS];
        int nf = 0, map[1 + 4 * MAXPAIRS];
        double t = now(), next = -1;
        fds[nf].fd = lis;
        fds[nf].events = POLLIN;
        map[nf++] = -1;
        for (int i = 0; i < MAXPAIRS; i++) {
            if (!pairs[i].used)
                continue;
            for (int k = 0; k < 2; k++) {
                dir *d = &pairs[i].d[k];
                short in = !d->eof && d->queued < QUEUE_CAP ? POLLIN : 0;
                short out = d->head && d->head->due <= t ? POLLOUT : 0;
                if (d->head && d->head->due > t && (next < 0 || d->head->due < next))
                    next = d->head->due;
                fds[nf].fd = d->from;
                fds[nf].events = in;
                map[nf++] = i * 4 + k * 2;
                fds[nf].fd = d->to;
                fds[nf].events = out;
                map[nf++] = i * 4 + k * 2 + 1;
            }
        }
        struct timespec wait, *tw = NULL;
        if (next >= 0) { /* ppoll: sub-millisecond delays need no spinning */
            double w = next - t;
            wait.tv_sec = (time_t)w;
            wait.tv_nsec = (long)((w - (double)wait.tv_sec) * 1e9);
            tw = &wait;
        }
        if (ppoll(fds, (nfds_t)nf, tw, NULL) < 0 && errno != EINTR)
            return 1;
        if (fds[0].revents & POLLIN) {
            int c = accept(lis, NULL, NULL);
            int slot = -1;
            for (int i = 0; i < MAXPAIRS && slot < 0; i++)
                if (!pairs[i].used)
                    slot = i;
            int to = c >= 0 && slot >= 0 ? tcp(argv[3], argv[4], 0) : -1;
            if (to < 0) {
                if (c >= 0)
                    close(c);
            } else {
                int one = 1;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
                memset(&pairs[slot], 0, sizeof pairs[slot]);
                pairs[slot].used = 1;
                pairs[slot].d[0].from = c;
                pairs[slot].d[0].to = to;
                pairs[slot].d[1].from = to;
                pairs[slot].d[1].to = c;
            }
        }
        for (int j = 1; j < nf; j++) {
            pair *p = &pairs[map[j] / 4];
            dir *d = &p->d[(map[j] / 2) % 2];
            if (!p->used)
                continue;
            int r = 0;
            if (map[j] % 2 == 0 && (fds[j].revents & (POLLIN | POLLHUP | POLLERR)))
                r = pull_in(d);
            if (r == 0)
                r = push_out(d, now());
            if (r < 0 || (p->d[0].eof && p->d[1].eof && !p->d[0].head && !p->d[1].head))
                close_pair(p);
        }
    }
}
