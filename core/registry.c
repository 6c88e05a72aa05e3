/* Driver registry: the only global mutable state of txm, behind a mutex. */
#include "internal.h"
#include "txm_config.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>

#if TXM_HAVE_SQLITE
extern const txm_driver txm__driver_sqlite;
#endif
#if TXM_HAVE_PG
extern const txm_driver txm__driver_pg;
#endif
#if TXM_HAVE_MYSQL
extern const txm_driver txm__driver_mysql;
#endif

#define MAX_DRIVERS 32

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static const txm_driver *registered[MAX_DRIVERS];
static size_t nregistered;
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

static int check_driver(const txm_driver *d)
{
    if (!d)
        return txm__err(TXM_EINVALID, "txm_driver_register: driver is NULL");
    if (d->version == 0 || d->version > TXM_DRIVER_VERSION)
        return txm__err(TXM_EINVALID, "txm_driver_register: driver '%s' has ABI version %u; this txm supports 1..%u",
                        d->name ? d->name : "?", d->version, (unsigned)TXM_DRIVER_VERSION);
    if (!d->name || !d->schemes || !d->schemes[0])
        return txm__err(TXM_EINVALID, "txm_driver_register: driver needs a name and at least one scheme");
    if (!d->open || !d->close || !d->run)
        return txm__err(TXM_EINVALID, "txm_driver_register: driver '%s' lacks a required method (open, close, run)",
                        d->name);
    if (d->conn_size < sizeof(txm_driver_conn))
        return txm__err(TXM_EINVALID, "txm_driver_register: driver '%s' conn_size %zu is smaller than txm_driver_conn",
                        d->name, d->conn_size);
    if (d->placeholders != TXM_PH_QMARK && d->placeholders != TXM_PH_DOLLAR)
        return txm__err(TXM_EINVALID, "txm_driver_register: driver '%s' has an unknown placeholder style", d->name);
    return 0;
}

static int register_locked(const txm_driver *d)
{
    size_t i;
    for (i = 0; i < nregistered; i++) {
        if (registered[i] == d)
            return 0;
    }
    if (nregistered == MAX_DRIVERS)
        return txm__err(TXM_ENOMEM, "txm_driver_register: at most %d drivers can be registered", MAX_DRIVERS);
    registered[nregistered++] = d;
    return 0;
}

static void register_builtin(void)
{
#if TXM_HAVE_SQLITE
    register_locked(&txm__driver_sqlite);
#endif
#if TXM_HAVE_PG
    register_locked(&txm__driver_pg);
#endif
#if TXM_HAVE_MYSQL
    register_locked(&txm__driver_mysql);
#endif
}

void txm__registry_init_builtin(void)
{
    pthread_mutex_lock(&reg_lock);
    /* pthread_once under the lock keeps the built-ins first, before any user registration. */
    pthread_once(&builtin_once, register_builtin);
    pthread_mutex_unlock(&reg_lock);
}

int txm_driver_register(const txm_driver *d)
{
    int rc = check_driver(d);
    if (rc)
        return rc;
    txm__registry_init_builtin();
    pthread_mutex_lock(&reg_lock);
    rc = register_locked(d);
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

const txm_driver *txm_driver_find(const char *scheme)
{
    const txm_driver *found = NULL;
    size_t i, j;
    if (!scheme)
        return NULL;
    txm__registry_init_builtin();
    pthread_mutex_lock(&reg_lock);
    /* Later registrations win: search from the end. */
    for (i = nregistered; i-- > 0 && !found;) {
        for (j = 0; registered[i]->schemes[j]; j++) {
            if (strcasecmp(registered[i]->schemes[j], scheme) == 0) {
                found = registered[i];
                break;
            }
        }
    }
    pthread_mutex_unlock(&reg_lock);
    /* "fault+X": the fault-injecting wrapper of X's driver (drivers/fault.c), unless a driver was
     * registered for that exact scheme. */
    if (!found && strncasecmp(scheme, "fault+", 6) == 0)
        found = txm__fault_driver_for(txm_driver_find(scheme + 6));
    return found;
}
