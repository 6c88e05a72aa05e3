/* Advisory locks (docs/driver-postgresql.md, docs/driver-mysql.md "Advisory locks"): exclusive/shared,
 * session/transaction scope, timeouts. Two connections contend for the same key; a driver without
 * TXM_CAP_ADVISORY_LOCKS must say TXM_ENOTSUPPORTED. */
#include "harness.h"

static void need_locks(void)
{
    if (!conf_has_cap(TXM_CAP_ADVISORY_LOCKS)) {
        CONF_RC(TXM_ENOTSUPPORTED, txm_lock(conf.c, "txm-conf", TXM_LOCK_EXCLUSIVE, 0));
        CONF_SKIP("driver lacks TXM_CAP_ADVISORY_LOCKS (txm_lock returns TXM_ENOTSUPPORTED, checked)");
    }
}

Test(locks, exclusive_session_lock_excludes_other_connection, .init = conf_init_shared, .fini = conf_fini,
     .timeout = 60)
{
    need_locks();
    CONF_NEEDS_SESSION_POOLING("session-scoped advisory locks belong to a server session, which the pooler "
                               "lends to the connection for one transaction only");
    txm_conn *b = conf_open_other();
    CONF_OK(txm_lock(conf.c, "txm-conf-a", TXM_LOCK_EXCLUSIVE, 0));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_lock(b, "txm-conf-a", TXM_LOCK_EXCLUSIVE, 0));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_lock(b, "txm-conf-a", TXM_LOCK_EXCLUSIVE, 50));
    CONF_OK(txm_lock(b, "txm-conf-other-key", TXM_LOCK_EXCLUSIVE, 0)); /* keys are independent */
    CONF_OK(txm_unlock(conf.c, "txm-conf-a", TXM_LOCK_EXCLUSIVE));
    CONF_OK(txm_lock(b, "txm-conf-a", TXM_LOCK_EXCLUSIVE, 0));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_lock(conf.c, "txm-conf-a", TXM_LOCK_EXCLUSIVE, 0));
    CONF_OK(txm_unlock(b, "txm-conf-a", TXM_LOCK_EXCLUSIVE));
    CONF_OK(txm_unlock(b, "txm-conf-other-key", TXM_LOCK_EXCLUSIVE));
    txm_close(b);
}

Test(locks, transaction_lock_released_when_transaction_ends, .init = conf_init_shared, .fini = conf_fini,
     .timeout = 60)
{
    need_locks();
    txm_conn *b = conf_open_other();
    for (int commit = 0; commit < 2; commit++) {
        txm_tx *t = conf_begin(conf.c);
        CONF_OK(txm_lock(conf.c, "txm-conf-tx", TXM_LOCK_EXCLUSIVE | TXM_LOCK_TX, 0));
        CONF_OK(conf_item(conf.c, 10 + commit));
        CONF_RC(TXM_ELOCK_TIMEOUT, txm_lock(b, "txm-conf-tx", TXM_LOCK_EXCLUSIVE, 0));
        CONF_RC(TXM_EMISUSE, txm_unlock(conf.c, "txm-conf-tx", TXM_LOCK_TX));
        if (commit)
            CONF_OK(txm_commit(t));
        else
            CONF_OK(txm_rollback(t));
        CONF_OK(txm_lock(b, "txm-conf-tx", TXM_LOCK_EXCLUSIVE, 0)); /* released by the end of the transaction */
        CONF_OK(txm_unlock(b, "txm-conf-tx", TXM_LOCK_EXCLUSIVE));
    }
    cr_assert(conf_count(conf.c, "t_item") == 1);
    txm_close(b);
}

/* The category is portable: a caller's bookkeeping bug reads the same on every engine. */
Test(locks, unlock_of_a_lock_not_held_is_enotfound, .init = conf_init_shared, .fini = conf_fini, .timeout = 60)
{
    need_locks();
    CONF_NEEDS_SESSION_POOLING("session-scoped advisory locks belong to a server session: behind the pooler the "
                               "other connection's lock sits on a session this one may be lent next");
    txm_conn *b = conf_open_other();
    CONF_RC(TXM_ENOTFOUND, txm_unlock(conf.c, "txm-conf-never", TXM_LOCK_EXCLUSIVE)); /* nobody holds it */
    CONF_OK(txm_lock(b, "txm-conf-theirs", TXM_LOCK_EXCLUSIVE, 0));
    CONF_RC(TXM_ENOTFOUND, txm_unlock(conf.c, "txm-conf-theirs", TXM_LOCK_EXCLUSIVE)); /* another holds it */
    CONF_OK(txm_lock(b, "txm-conf-theirs", TXM_LOCK_EXCLUSIVE, 0)); /* b still holds it (twice now) */
    CONF_OK(txm_unlock(b, "txm-conf-theirs", TXM_LOCK_EXCLUSIVE));
    CONF_OK(txm_unlock(b, "txm-conf-theirs", TXM_LOCK_EXCLUSIVE));
    CONF_RC(TXM_ENOTFOUND, txm_unlock(b, "txm-conf-theirs", TXM_LOCK_EXCLUSIVE)); /* counted: the third is one too many */
    txm_close(b);
}

