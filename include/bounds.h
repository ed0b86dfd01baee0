/*
 * bounds.h — every fixed limit of orderd in one place.
 *
 * Limits an operator may want to change are config keys (see config.h); the
 * ones here are structural: sizes of identifiers, batch sizes, caps that keep
 * memory bounded whatever a client sends.
 */
#ifndef ORDERD_BOUNDS_H
#define ORDERD_BOUNDS_H

/* Order validation (SPEC "Validation"). */
#define ORDER_CUSTOMER_ID_MAX 64   /* characters, printable */
#define ORDER_ITEMS_MAX 100        /* entries in "items" */
#define ORDER_ITEM_NAME_MAX 128    /* characters */
#define ORDER_QUANTITY_MIN 1
#define ORDER_QUANTITY_MAX 10000
#define ORDER_JSON_DEPTH_MAX 8      /* nesting deeper than this is rejected */
#define ORDER_FIELD_ERRORS_MAX 16   /* errors reported per request */

/* Identifiers. */
#define ID_ULID_LEN 26              /* Crockford base32 ULID */
#define TRACE_ID_HEX_LEN 32
#define SPAN_ID_HEX_LEN 16
#define TRACEPARENT_LEN 55          /* "00-" 32 "-" 16 "-" 2 */
#define REQUEST_ID_MAX 64           /* an incoming X-Request-Id longer than this is replaced */
#define IDEMPOTENCY_KEY_MAX 255

/* HTTP. */
#define HTTP_CLIENT_MAX 64               /* a client's name: API key name or address */
/* libmicrohttpd's memory per connection: request line and headers, read
 * buffer, the reply's headers. Headers of up to ~15 KiB fit; a request with
 * more is refused (431). It is cleared after every request, so it is kept
 * small: 32 KiB cost 5 % of throughput (docs/performance.md). */
#define HTTP_CONNECTION_MEMORY (16 * 1024)
/* SIGTERM: wait this long for in-flight requests; also the longest [server]
 * drain_grace, so that a drain fits the unit's TimeoutStopSec (30 s) with
 * room for the workers' current messages. */
#define HTTP_DRAIN_TIMEOUT_MS 10000
/* A declared body over max_body_bytes but at most this is read and discarded
 * before its 413, so that the client sees the answer, not a reset (http.c). */
#define HTTP_DISCARD_BODY_MAX (1024 * 1024)
#define HTTP_RETRY_AFTER_S 1              /* Retry-After on 503 */
#define HTTP_TLS_PEM_MAX (1024 * 1024)    /* bytes of a tls_cert or tls_key file */
#define HTTP_LIST_LIMIT_DEFAULT 50
#define HTTP_LIST_LIMIT_MAX 500

/* Group commit. */
#define COMMIT_BATCH_MAX 256        /* orders in one transaction */
#define COMMIT_BACKLOG_MAX 8192     /* orders waiting for the committer */

/* Storage. */
#define STORE_READERS 4             /* read-only SQLite connections */
#define STORE_INSERT_ROWS_MAX 16    /* orders written by one multi-row INSERT (sqlite) */
#define STORE_WAL_CHECKPOINT_PAGES 1000 /* WAL pages (4 KiB) between checkpoints (4000: worse p99) */
#define STORE_WAL_SIZE_LIMIT (64 * 1024 * 1024) /* a WAL file is cut back to this when it restarts */
#define STORE_BUSY_TIMEOUT_MS 5000
#define IDEMPOTENCY_TTL_S (24 * 3600)
#define STORE_ERROR_TEXT_MAX 4096   /* last_error kept per order */

/* Workers. */
#define WORKER_BATCH_MAX 64         /* messages claimed in one transaction */
#define WORKER_COUNT_MAX 64
#define WORKER_HANDOFF_MAX 1024     /* messages delivered in memory, not yet taken */
#define WORKER_POLL_MS 200          /* busy with deliveries: ask the store this often */
#define WORKER_STORE_RETRY_MS 1000  /* a claim failed (disk or database down): ask again after */
#define FULFILMENT_STDERR_MAX 4096
#define FULFILMENT_ERROR_MAX (FULFILMENT_STDERR_MAX + 128) /* last_error of one attempt */
#define FULFILMENT_RESULT_MAX 4096   /* a fulfilment service's JSON answer kept per order */
#define FULFILMENT_RESPONSE_MAX (64 * 1024) /* body read from it at most; more aborts */
#define FULFILMENT_HEADERS_MAX (16 * 1024)  /* its answer's headers, all together */
#define FULFILMENT_EXCERPT_MAX 512   /* of an error answer's body, in last_error */
#define FULFILMENT_CONCURRENCY_MAX 4096 /* fulfilment_concurrency at most */

/* Retention: expired orders are deleted this many at a time, each batch its
 * own short transaction, a pause between batches so that intake goes first.
 * 200 / 20 ms: a batch holds SQLite's write lock ~0.6 ms (1.2 ms at 500), the
 * sweeper deletes up to ~9 k orders/s (1 M in ~2 min) and durable intake
 * keeps >= 0.8 of its rate meanwhile (bench/retention.sh, docs/performance.md). */
#define RETENTION_MAX_DAYS 36500    /* [retention] durations at most (100 years) */
#define RETENTION_BATCH 200         /* rows deleted per transaction */
#define RETENTION_PAUSE_MS 20       /* after a full batch: the committer goes first */
#define RETENTION_INTERVAL_MS 60000 /* after a sweep that found less than a batch */

/* Tracing (OTLP/HTTP export). */
#define TRACING_ATTRS_MAX 8            /* attributes per span */
#define TRACING_ATTR_VALUE_MAX 256     /* bytes of a string attribute */
#define TRACING_STATUS_MESSAGE_MAX 256 /* bytes of an error status message */
#define TRACING_BUFFER_SPANS 8192      /* ended, not yet exported; more are dropped */
#define TRACING_BATCH_SPANS 512        /* spans per export request */
#define TRACING_EXPORT_INTERVAL_MS 1000 /* a batch at least this often when spans wait */
#define TRACING_EXPORT_TIMEOUT_MS 5000 /* one export request, connect included */
#define TRACING_BACKOFF_MAX_MS 30000   /* retries of a refused export back off up to this */
#define TRACING_FLUSH_MS 2000          /* at stop: sending what is left, at most */
#define TRACING_HEADERS_MAX 16         /* lines of headers_file */

/* Config. */
#define CONFIG_ERRORS_MAX 64
#define CONFIG_LINE_MAX 4096
#define CONFIG_KEYS_MAX 48          /* keys of the file (config.c's table must fit) */

#endif
