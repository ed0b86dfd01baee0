/*
 * config_int.h — private to the config module: what its three files share.
 *
 * config.c reads the file and the environment (struct parser, the error
 * list), config_keys.c holds the table of keys and the rules between them,
 * config_values.c turns one value's text into its field. include/config.h is
 * the module's public face; nothing outside src/config*.c includes this file.
 */
#ifndef ORDERD_CONFIG_INT_H
#define ORDERD_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

#define MS_PER_S UINT64_C(1000)
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)
#define MS_PER_D (24 * MS_PER_H)
#define KIB UINT64_C(1024)
#define MIB (1024 * KIB)

/* ---- the keys (config_keys.c) --------------------------------------------- */

enum key_type {
    KT_LISTEN,     /* host:port -> listen, listen_host, listen_port */
    KT_STRING,     /* char *; empty = unset (NULL) */
    KT_PATH,       /* char *; must not be empty */
    KT_U32,        /* uint32_t in [min, max] */
    KT_U64,        /* uint64_t in [min, max] */
    KT_SIZE,       /* uint64_t bytes, k/M suffix, in [min, max] */
    KT_DURATION,   /* uint64_t milliseconds, unit required, in [min, max] */
    KT_RATE,       /* double, decimal, in [min, max] */
    KT_RATIO,      /* double, decimal, in [0, 1] */
    KT_BACKEND,    /* enum store_backend */
    KT_DURABILITY, /* enum durability */
    KT_LEVEL,      /* enum log_level */
    KT_FORMAT,     /* enum log_format */
    KT_BOOL,       /* bool: true | false */
};

struct key_def {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset; /* of the field in struct config */
    uint64_t min, max;
};

/* The table, in the order of struct config's origins; config_keys_count <= CONFIG_KEYS_MAX. */
extern const struct key_def config_key_defs[];
extern const size_t config_keys_count;

/* Index of [section] name in the table, or -1. */
int config_key_find(const char *section, const char *name);
bool config_section_known(const char *section);
/* "server, storage, ..." and "listen, max_body_bytes, ..." for messages. */
void config_fmt_sections(char *buf, size_t cap);
void config_fmt_section_keys(char *buf, size_t cap, const char *section);

/* ---- the parse state (config.c) ------------------------------------------- */

/* Where a key's current value came from. */
struct origin {
    unsigned line;   /* line of the file; 0 for a default or the environment */
    unsigned seq;    /* order of assignment; 0 = the default */
    const char *env; /* "ORDERD_X=value" in envp when from the environment */
};

struct key_state {
    struct origin origin;
    bool bad; /* its last assignment was rejected: skip the checks between keys */
};

enum section_state {
    SECTION_NONE,  /* before any [section] */
    SECTION_KNOWN, /* keys are looked up */
    SECTION_BAD,   /* unknown or malformed header, reported once: keys skipped */
};

struct parser {
    struct config *cfg;
    struct config_errors *errs;
    int rc; /* sticky -ENOMEM */
    /* line source: a FILE or a string */
    FILE *fp;
    const char *text;
    size_t pos;
    int read_errno;
    unsigned lineno;
    enum section_state section;
    unsigned seq;
    struct key_state keys[CONFIG_KEYS_MAX]; /* the first config_keys_count used */
    char line[CONFIG_LINE_MAX + 1];
};

/* The rules between keys, once the file and the environment are read (config_keys.c). */
void config_cross_check(struct parser *p);

/* ---- one value (config_values.c) ------------------------------------------- */

/* Sets key k of cfg from its text. 0, -EINVAL with msg filled, or -ENOMEM. */
int config_key_apply(struct config *cfg, const struct key_def *k, const char *v, char *msg,
                     size_t cap);

/* ---- errors (config.c) ------------------------------------------------------ */

/* Bounded copy of src[0..len) with control characters shown as '?'. */
void config_copy_printable(char *dst, size_t cap, const char *src, size_t len);
void config_errs_reset(struct config_errors *errs);
/* An error against key k where its value came from: o's line of the file, or its variable. */
void config_report(struct parser *p, const struct origin *o, const struct key_def *k,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
