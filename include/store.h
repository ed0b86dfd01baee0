/*
 * store.h — the storage interface that the HTTP handlers, the committer and
 * the workers call. It speaks orders and messages, never SQL: two backends
 * stand behind the same functions, chosen by store_options.backend —
 * SQLite (src/store_sqlite.c, the embedded default) and PostgreSQL
 * (src/store_pg.c, several nodes on one database). src/store.c dispatches.
 *
 * Errors: every function returns STORE_OK (0) or a negative enum store_error.
 * STORE_EUNAVAILABLE means "the disk or database refused a write or read right
 * now" (full, read-only, I/O error): callers answer 503 and retry later; the
 * store recovers by itself when the cause goes away.
 *
 * Threads: every function may be called from any thread. sqlite: writes are
 * serialised inside the store (one writer at a time); reads use a pool of
 * read-only connections and never wait for a write. postgres: a pool of
 * connections, the database orders concurrent writers (store_pg.c).
 *
 * Time: functions that depend on the clock take now_ms (ms since the epoch) so
 * tests can drive time.
 */
#ifndef ORDERD_STORE_H
#define ORDERD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"

/* Which backend serves the store, and what a 202 promises ([storage] keys). */
enum store_backend { STORE_BACKEND_SQLITE, STORE_BACKEND_POSTGRES };
enum durability { DURABILITY_FULL, DURABILITY_NORMAL };

enum store_error {
    STORE_OK = 0,
    STORE_ENOTFOUND = -1,     /* no such order / message / key */
    STORE_EUNAVAILABLE = -2,  /* disk full, read-only, I/O error: retry later */
    STORE_EQUEUEFULL = -3,    /* queue holds max_depth messages */
    STORE_ESTALE = -4,        /* receipt no longer current: another delivery owns it */
    STORE_ECONFLICT = -5,     /* idempotency key taken with another request */
    STORE_ENOMEM = -6,
    STORE_EINTERNAL = -7,     /* a bug or a corrupt database; logged */
    STORE_EOPEN = -8,         /* cannot open or create the database */
};

const char *store_strerror(int err);

struct store;

struct store_options {
    enum store_backend backend;   /* STORE_BACKEND_SQLITE (0, the default) or _POSTGRES */
    const char *path;             /* sqlite: database file; its directory must exist */
    const char *dsn;              /* postgres: libpq connection string or URI */
    enum durability durability;   /* full: fsync (sqlite) / synchronous commit (postgres)
                                   * at every intake commit */
    /* Reading only (orderd export, beside a running daemon): no schema is
     * created or migrated (a database of another version is refused), no
     * writer, no checkpointer; only store_export() and reads may be called. */
    bool read_only;
};

/* Opens (creating and migrating if needed). 0 or STORE_EOPEN with a log line. */
int store_open(const struct store_options *opts, struct store **out);
/* Closes every connection (sqlite: a clean WAL checkpoint). Safe with NULL. */
void store_close(struct store *s);

/* ---- intake (called by the committer) -------------------------------- */

/* One accepted order, as the committer hands it to the store. */
struct store_new_order {
    const char *order_id;         /* ULID */
    const char *customer_id;
    const char *items_json;       /* canonical JSON array */
    const char *traceparent;      /* of the request's span */
    int64_t created_at_ms;
    const char *idempotency_key;  /* NULL when the request had none */
    const char *request_json;     /* canonical order JSON, with a key */
    const char *response_json;    /* the 202 body, replayed for the key */
    /* Claimed as it is written, for a worker that gets it in memory
     * (store_enqueue_can_lease): receive count 1, this receipt, a lease until
     * lease_until_ms. 0: written visible, for store_claim(). */
    int64_t lease_receipt;
    int64_t lease_until_ms;
    /* out: STORE_OK, STORE_EQUEUEFULL, STORE_ECONFLICT (key taken meanwhile),
     * or the batch's error */
    int result;
};

