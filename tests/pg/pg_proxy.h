/*
 * A TCP proxy for the PostgreSQL driver tests and the kill sweep: forwards connections to the real
 * server and, when armed, cuts the connection at the moment the server's CommandComplete "COMMIT"
 * would reach the client. The server has committed; the client sees everything before that
 * message (the transaction id it asked for in the same flight) and then EOF: a deterministic
 * "connection lost during COMMIT" whose true outcome is COMMITTED.
 *
 * The proxy parses only the server-to-client stream, which is all typed messages when SSL and GSS
 * encryption are off (the URL it hands out says sslmode=disable&gssencmode=disable).
 * Given a mysql:// or mariadb:// URL it speaks just enough MySQL instead (plaintext only): armed,
 * it drops the server's first answer to a COM_QUERY that starts with COMMIT, and cuts.
 * Connections are served one at a time, in accept order.
 */
#ifndef TXM_TEST_PG_PROXY_H
#define TXM_TEST_PG_PROXY_H

typedef struct pg_proxy pg_proxy;

/* Starts a proxy to the server of `url` (postgresql://user:pass@host:port/db[?...]). Writes the
 * proxied URL into url_out. Returns NULL on failure (message on stderr). */
pg_proxy *pg_proxy_start(const char *url, char *url_out, unsigned url_size);
/* The next CommandComplete "COMMIT" on the current connection cuts it (once); resets cut_done. */
void pg_proxy_arm(pg_proxy *p);
/* 1 once the armed cut has happened. */
int pg_proxy_cut_done(pg_proxy *p);
void pg_proxy_stop(pg_proxy *p);

/* Splits url's authority: host and port of a single-host URL. 0 on success. */
int pg_url_host_port(const char *url, char *host, unsigned host_size, int *port);
/* url with its host:port replaced by `hostport` and `extra` ("k=v&k=v") appended to the query. */
void pg_url_rewrite(const char *url, const char *hostport, const char *extra, char *out, unsigned size);

#endif
