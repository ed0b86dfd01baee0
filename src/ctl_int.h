/*
 * ctl_int.h — private to `orderd ctl`: what src/ctl.c (the command line, the
 * URL, the key file, the requests, the exit statuses) and src/ctl_format.c
 * (the text for people: cells, tables, "key: value" lines, ages, error
 * answers; the --json output) call in each other, and what their unit tests
 * (tests/unit/test_ctl.c) call. No I/O beyond the key file, the FILE a
 * printer is given and a list's end (stdout, stderr); no state. The main
 * thread only.
 */
#ifndef ORDERD_CTL_INT_H
#define ORDERD_CTL_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* ---- ctl.c ---------------------------------------------------------------------- */

/* Exit statuses (orderd(8), CTL; `orderd ctl --help`). */
enum {
    CTL_EXIT_OK = 0,          /* done */
    CTL_EXIT_USAGE = 1,       /* bad command line, or a local file (key, CA) that cannot be used */
    CTL_EXIT_UNREACHABLE = 2, /* no answer: refused, DNS, TLS, timeout, connection lost */
    CTL_EXIT_NOT_FOUND = 3,   /* 404: no such order or dead letter */
    CTL_EXIT_REFUSED = 4,     /* 401 / 403: no key, an unknown key, or one without the scope */
    CTL_EXIT_FAILED = 5,      /* any other error answer (400, 409, 429, 5xx, 503 draining), or
                                 an answer ctl cannot read */
};

#define CTL_TIMEOUT_MS_DEFAULT 10000u /* --timeout: a request at most, connecting included */
#define CTL_TIMEOUT_MS_MAX 3600000u
#define CTL_RESPONSE_MAX (32u * 1024 * 1024) /* bytes of an answer; a page of 500 orders fits */
#define CTL_KEY_FILE_READ_MAX 4096 /* bytes of a key file read; its first line is the key */
#define CTL_URL_MAX 2048
#define CTL_WIDTH_DEFAULT 100 /* columns of a table when stdout is no terminal */
#define CTL_FLEX_MIN 16       /* the truncated column keeps at least this many */

enum ctl_command {
    CTL_CMD_NONE = 0,
    CTL_CMD_ORDERS_GET,
    CTL_CMD_ORDERS_LIST,
    CTL_CMD_DLQ_LIST,
    CTL_CMD_DLQ_REDRIVE,     /* one: id */
    CTL_CMD_DLQ_REDRIVE_ALL, /* --all */
    CTL_CMD_DLQ_DELETE,
    CTL_CMD_STATS,
};

struct ctl_options {
    const char *url;      /* --url; NULL: from the config's listen */
    const char *key_file; /* --key-file */
    const char *ca_file;  /* --ca-file */
    bool json;            /* --json */
    uint64_t timeout_ms;  /* --timeout */
    bool help;            /* -h, --help, or the command `help` */
    enum ctl_command cmd;
    const char *id;       /* orders get, dlq redrive, dlq delete */
    const char *status;   /* orders list --status */
    const char *customer; /* orders list --customer */
    const char *cursor;   /* lists: --cursor, the page to start at */
    unsigned limit;       /* lists: --limit; 0 = the daemon's default (with --all: 500) */
    bool all;             /* lists: follow next_cursor; dlq redrive: every dead letter */
};

/*
 * Parses argv (argv[0] is "ctl"; options anywhere, "--" ends them) into o.
 * argv itself is left as it was. 0, or -EINVAL with one line in err.
 */
int ctl_parse_args(int argc, char **argv, struct ctl_options *o, char *err, size_t err_size);

/* The usage text of `orderd ctl --help`. */
void ctl_usage(FILE *out);

/*
 * The daemon's URL from [server] listen: http://HOST:PORT, https:// with tls;
 * a wildcard address (0.0.0.0, ::) means this host's loopback (127.0.0.1,
 * ::1); an IPv6 address goes in brackets. 0; -EINVAL for port 0 (any free
 * port: no URL to derive); -ENAMETOOLONG when buf is too small.
 */
int ctl_default_url(const char *host, unsigned port, bool tls, char *buf, size_t size);

/*
 * Checks a --url and writes it without trailing slashes to out: http or
 * https, a host, no user or password, query or fragment (a path is kept: a
 * proxy's prefix). *loopback: its host is 127.0.0.0/8, ::1 or localhost.
 * 0, or -EINVAL with why.
 */
