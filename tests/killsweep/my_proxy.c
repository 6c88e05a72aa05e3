/* See my_proxy.h. */
#include "my_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct my_proxy {
    int listen_fd;
    struct sockaddr_in server;
    atomic_int armed, cut, stop;
    pthread_t th;
};

static int write_all(int fd, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Forwards one client connection until either side closes, or the armed cut. */
static void serve(my_proxy *p, int cfd)
{
    int sfd = socket(AF_INET, SOCK_STREAM, 0);
    int commit_sent = 0;
    if (sfd < 0 || connect(sfd, (struct sockaddr *)&p->server, sizeof p->server) != 0) {
        if (sfd >= 0)
            close(sfd);
        close(cfd);
        return;
    }
    for (;;) {
        struct pollfd fds[2] = {{cfd, POLLIN, 0}, {sfd, POLLIN, 0}};
        char buf[65536];
        ssize_t r;
        if (poll(fds, 2, 200) < 0 && errno != EINTR)
            break;
        if (atomic_load(&p->stop))
            break;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            r = recv(cfd, buf, sizeof buf, 0);
            if (r <= 0 || write_all(sfd, buf, (size_t)r) != 0)
                break;
            /* a COM_QUERY (0x03) packet starting with COMMIT (with a 4-byte packet header) */
            if (atomic_load(&p->armed) && r >= 11 && memcmp(buf + 4, "\x03" "COMMIT", 7) == 0)
                commit_sent = 1;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            r = recv(sfd, buf, sizeof buf, 0);
            if (r <= 0)
                break;
            if (commit_sent) {
                /* The server has answered COMMIT: it executed it. The answer is dropped. */
                atomic_store(&p->armed, 0);
                atomic_store(&p->cut, 1);
                break;
            }
            if (write_all(cfd, buf, (size_t)r) != 0)
                break;
        }
    }
    close(sfd);
    close(cfd);
}

static void *run(void *arg)
{
    my_proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pf = {p->listen_fd, POLLIN, 0};
        int cfd;
        if (poll(&pf, 1, 200) <= 0)
            continue;
        cfd = accept(p->listen_fd, NULL, NULL);
        if (cfd >= 0)
            serve(p, cfd);
    }
    return NULL;
}

my_proxy *my_proxy_start(const char *url, char *url_out, unsigned url_size)
{
    const char *at = strrchr(url, '@'), *hs, *he, *colon;
    char host[256];
    int port = 3306;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    my_proxy *p;
    hs = at ? at + 1 : strstr(url, "://") ? strstr(url, "://") + 3 : NULL;
    if (!hs) {
        fprintf(stderr, "my_proxy: cannot parse the URL\n");
        return NULL;
    }
    he = hs + strcspn(hs, "/?");
    colon = memchr(hs, ':', (size_t)(he - hs));
    if (colon)
        port = atoi(colon + 1);
    snprintf(host, sizeof host, "%.*s", (int)((colon ? colon : he) - hs), hs);
    p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->server.sin_family = AF_INET;
    p->server.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, &p->server.sin_addr) != 1) {
        fprintf(stderr, "my_proxy: needs an IPv4 host in the URL, got %s\n", host);
        free(p);
        return NULL;
    }
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(p->listen_fd, 4) != 0 ||
        getsockname(p->listen_fd, (struct sockaddr *)&a, &len) != 0) {
        fprintf(stderr, "my_proxy: cannot listen: %s\n", strerror(errno));
        if (p->listen_fd >= 0)
            close(p->listen_fd);
        free(p);
        return NULL;
    }
    snprintf(url_out, url_size, "%.*s127.0.0.1:%d%s", (int)(hs - url), url, (int)ntohs(a.sin_port), he);
    if (pthread_create(&p->th, NULL, run, p) != 0) {
        close(p->listen_fd);
        free(p);
        return NULL;
    }
    return p;
}

void my_proxy_arm(my_proxy *p) { atomic_store(&p->armed, 1); }

int my_proxy_cut_done(my_proxy *p)
{
    int done = atomic_load(&p->cut);
    atomic_store(&p->cut, 0);
    return done;
}

void my_proxy_stop(my_proxy *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_join(p->th, NULL);
    close(p->listen_fd);
    free(p);
}
