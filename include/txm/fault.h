/*
 * txm fault-injecting driver (docs/fault-driver.md).
 *
 * Any registered driver can be wrapped by prefixing its URL scheme with "fault+":
 *
 *     fault+sqlite::memory:?fault=deadlock&fault_at=3
 *     fault+postgresql://user@host/db?fault=commit_unknown
 *     fault+mysql://user@host/db?fault=lock_timeout&fault_at=release&fault_times=2
 *
 * The fault parameters are removed before the inner driver sees the URL; without a `fault`
 * parameter the wrapper is transparent (the conformance suite passes through it). Faults:
 *
 *     deadlock, serialization      TXM_EDEADLOCK / TXM_ESERIALIZATION + TXM_ERRF_TX_LOST; the inner
 *                                  transaction is really rolled back
 *     lock_timeout                 TXM_ELOCK_TIMEOUT, statement-level (the transaction survives as
 *                                  it would after any failed statement on that engine)
 *     disconnect                   connection lost before the op reached the server (TXM_ECONNECTION
 *                                  + TX_LOST; the inner connection is closed; txm_reconnect reopens)
 *     commit_unknown               COMMIT executed, then the connection was lost (TXM_ECOMMIT_UNKNOWN)
 *     commit_unknown_aborted       the connection was lost before COMMIT executed (TXM_ECOMMIT_UNKNOWN)
 *     nomem                        TXM_ENOMEM before the op was sent
 *
 * at `fault_at` = N (the N-th application statement, txm_exec/txm_query/txm_lock/txm_unlock,
 * counted from the last BEGIN), or begin | savepoint | release | rollback_to | commit | rollback;
 * `fault_skip` = M lets the first M matching ops pass; `fault_times` = K (default 1) or "always"
 * injects at K matching ops.
 */
#ifndef TXM_FAULT_H
#define TXM_FAULT_H

#include "../txm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Re-arms the faults of a connection opened with a "fault+" URL. `spec` has the query-string form
 * of the URL parameters ("fault=deadlock&fault_at=2&fault_times=always"); NULL or "" disarms.
 * Counting (statement index, skips, times) restarts. TXM_EINVALID for a bad spec (the connection
 * keeps its previous faults) or a connection that is not a fault connection. Call it from the
 * thread that uses the connection, not from inside a running statement. */
TXM_EXTERN int txm_fault_set(txm_conn *c, const char *spec);

/* Faults injected on this connection since it was opened (0 for NULL or a non-fault connection).
 * Tests assert it to prove that the fault they arranged really fired. */
TXM_EXTERN unsigned long txm_fault_count(const txm_conn *c);

#ifdef __cplusplus
}
#endif
#endif /* TXM_FAULT_H */