int ctl_check_url(const char *url, char *out, size_t size, bool *loopback, char *why,
                  size_t why_size);

/* Appends s to out (size bytes, NUL-terminated) percent-encoded: all but
 * A-Z a-z 0-9 - . _ ~. 0, or -ENAMETOOLONG (out then holds what fitted). */
int ctl_escape(const char *s, char *out, size_t size);

/*
 * Reads the API key of a --key-file: its first line, without the newline
 * (and a CR before it). A regular file must not be readable or writable by
 * other users (like ssh's private keys); a pipe (`--key-file <(pass show
 * orderd)`) is read as it is. The key is 1..AUTH_KEY_MAX visible ASCII
 * characters. 0 with the key in key[size]; else -errno / -EINVAL with why
 * (which never holds the key).
 */
int ctl_read_key(const char *path, char *key, size_t size, char *why, size_t why_size);

/* The exit status for an HTTP status: 2xx → 0, 404 → 3, 401/403 → 4, any
 * other → 5; 0 (no answer) → 2. */
int ctl_exit_for_status(long status);

/* ---- ctl_format.c ---------------------------------------------------------------- */

/*
 * One cell of a table: UTF-8 text on one line. Control characters (C0, DEL,
 * C1, U+2028/9) and runs of whitespace become one space, invalid UTF-8 a
 * '?', the ends are trimmed; longer than max_cols columns (a code point
 * counts as one), it is cut and ends in "...". max_cols 0 = no limit.
 * Writes at most size - 1 bytes; returns the columns of what it wrote.
 */
size_t ctl_cell(const char *s, size_t max_cols, char *out, size_t size);

/* Columns of UTF-8 text as ctl_cell counts them. */
size_t ctl_columns(const char *s);

/* "2024-05-01T12:00:00.123Z" (the API's timestamps) → seconds since the
 * epoch. 0 or -EINVAL. */
int ctl_parse_time(const char *s, int64_t *out);

/* An age for people: "0s", "42s", "17m", "3h12m", "5d04h"; negative is "0s". */
void ctl_format_age(int64_t seconds, char *buf, size_t size);

/*
 * A table: a header row and rows of cells, columns two spaces apart, as wide
 * as their widest cell. Cells are kept as ctl_cell() makes them. Right-
 * aligned columns are the bits of right_mask. The last column is never
 * padded; it is cut so that a row fits in the width given to print (it
 * keeps CTL_FLEX_MIN columns at least).
 */
struct ctl_table;
struct ctl_table *ctl_table_new(size_t ncols, const char *const *headers, unsigned right_mask);
int ctl_table_add(struct ctl_table *t, const char *const *cells); /* 0 or -ENOMEM */
size_t ctl_table_rows(const struct ctl_table *t);
void ctl_table_print(const struct ctl_table *t, size_t width, FILE *out);
void ctl_table_free(struct ctl_table *t);

/*
 * An object as "key: value" lines, values lined up: null is "-", strings are
 * cleaned as ctl_cell does but keep their lines (each further line indented
 * under the first), numbers and booleans as JSON writes them, "items" as one
 * "QUANTITY x ITEM" line each, other arrays and objects as compact JSON.
 */
void ctl_print_fields(const json_t *obj, FILE *out);

/* The one line of an error answer (a problem document, else the start of the
 * body), cleaned and cut as ctl_cell does: "TITLE: DETAIL (field: message;
 * ...) [request ID]". */
void ctl_describe_problem(const char *body, size_t len, char *out, size_t size);

/* --json: an answer as it came, ending in a newline; nothing for len 0. */
void ctl_print_raw(const char *body, size_t len, FILE *out);

/* --json --all: each item of a page as compact JSON on a line, flushed. */
void ctl_print_items(const json_t *items, FILE *out);

/* Columns a table may take: $COLUMNS, the terminal's width, else
 * CTL_WIDTH_DEFAULT. */
size_t ctl_table_width(void);

/* orders list, dlq list: the table of a list (NULL when memory ran out), its
 * rows from a page's items (0 or -ENOMEM; now dates the dead letters' AGE),
 * and its end: the table on stdout when it has rows; when complete, "no
 * orders" or the next --cursor on stderr. t may be NULL (--json). */
struct ctl_table *ctl_list_table_new(bool dlq);
int ctl_list_add_rows(struct ctl_table *t, const json_t *items, bool dlq, time_t now);
void ctl_list_print(const struct ctl_table *t, bool dlq, const char *cursor, bool complete);

#endif