/*
 * Writes n orders and their queue messages in ONE transaction (group commit).
 * With durability full the commit is durable on return, unless
 * store_defers_sync(): then it is durable once a later store_sync() returned
 * STORE_OK, and nobody may be told "accepted" before that. Orders that
 * would push the queue past max_depth get STORE_EQUEUEFULL and are not
 * written; the others are. Returns STORE_OK when the transaction committed
 * (then read each result), or an error that applies to every order.
 */
int store_enqueue_batch(struct store *s, struct store_new_order *orders, size_t n,
                        uint64_t max_depth);

/* True when store_enqueue_batch() honours lease_receipt (sqlite); elsewhere
 * it must be 0. */
bool store_enqueue_can_lease(struct store *s);

/*
 * True when store_enqueue_batch() leaves the fsync to store_sync() (sqlite,
 * durability full): the fsync then runs outside the write lock, so writers
 * keep going while it waits for the disk. Fixed for the life of the store.
 */
bool store_defers_sync(struct store *s);

/*
 * Makes every enqueue and redrive committed before the call durable. Cheap
 * when there is nothing new to sync; STORE_OK at once where commits are
 * durable by themselves (durability normal, postgres). Any thread, callers
 * may overlap. Returns STORE_OK. A failed fsync ends the process (exit code
 * 2, logged): the kernel may have dropped the pages it could not write and a
 * later fsync may succeed without them, so nothing committed since the last
 * good sync could be promised any more; after a restart the database is
 * recovered from what is on the disk.
 */
int store_sync(struct store *s);

/* ---- reads (HTTP threads) -------------------------------------------- */

/*
 * An order as GET /orders shows it. status is one of "queued" "processing"
 * "completed" "dead_lettered" "discarded" (a dead letter an operator deleted:
 * it will never be delivered again). A redrive keeps what went before: the
 * attempts and last error of the run that ended in the dead-letter queue
 * move to previous_attempts / previous_error, and attempts / last_error
 * start again for the new run.
 */
/* Whether s names one of those statuses (a listing's filter). */
bool store_status_valid(const char *s);
/* Their names for a message: "queued, processing, completed, ...". */
const char *store_status_names(void);

struct store_order {
    char order_id[ID_ULID_LEN + 1];
    char *customer_id;
    char *items_json;
    const char *status;           /* a string constant, see above */
    uint32_t attempts;            /* of the current run (since the last redrive) */
    int64_t created_at_ms;
    int64_t processed_at_ms;      /* 0 = not yet */
    char *last_error;             /* NULL = none */
    char traceparent[TRACEPARENT_LEN + 1];
    uint32_t redrives;            /* times it was put back from the dead-letter queue */
    int64_t redriven_at_ms;       /* the last redrive; 0 = never */
    uint32_t previous_attempts;   /* attempts before the last redrive (redrives > 0) */
    char *previous_error;         /* last error before the last redrive; NULL = none */
    int64_t discarded_at_ms;      /* status discarded: when; else 0 */
    char *fulfilment_result;      /* JSON the fulfilment service answered; NULL = none */
};
void store_order_clear(struct store_order *o);

int store_get_order(struct store *s, const char *order_id, int64_t now_ms,
                    struct store_order *out);

/* A list asks for up to one row more than a page holds: that row tells
 * whether another page follows (the API's next_cursor). */
#define STORE_LIST_LIMIT_MAX (HTTP_LIST_LIMIT_MAX + 1)

struct store_order_filter {
    const char *customer_id;      /* NULL = any */
    const char *status;           /* NULL = any; one of the five statuses */
    const char *before_id;        /* cursor: only ids < this; NULL = newest */
    size_t limit;                 /* 1..STORE_LIST_LIMIT_MAX */
};

/* Newest first. *out is an array the caller frees with store_orders_free(). */
int store_list_orders(struct store *s, const struct store_order_filter *f, int64_t now_ms,
                      struct store_order **out, size_t *n);
void store_orders_free(struct store_order *orders, size_t n);

