/*
 * config.h — the INI file of SPEC "Config file" as a struct.
 *
 * config_load() reads a file into a struct config, applies ORDERD_SECTION_KEY
 * environment overrides, and collects every error with its line (an error from
 * the environment has line 0). Unknown sections and keys are errors, so a typo
 * never passes silently. Durations take a unit (ms, s, m, h); sizes may take
 * k or M. A loaded config remembers where each key was set, so that checks
 * made elsewhere (the files it names: main.c) report at that line too
 * (config_key_error), and config_warnings() names valid settings that work
 * against each other. Pure functions of their input: no thread restrictions.
 */
#ifndef ORDERD_CONFIG_H
#define ORDERD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "log.h"
#include "store.h" /* enum store_backend, enum durability */

/* Where a key got its value; config_keys.c's bookkeeping, read through config_key_error(). */
struct config_origin {
    unsigned line;                /* line of the file; 0 for a default or the environment */
    bool env;                     /* set by an ORDERD_SECTION_KEY variable */
};

struct config {
    /* [server] */
    char *listen;                 /* as written, e.g. "127.0.0.1:8080" */
    char *listen_host;            /* "127.0.0.1", "::1", "0.0.0.0" */
    uint16_t listen_port;         /* 0 = any free port (tests) */
    uint64_t max_body_bytes;      /* default 65536 */
    char *tls_cert;               /* NULL when unset; both or neither */
    char *tls_key;
    uint32_t max_connections;     /* default 1024 */
    uint32_t max_connections_per_ip; /* default 128; 0 = no per-address cap */
    uint64_t request_timeout_ms;  /* idle/read timeout per connection, default 30s */
    uint32_t http_threads;        /* 0 = number of CPUs */
    uint64_t drain_grace_ms;      /* SIGTERM: keep answering 503 this long at least; default 0 */
    /* [storage] */
    enum store_backend backend;
    char *storage_path;           /* default /var/lib/orderd/orderd.db */
    enum durability durability;
    char *dsn;                    /* NULL when unset */
    /* [queue] */
    uint64_t visibility_timeout_ms; /* default 30s */
    uint32_t max_receives;        /* default 5 */
    uint64_t backoff_base_ms;     /* default 1s */
    uint64_t backoff_max_ms;      /* default 5m */
    uint64_t max_depth;           /* default 1000000 */
    /* [workers] */
    uint32_t worker_count;        /* default 2 */
    char *fulfilment_command;     /* NULL when unset */
    char *fulfilment_url;         /* NULL when unset; excludes fulfilment_command */
    char *fulfilment_secret_file; /* whsec_ secrets that sign requests; NULL: unsigned */
    char *fulfilment_ca_file;     /* CA bundle for https; NULL: the system's */
    uint64_t fulfilment_timeout_ms; /* default 10s */
    uint32_t fulfilment_concurrency; /* in flight per node, default 64 */
    /* [limits] */
    double rate;                  /* requests/s per client; 0 = off */
    uint32_t burst;               /* 0 = off */
    /* [auth] */
    char *keys_file;              /* NULL = no auth */
    bool protect_status;          /* /metrics and /status.json need a key too; default false */
    /* [retention]: how long finished orders stay; 0 = forever (the default) */
    uint64_t retention_completed_ms;    /* completed orders, from completed_at */
    uint64_t retention_dead_letters_ms; /* dead letters (and discarded orders), from when they died */
    /* [tracing]: OpenTelemetry spans over OTLP/HTTP (tracing.h) */
    char *otlp_endpoint;          /* NULL = off; http(s)://host:port/v1/traces */
    char *service_name;           /* NULL = "orderd" */
    double sample_ratio;          /* traces that start here, 0..1; default 1 */
    char *tracing_headers_file;   /* "Name: value" lines for the collector; NULL = none */
    /* [log] */
    enum log_level log_level;
    enum log_format log_format;
    /* where each key was set, in the order of config_keys.c's table (not for other modules) */
    struct config_origin origins[CONFIG_KEYS_MAX];
};

struct config_error {
    unsigned line;                /* 0 = from the environment or the file as a whole */
    char section[32];
    char key[48];
    char message[256];
};

struct config_errors {
    size_t count;
    size_t dropped;               /* errors beyond CONFIG_ERRORS_MAX */
    struct config_error items[CONFIG_ERRORS_MAX];
};

/* Fills defaults; strings are heap copies. Caller releases with config_free(). */
int config_init(struct config *cfg);
void config_free(struct config *cfg);

/*
 * Initialises cfg itself (do not call config_init first: that would leak),
 * reads FILE over the defaults, then the environment (envp may be NULL = none).
 * Returns 0, -EINVAL when errs holds at least one error, or -errno when the
 * file cannot be read (errs then holds one line-0 error saying why).
 * On failure cfg still holds a valid (possibly partial) config to free.
 */
int config_load(const char *path, char *const *envp, struct config *cfg,
                struct config_errors *errs);

/* Same, from a string instead of a file (tests, fuzzing). */
int config_load_string(const char *text, char *const *envp, struct config *cfg,
                       struct config_errors *errs);

/* "250ms" "30s" "5m" "1h" -> milliseconds. 0 or -EINVAL (no unit, junk, overflow). */
int config_parse_duration_ms(const char *s, uint64_t *out);
/* ms as the file would write it, in the largest whole unit: "30d", "90s", "250ms", "0ms". */
void config_format_duration(uint64_t ms, char *buf, size_t cap);
/* "65536" "64k" "1M" -> bytes. 0 or -EINVAL. */
int config_parse_size(const char *s, uint64_t *out);

/* Prints "FILE:LINE: [section] key: message" lines; never fails. */
void config_errors_print(const struct config_errors *errs, const char *path, void *stream);

/* One error as config_errors_print() prints it, without the newline, cut to size - 1 bytes. */
void config_error_format(const struct config_error *e, const char *path, char *buf, size_t size);

/*
 * Adds to errs a message about [section] key of a loaded cfg, placed where the
 * key was set: its line, or the ORDERD_ variable that set it, or the file as
 * a whole (line 0) when it kept its default. For checks config_load() cannot
 * make itself, such as whether the files a key names can be used.
 */
void config_key_error(const struct config *cfg, const char *section, const char *key,
                      struct config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * Adds to warns (reset first) every valid setting that works against another,
 * each placed at the key to change: today more worker threads than
 * fulfilment_concurrency while a fulfilment is set (the threads beyond it
 * would run none). A warning never stops orderd.
 */
void config_warnings(const struct config *cfg, struct config_errors *warns);

#endif
