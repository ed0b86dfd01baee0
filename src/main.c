/*
 * main.c — the command line: run, --check-config, --version, backup,
 * hash-key. Parses arguments, loads the config, checks what it names, and
 * hands over to daemon.c, or to cli.c for backup and hash-key.
 *
 * What the config names is checked here, the same way for --check-config and
 * before a start, so that a start that would fail touches no storage:
 * tls_cert and tls_key (readable PEM, the key the certificate's: http.c asks
 * GnuTLS), keys_file (auth_load), fulfilment_command (it splits into words,
 * and its program is found as posix_spawnp will find it and is executable),
 * fulfilment_secret_file (webhook_secrets_load), fulfilment_ca_file (PEM),
 * and [tracing]'s otlp_endpoint (an http(s) URL) and headers_file (its
 * "Name: value" lines, tracing_headers_check); config_warnings() adds valid
 * settings that work against each other.
 * --check-config prints each problem at its key's line and exits 1; a file
 * that does not exist here is only a warning (a config checked on a build
 * machine for another host). At start each problem is one log line and the
 * exit status is 2 (the config is valid, what it names cannot be used now),
 * except that a fulfilment program that cannot run is only a warning: orders
 * then fail and retry until it can, as they would if it vanished later.
 *
 * Exit codes (SPEC): 0 success, 1 bad config or usage, 2 runtime failure,
 * each failure with one clear line on stderr; a failed backup prints exactly
 * one, in the configured log format (cli.c).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "cli.h"
#include "config.h"
#include "ctl.h"
#include "daemon.h"
#include "fulfilment.h"
#include "http.h"
#include "log.h"
#include "tracing.h"
#include "webhook.h"

#define DEFAULT_CONFIG "/etc/orderd/orderd.conf"
#define WHY_MAX 512
#define DEFAULT_PATH "/bin:/usr/bin" /* glibc's posix_spawnp without PATH */

extern char **environ;

static void usage(FILE *to)
{
    fprintf(to, "usage: orderd [-c FILE]                 run (default FILE: %s)\n"
                "       orderd -c FILE --check-config    validate FILE and exit\n"
                "       orderd -c FILE backup DEST       online copy of the database to DEST\n"
                "       orderd -c FILE export [--status S] [--before TIME] [--customer ID]\n"
                "                                        the orders as NDJSON on stdout\n"
                "       orderd -c FILE ctl [--url URL] [--key-file F] [--json] COMMAND\n"
                "                                        ask the running daemon (orderd ctl --help)\n"
                "       orderd hash-key < KEY            print the SHA-256 of a key read on stdin\n"
                "       orderd --version\n",
            DEFAULT_CONFIG);
}

/* Loads path; on errors prints them and returns 1. */
static int load_config(const char *path, struct config *cfg)
{
    struct config_errors errs = {0};
    /* config_load() initialises cfg itself; cfg must be freed either way. */
    int err = config_load(path, environ, cfg, &errs);
    if (err == -ENOMEM) {
        fprintf(stderr, "orderd: out of memory\n");
        return 2;
    }
    if (err != 0) {
        config_errors_print(&errs, path, stderr);
        return 1;
    }
    return 0;
}

/* ---- the files the config names ------------------------------------------------ */

struct checks {
    const struct config *cfg;
    bool at_start;                /* else --check-config */
    struct config_errors errors;
    struct config_errors warnings;
};

/*
 * A file a key names cannot be used. One that does not exist is only a
 * warning for --check-config: it may be checked for another host.
 */
static void file_problem(struct checks *c, const char *section, const char *key, int err,
                         const char *why)
{
    bool absent = err == -ENOENT || err == -ENOTDIR;
    if (absent && !c->at_start)
        config_key_error(c->cfg, section, key, &c->warnings,
                         "%s (here); orderd will not start without it", why);
    else
        config_key_error(c->cfg, section, key, &c->errors, "%s", why);
}

static void free_secret(char *s)
{
    if (s != NULL)
        explicit_bzero(s, strlen(s));
    free(s);
}