struct store_idempotency {
    char *request_json;
    char *response_json;
    char order_id[ID_ULID_LEN + 1];
};
/* STORE_ENOTFOUND when the key is unknown or older than IDEMPOTENCY_TTL_S. */
int store_idempotency_get(struct store *s, const char *key, int64_t now_ms,
                          struct store_idempotency *out);
void store_idempotency_clear(struct store_idempotency *r);
/* Deletes keys older than the TTL; *deleted may be NULL. */
int store_idempotency_prune(struct store *s, int64_t now_ms, uint64_t *deleted);

struct store_stats {
    uint64_t queue_depth;
    uint64_t dlq_depth;
    int64_t oldest_enqueued_at_ms; /* 0 when the queue is empty */
};
/* Cheap: counters kept in memory and one indexed lookup. */
int store_stats(struct store *s, struct store_stats *out);

/*
 * Puts the backend's own metrics into sink at scrape time (metrics.h:
 * metrics_sink_put), those that only one backend has: SQLite's WAL size and
 * its checkpoints (orderd_storage_wal_bytes, orderd_storage_checkpoints_total).
 * Cheap (one stat(2)); nothing on postgres. Any thread.
 */
struct metrics_sink;
void store_put_metrics(struct store *s, struct metrics_sink *sink);

/* True when a write transaction can be started now (readiness). */
bool store_writable(struct store *s);

/* ---- queue (workers) -------------------------------------------------- */

struct store_message {
    char order_id[ID_ULID_LEN + 1];
    char *customer_id;
    char *items_json;
    char traceparent[TRACEPARENT_LEN + 1];
    int64_t receipt;              /* fencing token of this delivery */
    uint32_t receive_count;       /* including this delivery */
    int64_t created_at_ms;
};
void store_message_clear(struct store_message *m);

/*
 * Claims up to max visible messages (oldest first) with a lease of visibility_timeout_ms:
 * each gets a fresh receipt and its receive count goes up. Messages whose
 * receive count already reached max_receives (their last lease expired) are
 * moved to dead_letters instead of being delivered; *dead_lettered counts them.
 */
int store_claim(struct store *s, int64_t now_ms, int64_t visibility_timeout_ms, uint32_t max_receives,
                struct store_message *out, size_t max, size_t *n, size_t *dead_lettered);

/* Outcome of one delivery, applied by store_settle() in one transaction. */
enum store_outcome { STORE_OUTCOME_COMPLETED, STORE_OUTCOME_RETRY, STORE_OUTCOME_DEAD_LETTER };

struct store_settlement {
    const char *order_id;
    int64_t receipt;
    enum store_outcome outcome;
    const char *error;            /* RETRY / DEAD_LETTER: why; bounded by the caller */
    const char *result_json;      /* COMPLETED: the fulfilment's JSON answer, or NULL;
                                   * at most FULFILMENT_RESULT_MAX bytes */
    int64_t visible_at_ms;        /* RETRY: when to deliver again */
    uint32_t attempts;            /* receive count of this delivery */
    int result;                   /* out: STORE_OK or STORE_ESTALE */
};

/* Applies n settlements in one transaction (see store_sqlite.c for each). */
int store_settle(struct store *s, struct store_settlement *items, size_t n, int64_t now_ms);

/* Makes messages under these receipts visible at now_ms and gives back the receive (drain). */
int store_release(struct store *s, const struct store_message *msgs, size_t n, int64_t now_ms);

/* One lease to renew: the message as delivered under receipt. */
struct store_lease {
    const char *order_id;
    int64_t receipt;
    int result;                   /* out: STORE_OK, or STORE_ESTALE (another delivery owns it) */
};

/*
 * Renews leases while their work goes on (as SQS's ChangeMessageVisibility):
 * each message still under its receipt stays invisible until at least
 * now_ms + visibility_timeout_ms. One transaction; read each result.
 */
int store_extend_leases(struct store *s, struct store_lease *items, size_t n, int64_t now_ms,
                        int64_t visibility_timeout_ms);

