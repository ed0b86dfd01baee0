/*
 * fulfilment.h — runs the operator's fulfilment_command for one order:
 * no shell (posix_spawn), the order JSON on stdin, ORDER_ID and TRACEPARENT in
 * its environment, in its own process group that is killed whole at the
 * timeout, and once the command itself has exited (nothing it started
 * outlives it). Exit 0 is success; otherwise its stderr (bounded) says why.
 *
 * Thread-safe: each call owns its pipes and child. The process must ignore
 * SIGPIPE (main does).
 */
#ifndef ORDERD_FULFILMENT_H
#define ORDERD_FULFILMENT_H

#include <stddef.h>
#include <stdint.h>

struct fulfilment_command {
    char **argv;                  /* NULL-terminated */
    size_t argc;
};

/*
 * Splits a command line into words: blanks separate, '...' and "..." quote,
 * backslash escapes the next character outside single quotes. No expansion of
 * any kind. 0, -EINVAL (unterminated quote, empty) or -ENOMEM.
 */
int fulfilment_parse(const char *line, struct fulfilment_command *out);
void fulfilment_command_free(struct fulfilment_command *cmd);

enum fulfilment_result {
    FULFILMENT_OK = 0,            /* exited 0 */
    FULFILMENT_FAILED = 1,        /* exited non-zero or was killed by a signal */
    FULFILMENT_TIMEOUT = 2,       /* killed at the timeout */
    FULFILMENT_ESPAWN = -1,       /* could not start (why is in error) */
};

/*
 * Runs cmd with input on stdin. extra_env ("NAME=value", NULL-terminated) is
 * added to the daemon's environment. error receives a one-line reason plus the
 * command's stderr, cut to error_size - 1 bytes. Returns enum fulfilment_result.
 */
int fulfilment_run(const struct fulfilment_command *cmd, const char *input, size_t input_len,
                   const char *const *extra_env, int64_t timeout_ms, char *error,
                   size_t error_size);

#endif