static void check_tls(struct checks *c)
{
    const struct config *cfg = c->cfg;
    char why[WHY_MAX];
    char *cert = NULL, *key = NULL;
    if (cfg->tls_cert == NULL || cfg->tls_key == NULL)
        return;
    int err = http_tls_read_pem(cfg->tls_cert, &cert, why, sizeof(why));
    if (err != 0)
        file_problem(c, "server", "tls_cert", err, why);
    err = http_tls_read_pem(cfg->tls_key, &key, why, sizeof(why));
    if (err != 0)
        file_problem(c, "server", "tls_key", err, why);
    if (cert != NULL && key != NULL) {
        enum http_tls_fault f = http_tls_check(cert, key, why, sizeof(why));
        if (f == HTTP_TLS_BAD_CERT)
            config_key_error(cfg, "server", "tls_cert", &c->errors, "%s: %s", cfg->tls_cert, why);
        else if (f == HTTP_TLS_BAD_KEY)
            config_key_error(cfg, "server", "tls_key", &c->errors, "%s: %s", cfg->tls_key, why);
    }
    free(cert);
    free_secret(key);
}

static void check_keys_file(struct checks *c)
{
    const char *path = c->cfg->keys_file;
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    if (path == NULL)
        return;
    int err = auth_load(path, &a, &errs);
    size_t keys = a != NULL ? auth_key_count(a) : 0;
    auth_free(a);
    if (err == 0) {
        if (keys == 0)
            config_key_error(c->cfg, "auth", "keys_file", &c->warnings,
                             "%s has no keys: every API request will get 401", path);
        return;
    }
    if (errs.count == 0 || errs.items[0].line == 0) {
        char why[WHY_MAX];
        snprintf(why, sizeof(why), "%s: %s", path,
                 errs.count > 0 ? errs.items[0].message : strerror(-err));
        file_problem(c, "auth", "keys_file", err, why);
        return;
    }
    for (size_t i = 0; i < errs.count; i++)
        config_key_error(c->cfg, "auth", "keys_file", &c->errors, "%s:%u: %s", path,
                         errs.items[i].line, errs.items[i].message);
    if (errs.dropped > 0)
        config_key_error(c->cfg, "auth", "keys_file", &c->errors, "%s: %zu more errors", path,
                         errs.dropped);
}

/* 0 when path names a file this process may execute; else -errno (-EISDIR, -EACCES, ...). */
static int executable(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    if (!S_ISREG(st.st_mode))
        return -EACCES;
    return access(path, X_OK) == 0 ? 0 : -errno;
}

/*
 * Finds a program as posix_spawnp() will: as written when it holds a '/',
 * else the first executable file of that name in a directory of PATH (an
 * empty entry is the current directory). 0, or -ENOENT (nowhere), or another
 * -errno with why set.
 */
static int find_program(const char *name, char *why, size_t size)
{
    if (strchr(name, '/') != NULL) {
        int err = executable(name);
        if (err != 0)
            snprintf(why, size, "program %s: %s", name,
                     err == -EACCES ? "not executable (chmod +x?)" : strerror(-err));
        return err;
    }
    const char *path = getenv("PATH");
    if (path == NULL)
        path = DEFAULT_PATH;
    int found = -ENOENT;
    for (const char *dir = path;;) {
        const char *end = strchrnul(dir, ':');
        int dlen = (int)(end - dir);
        char file[PATH_MAX];
        int n = snprintf(file, sizeof(file), "%.*s%s%s", dlen, dir, dlen > 0 ? "/" : "", name);
        if (n > 0 && (size_t)n < sizeof(file)) {
            int err = executable(file);
            if (err == 0)
                return 0;
            if (err != -ENOENT && err != -ENOTDIR)
                found = err;
        }
        if (*end == '\0')
            break;
        dir = end + 1;
    }
    if (found == -ENOENT)
        snprintf(why, size, "program %s: not found in PATH", name);
    else
        snprintf(why, size, "program %s: in PATH but not executable", name);
    return found;
}