/*
 * When the next message becomes visible; STORE_ENOTFOUND when the queue is
 * empty. postgres: other nodes enqueue without waking this one, so the answer
 * is at most STORE_PG_POLL_MS ahead and never STORE_ENOTFOUND (see store_pg.c).
 */
int store_next_visible_ms(struct store *s, int64_t *when_ms);

/* ---- dead letters (admin) -------------------------------------------- */

struct store_dead_letter {
    char order_id[ID_ULID_LEN + 1];
    char *customer_id;
    char *items_json;
    uint32_t attempts;
    char *last_error;
    int64_t created_at_ms;
    int64_t dead_lettered_at_ms;
    char traceparent[TRACEPARENT_LEN + 1];
};
/* Newest dead letter first; before_id is the cursor (NULL = first page);
 * limit 1..STORE_LIST_LIMIT_MAX. */
int store_list_dead_letters(struct store *s, const char *before_id, size_t limit,
                            struct store_dead_letter **out, size_t *n);
void store_dead_letters_free(struct store_dead_letter *d, size_t n);
/* Moves one dead letter back to the queue with a zero receive count; its
 * order keeps the run that failed (store_order: redrives, previous_*). */
int store_redrive(struct store *s, const char *order_id, int64_t now_ms);
/* Moves all dead letters back, in batches, as store_redrive(); *moved may be
 * NULL. */
int store_redrive_all(struct store *s, int64_t now_ms, uint64_t *moved);
/* Drops a dead letter for good: its order becomes status "discarded", with
 * discarded_at = now_ms, and keeps its attempts and last error. */
int store_delete_dead_letter(struct store *s, const char *order_id, int64_t now_ms);

/* ---- retention (issue 20) ---------------------------------------------- */

/* What retention deletes, each by its own [retention] duration. */
enum store_retention_kind {
    /* completed orders whose processed_at is before the cutoff */
    STORE_RETENTION_COMPLETED,
    /* dead letters that died before the cutoff, with their orders; and
     * discarded orders (a deleted dead letter) discarded before it */
    STORE_RETENTION_DEAD_LETTERS,
    STORE_RETENTION_KIND_COUNT
};

/*
 * Deletes at most max (<= RETENTION_BATCH) expired rows of one kind, and
 * every row that belongs to them, in ONE short transaction, oldest first;
 * *deleted is how many orders went (fewer than max: nothing more has expired
 * now). Never touches a queued or processing order. Any thread; the
 * retention sweeper calls it between intake commits.
 */
int store_purge_expired(struct store *s, enum store_retention_kind kind, int64_t cutoff_ms,
                        size_t max, uint64_t *deleted);

/* ---- export (issue 20) ------------------------------------------------- */

struct store_export_filter {
    const char *status;      /* NULL = any; else one of the statuses (store_status_valid) */
    const char *customer_id; /* NULL = any */
    int64_t before_ms;       /* created before it; 0 = any time */
};

/* Called once per order, in order_id order; nonzero stops the export and is
 * returned by store_export(). o and its strings live until the call returns. */
typedef int (*store_export_fn)(void *arg, const struct store_order *o);

/*
 * Streams every order that matches f from ONE consistent snapshot (what was
 * committed when it started, whatever commits meanwhile), in constant memory
 * however many rows: sqlite, one read transaction on its own connection;
 * postgres, a REPEATABLE READ READ ONLY transaction read row by row. Returns
 * STORE_OK, fn's nonzero value, or an error. Any thread; intake goes on.
 */
int store_export(struct store *s, const struct store_export_filter *f, store_export_fn fn,
                 void *arg);

/* ---- maintenance ------------------------------------------------------ */

/* Consistent online copy to dest_path through the SQLite backup API.
 * sqlite only: a PostgreSQL database is backed up with pg_dump. */
int store_backup(const char *db_path, const char *dest_path);


const char *store_sqlite_version(void);

#endif
