/*
 * cli.h — the subcommands that do one job and exit: `orderd hash-key`,
 * `orderd backup DEST` and `orderd export`. src/main.c parses the command line, loads the config
 * and calls these; they run on the main thread with no other thread started.
 */
#ifndef ORDERD_CLI_H
#define ORDERD_CLI_H

struct config;

/*
 * `orderd hash-key`: reads one key from in_fd (to EOF; from a terminal, one
 * line without echo), strips one trailing newline, checks it is a key a
 * client could present (1..AUTH_KEY_MAX visible characters), and writes its
 * lower-case hex SHA-256 and a newline to out_fd. Buffers that held the key
 * are wiped. 0, or -EINVAL with a line on stderr (empty, too long, bad
 * character), or -errno on I/O failure.
 */
int cli_hash_key(int in_fd, int out_fd);

/*
 * `orderd backup DEST`: an online copy of cfg's SQLite database to dest
 * (store_backup). Returns the exit status: 0 with "backed up ..." on stdout,
 * 1 when the backend is not sqlite, 2 when the backup failed; each failure is
 * exactly one log line in cfg's log format. The log must be configured.
 */
int cli_backup(const struct config *cfg, const char *dest);

/*
 * `orderd export [--status S] [--before TIME] [--customer ID]` (argv[0] is
 * "export"; getopt starts again at argv[1]): every matching order as one
 * JSON object a line on stdout (api_order_json), from one consistent
 * snapshot of the store opened read_only, in constant memory
 * (store_export), then "exported N orders" on stderr. Returns the exit
 * status (orderd(8), EXPORT): 0 done; 1 usage, or stdout failed (a closed
 * pipe, a full disk), one line on stderr; 2 the store cannot be opened or
 * a read failed (its log line says why). cfg's log must be configured.
 * src/cli_export.c.
 */
int cli_export(const struct config *cfg, int argc, char **argv);

#endif
