/* See pg_proxy.h. */
#include "pg_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
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

struct pg_proxy {
    int listen_fd;
    char host[256];
    int port;
    pthread_t thread;
    atomic_int armed;
    atomic_int cut;
    atomic_int stop;
    int mysql; /* the MySQL protocol (a mysql:// or mariadb:// URL) */
};

int pg_url_host_port(const char *url, char *host, unsigned host_size, int *port)
{
    const char *a = strstr(url, "://"), *at, *end, *colon;
    size_t n;
    if (!a)
        return -1;
    a += 3;
    end = a + strcspn(a, "/?");
    at = NULL;
    for (const char *p = a; p < end; p++) {
        if (*p == '@')
            at = p;
    }
    if (at)
        a = at + 1;
    colon = memchr(a, ':', (size_t)(end - a));
    n = (size_t)((colon ? colon : end) - a);
    if (n == 0 || n >= host_size)
        return -1;
    memcpy(host, a, n);
    host[n] = '\0';
    *port = colon ? atoi(colon + 1) : strncmp(url, "postgres", 8) == 0 ? 5432 : 3306;
    return 0;
}

void pg_url_rewrite(const char *url, const char *hostport, const char *extra, char *out, unsigned size)
{
    const char *a = strstr(url, "://"), *end, *at = NULL;
    const char *sep = "";
    a = a ? a + 3 : url;
    end = a + strcspn(a, "/?");
    for (const char *p = a; p < end; p++) {
        if (*p == '@')
            at = p;
    }
    if (extra && *extra)
        sep = strchr(end, '?') ? "&" : (*end ? "?" : "/?");
    snprintf(out, size, "%.*s%s%s%s%s", (int)((at ? at + 1 : a) - url), url, hostport, end, sep,
             extra ? extra : "");
}

static int connect_server(const pg_proxy *p)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    int fd;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof port, "%d", p->port);
    if (getaddrinfo(p->host, port, &hints, &res) != 0 || !res)
        return -1;
    fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int write_all(int fd, const char *b, size_t n)
{
    while (n) {
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

/* Forwards one client connection until either side closes (or the armed cut). */
static void serve(pg_proxy *p, int cfd)
{
    int sfd = connect_server(p);
    int commit_sent = 0; /* MySQL: the armed COMMIT has gone to the server */
    char *buf = NULL; /* server -> client bytes not yet forwarded (incomplete message) */
    size_t len = 0, cap = 0;
    if (sfd < 0) {
        close(cfd);
        return;
    }
    for (;;) {
        struct pollfd fds[2] = {{cfd, POLLIN, 0}, {sfd, POLLIN, 0}};
        char tmp[65536];
        ssize_t r;
        if (poll(fds, 2, 200) < 0 && errno != EINTR)
            break;
        if (atomic_load(&p->stop))
            break;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            r = recv(cfd, tmp, sizeof tmp, 0);
            if (r <= 0 || write_all(sfd, tmp, (size_t)r) != 0)
                break;
            /* MySQL: a COM_QUERY (0x03, after the 4-byte packet header) that starts with COMMIT */
            if (p->mysql && atomic_load(&p->armed) && r >= 11 && memcmp(tmp + 4, "\x03" "COMMIT", 7) == 0)
                commit_sent = 1;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            size_t off = 0;
            r = recv(sfd, tmp, sizeof tmp, 0);
            if (r <= 0)
                break;
            if (p->mysql) {
                /* The server answered the armed COMMIT: it executed it. Drop the answer, cut. */
                if (commit_sent) {
                    atomic_store(&p->armed, 0);
                    atomic_store(&p->cut, 1);
                    break;
                }
                if (write_all(cfd, tmp, (size_t)r) != 0)
                    break;
                continue;
            }
            if (len + (size_t)r > cap) {
                cap = (len + (size_t)r) * 2;
                buf = realloc(buf, cap);
                if (!buf)
                    break;
            }
            memcpy(buf + len, tmp, (size_t)r);
            len += (size_t)r;
            /* Forward whole messages; stop before an armed CommandComplete "COMMIT". */
            while (len - off >= 5) {
                uint32_t mlen = ((uint32_t)(unsigned char)buf[off + 1] << 24) |
                                ((uint32_t)(unsigned char)buf[off + 2] << 16) |
                                ((uint32_t)(unsigned char)buf[off + 3] << 8) | (uint32_t)(unsigned char)buf[off + 4];
                size_t total = 1 + (size_t)mlen;
                if (len - off < total)
                    break;
                if (atomic_load(&p->armed) && buf[off] == 'C' && mlen >= 4 + 6 &&
                    memcmp(buf + off + 5, "COMMIT", 6) == 0) {
                    atomic_store(&p->armed, 0);
                    atomic_store(&p->cut, 1);
                    free(buf);
                    close(sfd);
                    close(cfd);
                    return;
                }
                if (write_all(cfd, buf + off, total) != 0)
                    goto done;
                off += total;
            }
            memmove(buf, buf + off, len - off);
            len -= off;
        }
    }
done:
    free(buf);
    close(sfd);
    close(cfd);
}

static void *run(void *arg)
{
    pg_proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pfd = {p->listen_fd, POLLIN, 0};
        int cfd;
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        cfd = accept(p->listen_fd, NULL, NULL);
        if (cfd >= 0)
            serve(p, cfd);
    }
    return NULL;
}

pg_proxy *pg_proxy_start(const char *url, char *url_out, unsigned url_size)
{
    pg_proxy *p = calloc(1, sizeof *p);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    char hp[64];
    if (!p)
        return NULL;
    if (pg_url_host_port(url, p->host, sizeof p->host, &p->port) != 0) {
        fprintf(stderr, "pg_proxy: cannot parse host and port of the test URL\n");
        free(p);
        return NULL;
    }
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(p->listen_fd, 8) != 0 || getsockname(p->listen_fd, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "pg_proxy: cannot listen: %s\n", strerror(errno));
        if (p->listen_fd >= 0)
            close(p->listen_fd);
        free(p);
        return NULL;
    }
    snprintf(hp, sizeof hp, "127.0.0.1:%d", ntohs(sa.sin_port));
    p->mysql = strncmp(url, "mysql:", 6) == 0 || strncmp(url, "mariadb:", 8) == 0;
    pg_url_rewrite(url, hp, p->mysql ? "" : "sslmode=disable&gssencmode=disable", url_out, url_size);
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        close(p->listen_fd);
        free(p);
        return NULL;
    }
    return p;
}

void pg_proxy_arm(pg_proxy *p)
{
    atomic_store(&p->cut, 0);
    atomic_store(&p->armed, 1);
}
int pg_proxy_cut_done(pg_proxy *p) { return atomic_load(&p->cut); }

void pg_proxy_stop(pg_proxy *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    free(p);
}