Test(locks, transaction_lock_needs_transaction, .init = conf_init, .fini = conf_fini)
{
    need_locks();
    CONF_RC(TXM_EMISUSE, txm_lock(conf.c, "txm-conf-tx", TXM_LOCK_EXCLUSIVE | TXM_LOCK_TX, 0));
    CONF_RC(TXM_EINVALID, txm_lock(conf.c, "", TXM_LOCK_EXCLUSIVE, 0));
    CONF_RC(TXM_EINVALID, txm_lock(conf.c, NULL, TXM_LOCK_EXCLUSIVE, 0));
    CONF_RC(TXM_EINVALID, txm_lock(conf.c, "txm-conf", 0x100u, 0));
}

Test(locks, session_lock_released_at_close, .init = conf_init_shared, .fini = conf_fini, .timeout = 60)
{
    need_locks();
    CONF_NEEDS_SESSION_POOLING("session-scoped advisory locks belong to a server session, which the pooler "
                               "lends to the connection for one transaction only");
    txm_conn *a = conf_open_other();
    txm_conn *b = conf_open_other();
    CONF_OK(txm_lock(a, "txm-conf-close", TXM_LOCK_EXCLUSIVE, 0));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_lock(b, "txm-conf-close", TXM_LOCK_EXCLUSIVE, 0));
    txm_close(a);
    CONF_OK(txm_lock(b, "txm-conf-close", TXM_LOCK_EXCLUSIVE, 1000));
    txm_close(b);
}

Test(locks, shared_locks_coexist_and_exclude_exclusive, .init = conf_init_shared, .fini = conf_fini, .timeout = 60)
{
    need_locks();
    CONF_NEEDS_SESSION_POOLING("session-scoped advisory locks belong to a server session, which the pooler "
                               "lends to the connection for one transaction only");
    if (!conf_has_cap(TXM_CAP_SHARED_LOCKS)) {
        CONF_RC(TXM_ENOTSUPPORTED, txm_lock(conf.c, "txm-conf-s", TXM_LOCK_SHARED, 0));
        CONF_SKIP("driver lacks TXM_CAP_SHARED_LOCKS (TXM_LOCK_SHARED returns TXM_ENOTSUPPORTED, checked)");
    }
    txm_conn *b = conf_open_other();
    txm_conn *x = conf_open_other();
    CONF_OK(txm_lock(conf.c, "txm-conf-s", TXM_LOCK_SHARED, 0));
    CONF_OK(txm_lock(b, "txm-conf-s", TXM_LOCK_SHARED, 0));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_lock(x, "txm-conf-s", TXM_LOCK_EXCLUSIVE, 0));
    CONF_OK(txm_unlock(conf.c, "txm-conf-s", TXM_LOCK_SHARED));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_lock(x, "txm-conf-s", TXM_LOCK_EXCLUSIVE, 20)); /* b still shares it */
    CONF_OK(txm_unlock(b, "txm-conf-s", TXM_LOCK_SHARED));
    CONF_OK(txm_lock(x, "txm-conf-s", TXM_LOCK_EXCLUSIVE, 0));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_lock(b, "txm-conf-s", TXM_LOCK_SHARED, 0));
    CONF_OK(txm_unlock(x, "txm-conf-s", TXM_LOCK_EXCLUSIVE));
    txm_close(x);
    txm_close(b);
}

Test(locks, transaction_lock_follows_its_level, .init = conf_init_shared, .fini = conf_fini, .timeout = 60)
{
    /* PostgreSQL releases a transaction lock taken in a rolled-back savepoint (it belongs to the
     * subtransaction); every driver must behave the same. A released (committed) level keeps it. */
    need_locks();
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *n = conf_begin(conf.c);
    CONF_OK(txm_lock(conf.c, "txm-conf-sp", TXM_LOCK_EXCLUSIVE | TXM_LOCK_TX, 0));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_lock(b, "txm-conf-sp", TXM_LOCK_EXCLUSIVE, 0));
    CONF_OK(txm_rollback(n));
    CONF_OK(txm_lock(b, "txm-conf-sp", TXM_LOCK_EXCLUSIVE, 0));
    CONF_OK(txm_unlock(b, "txm-conf-sp", TXM_LOCK_EXCLUSIVE));
    n = conf_begin(conf.c);
    CONF_OK(txm_lock(conf.c, "txm-conf-sp", TXM_LOCK_EXCLUSIVE | TXM_LOCK_TX, 0));
    CONF_OK(txm_commit(n));
    CONF_OK(conf_item(conf.c, 2));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_lock(b, "txm-conf-sp", TXM_LOCK_EXCLUSIVE, 0));
    CONF_OK(txm_commit(outer));
    CONF_OK(txm_lock(b, "txm-conf-sp", TXM_LOCK_EXCLUSIVE, 0));
    CONF_OK(txm_unlock(b, "txm-conf-sp", TXM_LOCK_EXCLUSIVE));
    txm_close(b);
}
