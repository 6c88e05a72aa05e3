/*
 * The driver registry under threads (issue 7, TSan phase): the first txm_open of a process made
 * by several threads at once (the built-in drivers are registered lazily), and
 * txm_driver_register racing txm_open and txm_driver_find. Criterion runs each test in its own
 * process, so each test really is the process's first use of the registry. Every tree runs
 * these; the TSan tree (scripts/test.sh) is where a missing lock would be reported.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "txm.h"
#include "txm/driver.h"

enum { N_OPENERS = 6, N_REGISTRARS = 6 };

static pthread_barrier_t start;

/* ---- a minimal driver: accepts every op ---------------------------------------------------- */

typedef struct race_conn {
    txm_driver_conn base;
    int runs;
} race_conn;

static int race_open(txm_driver_conn *dc, const txm_url *url)
{
    (void)url;
    ((race_conn *)dc)->runs = 0;
    return 0;
}

static void race_close(txm_driver_conn *dc) { (void)dc; }

static int race_run(txm_driver_conn *dc, txm_op *ops, size_t n, txm_run_result *out)
{
    ((race_conn *)dc)->runs++;
    (void)ops;
    out->completed = n;
    out->round_trips = 1;
    return 0;
}

static char race_scheme_buf[N_REGISTRARS][16];
static const char *race_schemes[N_REGISTRARS][2];
static txm_driver race_drivers[N_REGISTRARS];

static void make_drivers(void)
{
    for (int i = 0; i < N_REGISTRARS; i++) {
        snprintf(race_scheme_buf[i], sizeof race_scheme_buf[i], "race%d", i);
        race_schemes[i][0] = race_scheme_buf[i];
        race_schemes[i][1] = NULL;
        memset(&race_drivers[i], 0, sizeof race_drivers[i]);
        race_drivers[i].version = TXM_DRIVER_VERSION;
        race_drivers[i].name = race_scheme_buf[i];
        race_drivers[i].schemes = race_schemes[i];
        race_drivers[i].placeholders = TXM_PH_QMARK;
        race_drivers[i].conn_size = sizeof(race_conn);
        race_drivers[i].open = race_open;
        race_drivers[i].close = race_close;
        race_drivers[i].run = race_run;
    }
}

/* ---- threads -------------------------------------------------------------------------------- */

typedef struct job {
    int index;
    int rc;
    char what[64];
    char message[256];
} job;

static void fail(job *j, const char *what, int rc)
{
    j->rc = rc ? rc : TXM_ERROR;
    snprintf(j->what, sizeof j->what, "%s", what);
    snprintf(j->message, sizeof j->message, "%s", txm_error_last()->message);
}

/* First open of the process: an SQLite connection, one transaction, close. */
static void *opener(void *p)
{
    job *j = p;
    txm_conn *c = NULL;
    txm_tx *t;
    int64_t v = 0;
    int rc;
    pthread_barrier_wait(&start);
    if ((rc = txm_open(&c, "sqlite::memory:", NULL)) != 0) {
        fail(j, "txm_open", rc);
        return NULL;
    }
    if ((rc = txm_begin(&t, c, NULL)) != 0 || (rc = txm_query_i64(c, &v, "SELECT 40 + 2", NULL, 0)) != 0 ||
        (rc = txm_commit(t)) != 0)
        fail(j, "transaction", rc);
    else if (v != 42)
        fail(j, "SELECT 40 + 2 != 42", TXM_ERROR);
    txm_close(c);
    return NULL;
}

/* Registers its own driver while the openers run, then opens a connection through it. */
static void *registrar(void *p)
{
    job *j = p;
    txm_conn *c = NULL;
    char url[32];
    int rc;
    pthread_barrier_wait(&start);
    if ((rc = txm_driver_register(&race_drivers[j->index])) != 0) {
        fail(j, "txm_driver_register", rc);
        return NULL;
    }
    if (txm_driver_find(race_scheme_buf[j->index]) != &race_drivers[j->index]) {
        fail(j, "txm_driver_find after register", TXM_ENOTFOUND);
        return NULL;
    }
    snprintf(url, sizeof url, "%s:x", race_scheme_buf[j->index]);
    if ((rc = txm_open(&c, url, NULL)) != 0) {
        fail(j, "txm_open of the registered driver", rc);
        return NULL;
    }
    if (strcmp(txm_driver_name(c), race_scheme_buf[j->index]) != 0)
        fail(j, "the connection uses another driver", TXM_ERROR);
    else if ((rc = txm_exec(c, "SELECT 1", NULL, 0, NULL)) != 0)
        fail(j, "txm_exec", rc);
    txm_close(c);
    return NULL;
}

static void run_threads(int openers, int registrars)
{
    pthread_t th[N_OPENERS + N_REGISTRARS];
    job jobs[N_OPENERS + N_REGISTRARS];
    int n = openers + registrars;
    memset(jobs, 0, sizeof jobs);
    make_drivers();
    cr_assert(pthread_barrier_init(&start, NULL, (unsigned)n) == 0);
    for (int i = 0; i < n; i++) {
        jobs[i].index = i < openers ? i : i - openers;
        cr_assert(pthread_create(&th[i], NULL, i < openers ? opener : registrar, &jobs[i]) == 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < n; i++)
        cr_expect(jobs[i].rc == 0, "%s %d: %s: %s: %s", i < openers ? "opener" : "registrar", jobs[i].index,
                  jobs[i].what, txm_err_name(jobs[i].rc), jobs[i].message);
}

Test(registry_threads, concurrent_first_open)
{
    run_threads(N_OPENERS, 0);
    cr_expect(txm_driver_find("sqlite") != NULL, "the built-in drivers are registered once, and found");
}

Test(registry_threads, register_races_first_open)
{
    run_threads(N_OPENERS, N_REGISTRARS);
    cr_expect(txm_driver_find("sqlite") != NULL);
    for (int i = 0; i < N_REGISTRARS; i++)
        cr_expect(txm_driver_find(race_scheme_buf[i]) == &race_drivers[i], "driver race%d is registered", i);
}

Test(registry_threads, register_races_find)
{
    /* Only registrations and lookups: the registrars' own txm_open is the first open. */
    run_threads(0, N_REGISTRARS);
    cr_expect(txm_driver_find("sqlite") != NULL, "late registrations keep the built-ins");
}
