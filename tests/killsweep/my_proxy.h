/*
 * A TCP proxy for the kill sweep on MariaDB: forwards connections (one at a time, in accept order)
 * to the server of a mysql:// URL and, when armed, cuts the connection once the server has
 * answered a COM_QUERY that starts with COMMIT, dropping the answer: the server executed COMMIT,
 * the client sees EOF ("lost during COMMIT", true outcome committed). Plaintext connections only.
 */
#ifndef TXM_TEST_MY_PROXY_H
#define TXM_TEST_MY_PROXY_H

typedef struct my_proxy my_proxy;

/* Starts a proxy to the server of `url`; writes the proxied URL into url_out. NULL on failure. */
my_proxy *my_proxy_start(const char *url, char *url_out, unsigned url_size);
/* The next COMMIT on the current connection cuts it (once). */
void my_proxy_arm(my_proxy *p);
/* 1 if an armed cut happened since the last call. */
int my_proxy_cut_done(my_proxy *p);
void my_proxy_stop(my_proxy *p);

#endif