static void check_fulfilment(struct checks *c)
{
    const struct config *cfg = c->cfg;
    struct fulfilment_command cmd;
    char why[WHY_MAX];
    if (cfg->fulfilment_command == NULL)
        return;
    int err = fulfilment_parse(cfg->fulfilment_command, &cmd);
    if (err != 0) {
        config_key_error(cfg, "workers", "fulfilment_command", &c->errors, "%s",
                         err == -ENOMEM ? "out of memory"
                                        : "cannot split it into words: a quote is not closed");
        return;
    }
    err = find_program(cmd.argv[0], why, sizeof(why));
    fulfilment_command_free(&cmd);
    if (err == 0)
        return;
    /* At start, or absent here (it may be installed later): orders wait for it. */
    if (c->at_start || err == -ENOENT)
        config_key_error(cfg, "workers", "fulfilment_command", &c->warnings,
                         "%s; every order fails and is retried until it can run", why);
    else
        config_key_error(cfg, "workers", "fulfilment_command", &c->errors, "%s", why);
}

/* HTTP fulfilment: the secrets load (webhook.h) and the CA bundle reads as PEM. */
static void check_fulfilment_http(struct checks *c)
{
    const struct config *cfg = c->cfg;
    char why[WHY_MAX];
    if (cfg->fulfilment_secret_file != NULL) {
        struct webhook_secrets *secrets = NULL;
        char line[WHY_MAX / 2];
        int err = webhook_secrets_load(cfg->fulfilment_secret_file, &secrets, line, sizeof(line));
        webhook_secrets_free(secrets);
        if (err != 0) {
            snprintf(why, sizeof(why), "%s: %s", cfg->fulfilment_secret_file, line);
            file_problem(c, "workers", "fulfilment_secret_file", err, why);
        }
    }
    if (cfg->fulfilment_ca_file != NULL) {
        char *pem = NULL;
        int err = http_tls_read_pem(cfg->fulfilment_ca_file, &pem, why, sizeof(why));
        if (err == 0 && strstr(pem, "-----BEGIN CERTIFICATE-----") == NULL) {
            snprintf(why, sizeof(why), "%s: no PEM certificate in it", cfg->fulfilment_ca_file);
            err = -EINVAL;
        }
        free(pem);
        if (err != 0)
            file_problem(c, "workers", "fulfilment_ca_file", err, why);
    }
}

/* [tracing]: the collector's URL, and the headers file as the exporter reads it. */
static void check_tracing(struct checks *c)
{
    const struct config *cfg = c->cfg;
    char why[WHY_MAX];
    if (cfg->otlp_endpoint != NULL &&
        tracing_endpoint_check(cfg->otlp_endpoint, why, sizeof(why)) != 0)
        config_key_error(cfg, "tracing", "otlp_endpoint", &c->errors, "%s", why);
    if (cfg->tracing_headers_file != NULL) {
        int err = tracing_headers_check(cfg->tracing_headers_file, why, sizeof(why));
        if (err != 0)
            file_problem(c, "tracing", "headers_file", err, why);
    }
}

/* Runs every check on cfg; c->errors and c->warnings hold what they found. */
static void check_all(struct checks *c, const struct config *cfg, bool at_start)
{
    c->cfg = cfg;
    c->at_start = at_start;
    config_warnings(cfg, &c->warnings);
    memset(&c->errors, 0, sizeof(c->errors));
    check_tls(c);
    check_keys_file(c);
    check_fulfilment(c);
    check_fulfilment_http(c);
    check_tracing(c);
}

static void print_warnings(const struct config_errors *warns, const char *path)
{
    char line[WHY_MAX + PATH_MAX];
    for (size_t i = 0; i < warns->count; i++) {
        config_error_format(&warns->items[i], path, line, sizeof(line));
        fprintf(stderr, "warning: %s\n", line);
    }
}

static void log_lines(const struct config_errors *errs, const char *path, enum log_level level,
                      const char *prefix)
{
    char line[WHY_MAX + PATH_MAX];
    for (size_t i = 0; i < errs->count; i++) {
        config_error_format(&errs->items[i], path, line, sizeof(line));
        log_write(level, NULL, "%s%s", prefix, line);
    }
    if (errs->dropped > 0)
        log_write(level, NULL, "%s%s: %zu more", prefix, path, errs->dropped);
}

/* Before a start: 0, or 2 when something the config names cannot be used (logged). */
static int check_before_start(const char *path, const struct config *cfg)
{
    struct checks *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        log_error(NULL, "cannot start: out of memory");
        return 2;
    }
    check_all(c, cfg, true);
    log_lines(&c->warnings, path, LOG_LEVEL_WARN, "");
    log_lines(&c->errors, path, LOG_LEVEL_ERROR, "cannot start: ");
    int rc = c->errors.count > 0 || c->errors.dropped > 0 ? 2 : 0;
    free(c);
    return rc;
}

