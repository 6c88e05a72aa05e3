/*
 * Per-connection cache of statement analyses: for a statement text already accepted on this
 * connection, the result of txm__sql_tx_control (it was not transaction control) and of
 * txm__sql_placeholders (the placeholder count and, for $n drivers, the rewritten text). Both are
 * pure functions of the text and of the driver's dialect, which never changes on a connection, so
 * an entry stays valid as long as its text is the same.
 *
 * The key is the WHOLE text: its length, then every byte (memcmp against an owned copy). Never a
 * pointer (applications reuse buffers) or a hash (two texts can share one): a changed text can
 * never find a stale entry. Texts whose analysis fails or that are transaction control are not
 * cached (the scanner runs again and reports again). Texts longer than TXM_SQL_CACHE_TEXT_MAX are
 * not cached either: their scan is small next to what the engine does with them, and the cache's
 * memory stays bounded (TXM_SQL_CACHE_CAP copies).
 *
 * Lifetime: an op points at an entry's rewritten text while it runs, and a hook, callback or
 * log handler may run another statement on the same connection meanwhile (txm_batch also holds
 * many ops at once), so an entry in use is pinned and never evicted; a miss when every entry is
 * pinned is simply not cached. A failed allocation only means "not cached": the statement runs.
 */
#include "internal.h"

#include <string.h>

struct txm_sql_entry {
    char *sql;        /* owned copy of the key */
    size_t len;
    char *rw;         /* owned rewrite ($n placeholders), or NULL: the text runs as is */
    size_t rw_len;
    size_t count;     /* placeholders */
    uint64_t used;    /* LRU tick */
    unsigned pins;    /* ops referring to rw right now */
};

static void entry_clear(txm_sql_entry *e)
{
    txm__free(e->sql);
    txm__free(e->rw);
    memset(e, 0, sizeof *e);
}

void txm__sql_cache_free(txm_sql_cache *cache)
{
    size_t i;
    for (i = 0; i < cache->len; i++)
        entry_clear(&cache->e[i]);
    txm__free(cache->e);
    memset(cache, 0, sizeof *cache);
}

static txm_sql_entry *find(txm_sql_cache *cache, const char *sql, size_t len)
{
    size_t i;
    txm_sql_entry *e;
    /* The entry of the previous hit first: a loop runs the same few statements. */
    if (cache->last < cache->len) {
        e = &cache->e[cache->last];
        if (e->len == len && memcmp(e->sql, sql, len) == 0)
            return e;
    }
    for (i = 0; i < cache->len; i++) {
        e = &cache->e[i];
        if (e->len == len && memcmp(e->sql, sql, len) == 0) {
            cache->last = i;
            return e;
        }
    }
    return NULL;
}

/* A free or evictable slot (least recently used, unpinned), or NULL. */
static txm_sql_entry *slot_for_insert(txm_sql_cache *cache)
{
    txm_sql_entry *victim = NULL;
    size_t i;
    if (!cache->e) {
        cache->e = txm__calloc(TXM_SQL_CACHE_CAP, sizeof *cache->e);
        if (!cache->e)
            return NULL;
    }
    if (cache->len < TXM_SQL_CACHE_CAP)
        return &cache->e[cache->len++];
    for (i = 0; i < cache->len; i++) {
        txm_sql_entry *e = &cache->e[i];
        if (!e->pins && (!victim || e->used < victim->used))
            victim = e;
    }
    if (victim)
        entry_clear(victim);
    return victim;
}

/* Caches a fresh analysis; takes ownership of rw (kept by the caller's ref when not cached). */
static void insert(txm_sql_cache *cache, const char *sql, size_t len, char *rw, size_t count, txm_sql_ref *ref)
{
    txm_sql_entry *e;
    char *copy;
    if (len > TXM_SQL_CACHE_TEXT_MAX || !(copy = txm__strndup(sql, len))) {
        ref->heap = rw;
        return;
    }
    e = slot_for_insert(cache);
    if (!e) {
        txm__free(copy);
        ref->heap = rw;
        return;
    }
    e->sql = copy;
    e->len = len;
    e->rw = rw;
    e->rw_len = rw ? strlen(rw) : 0;
    e->count = count;
    e->used = ++cache->tick;
    e->pins = 1;
    cache->last = (size_t)(e - cache->e);
    ref->pin = e;
}

int txm__sql_analyze(txm_conn *c, const char *who, const char *sql, txm_sql_analysis *out, txm_sql_ref *ref)
{
    const char *kw;
    char *rw = NULL;
    size_t len, count = 0;
    txm_sql_entry *e = NULL;
    int rc;

    ref->pin = NULL;
    ref->heap = NULL;
    /* The previous hit first, compared with strcmp: the key is a NUL-terminated copy of a text
     * without NULs, so equal strings are the same text, and its length needs no strlen of sql. */
    if (c->sql_cache.last < c->sql_cache.len) {
        e = &c->sql_cache.e[c->sql_cache.last];
        if (e->sql && strcmp(e->sql, sql) == 0)
            len = e->len;
        else
            e = NULL;
    }
    if (!e) {
        len = strlen(sql);
        e = find(&c->sql_cache, sql, len);
    }
    if (e) {
        e->used = ++c->sql_cache.tick;
        e->pins++;
        ref->pin = e;
        out->sql = e->rw ? e->rw : sql;
        out->sql_len = e->rw ? e->rw_len : len;
        out->count = e->count;
        c->sql_cache.hits++;
        return 0;
    }
    c->sql_cache.misses++;
    kw = txm__sql_tx_control(sql, c->drv->dialect);
    if (kw)
        return txm__err(TXM_EMISUSE,
                        "%s: transaction control statement '%s' refused: use txm_begin/txm_commit/txm_rollback so "
                        "txm's savepoint stack and hooks stay correct",
                        who, kw);
    rc = txm__sql_placeholders(sql, c->drv->placeholders, c->drv->dialect, &rw, &count);
    if (rc)
        return rc;
    out->sql = rw ? rw : sql;
    out->sql_len = rw ? strlen(rw) : len;
    out->count = count;
    insert(&c->sql_cache, sql, len, rw, count, ref);
    return 0;
}

void txm__sql_unref(txm_sql_ref *ref)
{
    if (ref->pin)
        ref->pin->pins--;
    txm__free(ref->heap);
    ref->pin = NULL;
    ref->heap = NULL;
}
