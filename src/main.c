/*
 * main.c — the command line: run, --check-config, --version, backup,
 * hash-key. Parses arguments, loads the config, and hands over to daemon.c.
 *
 * Exit codes (SPEC): 0 success, 1 bad config or usage, 2 runtime failure,
 * each failure with one clear line on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "store.h"

#define DEFAULT_CONFIG "/etc/orderd/orderd.conf"

extern char **environ;

static void usage(FILE *to)
{
    fprintf(to, "usage: orderd [-c FILE]                 run (default FILE: %s)\n"
                "       orderd -c FILE --check-config    validate FILE and exit\n"
                "       orderd -c FILE backup DEST       online copy of the database to DEST\n"
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

/* A keys file that would stop the daemon is a config error too. One that does
 * not exist yet (checking prod.conf on a build machine) is only noted. */
static int check_keys_file(const char *keys_file)
{
    if (access(keys_file, F_OK) != 0 && errno == ENOENT) {
        fprintf(stderr, "note: keys_file %s does not exist here; orderd will not start without it\n",
                keys_file);
        return 0;
    }
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    int err = auth_load(keys_file, &a, &errs);
    auth_free(a);
    if (err == 0)
        return 0;
    auth_errors_print(&errs, keys_file, stderr);
    if (errs.count == 0)
        fprintf(stderr, "%s: cannot load: %s\n", keys_file, strerror(-err));
    return 1;
}

static int cmd_check_config(const char *path)
{
    struct config cfg;
    int rc = load_config(path, &cfg);
    if (rc == 0 && cfg.keys_file)
        rc = check_keys_file(cfg.keys_file);
    config_free(&cfg);
    if (rc == 0)
        printf("%s: ok\n", path);
    return rc;
}

static int cmd_backup(const char *path, const char *dest)
{
    struct config cfg;
    int rc = load_config(path, &cfg);
    if (rc == 0) {
        log_configure(cfg.log_level, LOG_FORMAT_TEXT);
        if (cfg.backend != STORE_BACKEND_SQLITE) {
            fprintf(stderr, "orderd: backup: only the sqlite backend is backed up by orderd\n");
            rc = 1;
        } else if (store_backup(cfg.storage_path, dest) != STORE_OK) {
            fprintf(stderr, "orderd: backup of %s to %s failed\n", cfg.storage_path, dest);
            rc = 2;
        } else {
            printf("backed up %s to %s\n", cfg.storage_path, dest);
        }
    }
    config_free(&cfg);
    return rc;
}

static int cmd_run(const char *path)
{
    struct config cfg;
    int rc = load_config(path, &cfg);
    if (rc == 0) {
        log_configure(cfg.log_level, cfg.log_format);
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
    bool check = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
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
        return auth_hash_key_stdin() == 0 ? 0 : 1;
    }
    if (optind < argc && strcmp(argv[optind], "backup") == 0) {
        if (argc - optind != 2) {
            fprintf(stderr, "orderd: backup takes one argument: DEST\n");
            return 1;
        }
        return cmd_backup(path, argv[optind + 1]);
    }
    if (optind != argc) {
        fprintf(stderr, "orderd: unknown command: %s\n", argv[optind]);
        usage(stderr);
        return 1;
    }
    return cmd_run(path);
}