static int cmd_check_config(const char *path)
{
    struct config cfg;
    int rc = load_config(path, &cfg);
    struct checks *c = rc == 0 ? calloc(1, sizeof(*c)) : NULL;
    if (rc == 0 && c == NULL) {
        fprintf(stderr, "orderd: out of memory\n");
        rc = 2;
    }
    if (c != NULL) {
        check_all(c, &cfg, false);
        print_warnings(&c->warnings, path);
        config_errors_print(&c->errors, path, stderr);
        rc = c->errors.count > 0 || c->errors.dropped > 0 ? 1 : 0;
        free(c);
    }
    config_free(&cfg);
    if (rc == 0)
        printf("%s: ok\n", path);
    return rc;
}

/* ---- backup ----------------------------------------------------------------------- */

static int cmd_backup(const char *path, const char *dest)
{
    struct config cfg;
    int rc = load_config(path, &cfg);
    if (rc == 0) {
        log_configure(cfg.log_level, cfg.log_format);
        rc = cli_backup(&cfg, dest);
    }
    config_free(&cfg);
    return rc;
}

/* export and ctl: argv[0] is the command's name, its options follow. */
static int cmd_with_config(const char *path, int argc, char **argv,
                           int (*fn)(const struct config *cfg, int argc, char **argv))
{
    struct config cfg;
    int rc = load_config(path, &cfg);
    if (rc == 0) {
        log_configure(cfg.log_level, cfg.log_format);
        rc = fn(&cfg, argc, argv);
    }
    config_free(&cfg);
    return rc;
}

/* ctl from a workstation: without -c and without the default file there is
 * no config, and ctl asks the daemon at --url. */
static int cmd_ctl(const char *path, bool path_given, int argc, char **argv)
{
    if (!path_given && access(path, F_OK) != 0 && errno == ENOENT)
        return ctl_main(NULL, argc, argv);
    return cmd_with_config(path, argc, argv, ctl_main);
}

/* ---- run ------------------------------------------------------------------------------ */

static int cmd_run(const char *path)
{
    struct config cfg;
    int rc = load_config(path, &cfg);
    if (rc == 0) {
        log_configure(cfg.log_level, cfg.log_format);
        rc = check_before_start(path, &cfg);
    }
    if (rc == 0) {
        /* A client that goes away mid-write, or a fulfilment command that exits
         * early, must not kill the daemon. */
        signal(SIGPIPE, SIG_IGN);
        rc = daemon_run(path, &cfg, environ);
    }
    config_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = DEFAULT_CONFIG;
    bool check = false, path_given = false;
    int opt;
    /* "+": options end at the command, whose own options follow it */
    while ((opt = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            path_given = true;
            break;
        case 'k': check = true; break;
        case 'V': printf("orderd %s\n", ORDERD_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (check) {
        if (optind != argc) {
            usage(stderr);
            return 1;
        }
        return cmd_check_config(path);
    }
    if (optind < argc && strcmp(argv[optind], "hash-key") == 0) {
        if (argc - optind != 1) {
            fprintf(stderr, "orderd: hash-key takes no argument; it reads the key on stdin\n");
            return 1;
        }
        return cli_hash_key(STDIN_FILENO, STDOUT_FILENO) == 0 ? 0 : 1;
    }
    if (optind < argc && strcmp(argv[optind], "backup") == 0) {
        if (argc - optind != 2) {
            fprintf(stderr, "orderd: backup takes one argument: DEST\n");
            return 1;
        }
        return cmd_backup(path, argv[optind + 1]);
    }
    if (optind < argc && strcmp(argv[optind], "export") == 0)
        return cmd_with_config(path, argc - optind, argv + optind, cli_export);
    if (optind < argc && strcmp(argv[optind], "ctl") == 0)
        return cmd_ctl(path, path_given, argc - optind, argv + optind);
    if (optind != argc) {
        fprintf(stderr, "orderd: unknown command: %s\n", argv[optind]);
        usage(stderr);
        return 1;
    }
    return cmd_run(path);
}
