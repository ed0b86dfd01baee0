/*
 * fulfilment.h — runs the operator's fulfilment_command for one order:
 * no shell (posix_spawn), the order JSON on stdin, ORDER_ID and TRACEPARENT in
 * its environment, in its own process group that is killed whole at the
 * timeout, and once the command itself has exited (nothing it started
 * outlives it). Exit 0 is success; otherwise its stderr (bounded) says why.
 *
 * A command runs either to the end in one call (fulfilment_run) or as a
 * struct fulfilment_child that the caller's own poll loop drives, so that
 * one thread keeps many commands in flight (the workers do). The command's
 * exit is seen at once through a pidfd in the poll set, never by a clock.
 *
 * Thread-safe: each child owns its pipes and process. The process must ignore
 * SIGPIPE (main does). Linux 5.3 or later (pidfd_open).
 */
#ifndef ORDERD_FULFILMENT_H
#define ORDERD_FULFILMENT_H

#include <poll.h>
#include <stdbool.h>
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
    FULFILMENT_REJECTED = 3,      /* the service refused the order for good (HTTP 4xx) */
    FULFILMENT_ESPAWN = -1,       /* could not start (why is in error) */
};

/*
 * Runs cmd with input on stdin and waits for it. extra_env ("NAME=value",
 * NULL-terminated) is added to the daemon's environment. error receives a
 * one-line reason plus the command's stderr, cut to error_size - 1 bytes.
 * Returns enum fulfilment_result.
 */
int fulfilment_run(const struct fulfilment_command *cmd, const char *input, size_t input_len,
                   const char *const *extra_env, int64_t timeout_ms, char *error,
                   size_t error_size);

/* ---- one command in the caller's poll loop ---------------------------------- */

struct fulfilment_child;

/* Descriptors a child may need polled at once (its pidfd, stdin, stderr). */
#define FULFILMENT_CHILD_FDS 3

/*
 * Starts cmd as fulfilment_run does, without waiting; input is copied. 0, or
 * FULFILMENT_ESPAWN with the reason in error.
 */
int fulfilment_child_start(const struct fulfilment_command *cmd, const char *input,
                           size_t input_len, const char *const *extra_env, int64_t timeout_ms,
                           struct fulfilment_child **out, char *error, size_t error_size);

/* Writes the descriptors to poll now into out (room for FULFILMENT_CHILD_FDS); their count. */
size_t fulfilment_child_pollfds(const struct fulfilment_child *ch, struct pollfd *out);

/* Monotonic time (ids_monotonic_seconds) by which fulfilment_child_step must run again. */
double fulfilment_child_wake_at(const struct fulfilment_child *ch);

/*
 * Acts on what poll reported (fds: any array holding this child's
 * descriptors, other descriptors are ignored) and on the clock: feeds stdin,
 * drains stderr, notices the exit. True when the child is done: exited (and
 * its stderr drained), or out of time.
 */
bool fulfilment_child_step(struct fulfilment_child *ch, const struct pollfd *fds, size_t n);

/* The command's exit code once step said done, or -1 (killed by a signal,
 * out of time, still running): a trace's process.exit.code. */
int fulfilment_child_exit_code(const struct fulfilment_child *ch);

/*
 * Ends the child (its process group is killed whether or not the command
 * exited, and the command is reaped), frees it, and returns enum
 * fulfilment_result with the reason in error as fulfilment_run does. Call
 * it once step said done, or at any time to abandon the child.
 */
int fulfilment_child_finish(struct fulfilment_child *ch, char *error, size_t error_size);

#endif
