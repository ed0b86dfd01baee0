/*
 * cli.c — the subcommands that do one job and exit: `orderd hash-key` (the
 * line an operator pastes into the keys file, from a key never echoed) and
 * `orderd backup DEST` (an online copy of the SQLite database). Parsing the
 * command line, loading the config and running the daemon stay in main.c.
 *
 * Threads: the main thread, with no other thread running: backup moves fd 2
 * for the time of the copy (backup_quietly), which only a single thread may.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "store.h"

#define WHY_MAX 512
#define CAPTURE_MAX 4096 /* bytes of the store's log lines read back */

/* ---- orderd hash-key ------------------------------------------------------- */

/* The characters a client can send in a Bearer header (auth.c's rule). */
static int is_visible(unsigned char c) { return c > 0x20 && c < 0x7f; }

static int write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Reads up to cap bytes into buf: to EOF, or to the first newline from a
 * terminal. *len = bytes read; *more = input went on past cap. 0 or -errno.
 */
static int read_key(int fd, char *buf, size_t cap, int tty, size_t *len, int *more)
{
    *len = 0;
    *more = 0;
    for (;;) {
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        if (*len == cap) {
            *more = 1;
            break;
        }
        buf[(*len)++] = c;
        c = 0;
        if (tty && buf[*len - 1] == '\n')
            break;
    }
    return 0;
}

/* read_key() with echo off and a prompt on stderr when fd is a terminal. */
static int read_key_quietly(int fd, char *buf, size_t cap, size_t *len, int *more)
{
    struct termios saved;
    int tty = isatty(fd) && tcgetattr(fd, &saved) == 0;
    if (tty) {
        struct termios quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fd, TCSAFLUSH, &quiet);
        fputs("API key (not echoed): ", stderr);
        fflush(stderr);
    }
    int err = read_key(fd, buf, cap, tty, len, more);
    if (tty) {
        tcsetattr(fd, TCSAFLUSH, &saved);
        fputs("\n", stderr);
    }
    return err;
}

/* A key a client could present: 0, or -EINVAL with the reason on stderr. */
static int check_key(const char *key, size_t len, int more)
{
    if (len == 0) {
        fprintf(stderr, "orderd: hash-key: empty key\n");
        return -EINVAL;
    }
    if (more || len > AUTH_KEY_MAX) {
        fprintf(stderr, "orderd: hash-key: key longer than %d characters\n", AUTH_KEY_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_visible((unsigned char)key[i])) {
            fprintf(stderr,
                    "orderd: hash-key: character %zu of the key is not visible ASCII "
                    "(a client could never send it in a Bearer header)\n",
                    i + 1);
            return -EINVAL;
        }
    }
    return 0;
}

int cli_hash_key(int in_fd, int out_fd)
{
    char buf[AUTH_KEY_MAX + 2]; /* the key, its newline, one byte to see "too long" */
    char hex[AUTH_HEX_LEN + 2];
    size_t len = 0;
    int more = 0;

    int err = read_key_quietly(in_fd, buf, sizeof(buf), &len, &more);
    if (err != 0) {
        fprintf(stderr, "orderd: hash-key: cannot read the key: %s\n", strerror(-err));
        goto out;
    }
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if ((err = check_key(buf, len, more)) != 0)
        goto out;
    if ((err = auth_hash_hex(buf, len, hex)) != 0) {
        fprintf(stderr, "orderd: hash-key: SHA-256 failed\n");
        goto out;
    }
    hex[AUTH_HEX_LEN] = '\n';
    if ((err = write_all(out_fd, hex, AUTH_HEX_LEN + 1)) != 0)
        fprintf(stderr, "orderd: hash-key: cannot write: %s\n", strerror(-err));
out:
    explicit_bzero(buf, sizeof(buf));
    explicit_bzero(hex, sizeof(hex));
    return err;
}

/* ---- orderd backup ----------------------------------------------------------------- */

/* Appends the "msg" of each JSON log line in text[0..len) to why, "; " between them. */
static void collect_messages(const char *text, size_t len, char *why, size_t size)
{
    size_t used = strlen(why);
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;
        json_t *line = json_loadb(text + pos, end - pos, 0, NULL);
        const char *msg = json_string_value(json_object_get(line, "msg"));
        int w = 0;
        if (end > pos)
            w = snprintf(why + used, size - used, "%s%.*s", used > 0 ? "; " : "",
                         msg != NULL ? (int)strlen(msg) : (int)(end - pos),
                         msg != NULL ? msg : text + pos);
        json_decref(line);
        if (w > 0)
            used = (size_t)w >= size - used ? size - 1 : used + (size_t)w;
        pos = end + 1;
    }
}

/* Reads back what was written to the memory file fd. */
static void read_capture(int fd, char *why, size_t size)
{
    char buf[CAPTURE_MAX];
    ssize_t n = pread(fd, buf, sizeof(buf), 0);
    if (n > 0)
        collect_messages(buf, (size_t)n, why, size);
    if (why[0] == '\0')
        snprintf(why, size, "no reason given");
}

/*
 * store_backup() with fd 2 on a memory file: the store logs each failure
 * itself, sometimes in two lines, and a failed backup is to print one line.
 * Its lines are written as JSON, read back, and their messages put in why.
 * No other thread runs meanwhile. When fd 2 cannot be moved, the store's
 * lines go out as they are.
 */
static int backup_quietly(const struct config *cfg, const char *dest, char *why, size_t size)
{
    why[0] = '\0';
    int mem = memfd_create("orderd-backup-log", MFD_CLOEXEC);
    int saved = mem >= 0 ? fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3) : -1;
    if (saved < 0 || dup2(mem, STDERR_FILENO) < 0) {
        if (saved >= 0)
            close(saved);
        if (mem >= 0)
            close(mem);
        snprintf(why, size, "see the line before");
        return store_backup(cfg->storage_path, dest);
    }
    log_configure(cfg->log_level, LOG_FORMAT_JSON);
    int rc = store_backup(cfg->storage_path, dest);
    int back = dup2(saved, STDERR_FILENO);
    log_configure(cfg->log_level, cfg->log_format);
    close(saved);
    read_capture(mem, why, size);
    close(mem);
    return back < 0 ? STORE_EINTERNAL : rc;
}

int cli_backup(const struct config *cfg, const char *dest)
{
    char why[WHY_MAX];
    if (cfg->backend != STORE_BACKEND_SQLITE) {
        log_error(NULL, "backup: orderd backs up the sqlite backend only; use pg_dump for "
                        "postgres");
        return 1;
    }
    if (backup_quietly(cfg, dest, why, sizeof(why)) != STORE_OK) {
        log_error(NULL, "backup of %s to %s failed: %s", cfg->storage_path, dest, why);
        return 2;
    }
    printf("backed up %s to %s\n", cfg->storage_path, dest);
    return 0;
}
