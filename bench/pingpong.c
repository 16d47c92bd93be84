/* bench/pingpong: the round trip of a plain TCP ping-pong on loopback (one
 * byte each way, TCP_NODELAY, blocking sockets, a server thread), the peer
 * for the round trip of a small dtf pull. Prints the median in us. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int listener;

static void *serve(void *arg)
{
    (void)arg;
    int fd = accept(listener, NULL, NULL);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char b;
    while (read(fd, &b, 1) == 1)
        if (write(fd, &b, 1) != 1)
            break;
    close(fd);
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 1) ||
        getsockname(listener, (struct sockaddr *)&a, &alen)) {
        perror("pingpong");
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, serve, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        perror("pingpong: connect");
        return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    static double t[1 << 20];
    size_t n = 0;
    double t0 = now();
    char b = 'x';
    while (n < sizeof t / sizeof t[0] && now() - t0 < seconds) {
        double s = now();
        if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1)
            break;
        t[n++] = now() - s;
    }
    close(fd);
    pthread_join(th, NULL);
    qsort(t, n, sizeof t[0], cmp);
    printf("%.1f\n", n ? t[n / 2] * 1e6 : 0.0);
    return 0;
}
