/*
 * fulfilment.c — the child process of one fulfilment (see fulfilment.h).
 *
 * The child gets three descriptors: stdin from a pipe we write the order to,
 * stdout on /dev/null, stderr to a pipe we read (bounded). A pidfd tells its
 * exit. The caller's poll loop (or fulfilment_run's own) feeds stdin, drains
 * stderr and watches the clock; at the deadline, and after every exit, the
 * whole process group gets SIGKILL, so a command that forked helpers leaves
 * nothing behind. Runs on worker threads; shares nothing between children.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "fulfilment.h"
#include "ids.h"

extern char **environ;

/* ---- command line ---------------------------------------------------------- */

static int push_word(struct fulfilment_command *cmd, const char *word, size_t len)
{
    char **grown = realloc(cmd->argv, (cmd->argc + 2) * sizeof(*grown));
    if (grown == NULL)
        return -ENOMEM;
    cmd->argv = grown;
    cmd->argv[cmd->argc] = strndup(word, len);
    if (cmd->argv[cmd->argc] == NULL)
        return -ENOMEM;
    cmd->argc++;
    cmd->argv[cmd->argc] = NULL;
    return 0;
}

int fulfilment_parse(const char *line, struct fulfilment_command *out)
{
    struct fulfilment_command cmd = {0};
    size_t cap = strlen(line) + 1;
    char *word = malloc(cap);
    if (word == NULL)
        return -ENOMEM;
    size_t len = 0;
    bool in_word = false;
    char quote = 0;
    int err = 0;
    for (const char *p = line; *p && err == 0; p++) {
        char c = *p;
        if (quote) {
            if (c == quote)
                quote = 0;
            else if (c == '\\' && quote == '"' && p[1])
                word[len++] = *++p;
            else
                word[len++] = c;
        } else if (c == '\'' || c == '"') {
            quote = c;
            in_word = true;
        } else if (c == '\\' && p[1]) {
            word[len++] = *++p;
            in_word = true;
        } else if (c == ' ' || c == '\t') {
            if (in_word)
                err = push_word(&cmd, word, len);
            len = 0;
            in_word = false;
        } else {
            word[len++] = c;
            in_word = true;
        }
    }
    if (err == 0 && quote)
        err = -EINVAL;
    if (err == 0 && in_word)
        err = push_word(&cmd, word, len);
    if (err == 0 && cmd.argc == 0)
        err = -EINVAL;
    free(word);
    if (err != 0) {
        fulfilment_command_free(&cmd);
        return err;
    }
    *out = cmd;
    return 0;
}

void fulfilment_command_free(struct fulfilment_command *cmd)
{
    for (size_t i = 0; cmd->argv && i < cmd->argc; i++)
        free(cmd->argv[i]);
    free(cmd->argv);
    cmd->argv = NULL;
    cmd->argc = 0;
}

/* ---- running --------------------------------------------------------------- */

static char **make_env(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **env = calloc(n + m + 1, sizeof(*env));
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        env[k++] = (char *)extra[i];
    for (size_t i = 0; i < n; i++) {
        bool shadowed = false;
        for (size_t j = 0; j < m && !shadowed; j++) {
            size_t name = strcspn(extra[j], "=");
            shadowed = strncmp(environ[i], extra[j], name + 1) == 0;
        }
        if (!shadowed)
            env[k++] = environ[i];
    }
    env[k] = NULL;
    return env;
}

/* After the command exits, how long its stderr may still drain (a background
 * child that inherited it would otherwise hold us until the timeout). */
#define STDERR_LINGER_S 0.1

struct fulfilment_child {
    pid_t pid;
    int pid_fd;                   /* readable once the command has exited */
    int in_fd;                    /* our end of its stdin, -1 once closed */
    int err_fd;                   /* our end of its stderr, -1 at EOF */
    char *input;                  /* our copy of what its stdin gets */
    size_t input_len, written;
    bool exited;
    int status;
    double deadline, linger_until;
    int64_t timeout_ms;
    size_t captured_len;
    char captured[FULFILMENT_STDERR_MAX];
};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int prepare_spawn(posix_spawn_file_actions_t *fa, posix_spawnattr_t *attr, int in_rd,
                         int err_wr)
{
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    if (posix_spawn_file_actions_adddup2(fa, in_rd, 0) != 0 ||
        posix_spawn_file_actions_addopen(fa, 1, "/dev/null", O_WRONLY, 0) != 0 ||
        posix_spawn_file_actions_adddup2(fa, err_wr, 2) != 0 ||
        posix_spawnattr_setpgroup(attr, 0) != 0 || posix_spawnattr_setsigmask(attr, &none) != 0 ||
        posix_spawnattr_setsigdefault(attr, &defaults) != 0 ||
        posix_spawnattr_setflags(attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                           POSIX_SPAWN_SETSIGDEF) != 0)
        return -1;
    return 0;
}

/* Starts the process; ch->pid, in_fd and err_fd are set on success. */
static int spawn_child(const struct fulfilment_command *cmd, char **env,
                       struct fulfilment_child *ch, char *error, size_t error_size)
{
    int in[2] = {-1, -1}, err[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = -1;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(error, error_size, "cannot create pipes: %s", strerror(errno));
        goto out_pipes;
    }
    if (posix_spawn_file_actions_init(&fa) != 0) {
        snprintf(error, error_size, "cannot prepare the child process");
        goto out_pipes;
    }
    if (posix_spawnattr_init(&attr) != 0) {
        snprintf(error, error_size, "cannot prepare the child process");
        goto out_fa;
    }
    if (prepare_spawn(&fa, &attr, in[0], err[1]) != 0) {
        snprintf(error, error_size, "cannot prepare the child process");
        goto out_attr;
    }
    int e = posix_spawnp(&ch->pid, cmd->argv[0], &fa, &attr, cmd->argv, env);
    if (e != 0) {
        snprintf(error, error_size, "cannot start %s: %s", cmd->argv[0], strerror(e));
        goto out_attr;
    }
    ch->in_fd = in[1];
    ch->err_fd = err[0];
    in[1] = err[0] = -1;
    if (fcntl(ch->in_fd, F_SETFL, O_NONBLOCK) != 0)
        close_fd(&ch->in_fd); /* cannot feed it without blocking: it reads EOF */
    rc = 0;
out_attr:
    posix_spawnattr_destroy(&attr);
out_fa:
    posix_spawn_file_actions_destroy(&fa);
out_pipes:
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&err[i]);
    }
    return rc;
}

/* Kills what is left of its process group and reaps the command. */
static void end_child(struct fulfilment_child *ch)
{
    kill(-ch->pid, SIGKILL);
    if (!ch->exited) {
        while (waitpid(ch->pid, &ch->status, 0) < 0 && errno == EINTR)
            ;
    }
    close_fd(&ch->pid_fd);
    close_fd(&ch->in_fd);
    close_fd(&ch->err_fd);
}

int fulfilment_child_start(const struct fulfilment_command *cmd, const char *input,
                           size_t input_len, const char *const *extra_env, int64_t timeout_ms,
                           struct fulfilment_child **out, char *error, size_t error_size)
{
    error[0] = '\0';
    struct fulfilment_child *ch = calloc(1, sizeof(*ch));
    char **env = make_env(extra_env);
    if (ch == NULL || env == NULL || (ch->input = malloc(input_len + 1)) == NULL) {
        snprintf(error, error_size, "out of memory");
        goto fail;
    }
    memcpy(ch->input, input, input_len);
    ch->input_len = input_len;
    ch->pid = -1;
    ch->pid_fd = ch->in_fd = ch->err_fd = -1;
    ch->timeout_ms = timeout_ms;
    if (spawn_child(cmd, env, ch, error, error_size) != 0)
        goto fail;
    free(env);
    env = NULL;
    ch->deadline = ids_monotonic_seconds() + (double)timeout_ms / 1000.0;
    ch->pid_fd = pidfd_open(ch->pid, 0);
    if (ch->pid_fd < 0) {
        snprintf(error, error_size, "cannot watch the child process: %s", strerror(errno));
        end_child(ch);
        goto fail;
    }
    if (ch->input_len == 0)
        close_fd(&ch->in_fd);
    *out = ch;
    return 0;
fail:
    free(env);
    if (ch != NULL)
        free(ch->input);
    free(ch);
    return FULFILMENT_ESPAWN;
}

size_t fulfilment_child_pollfds(const struct fulfilment_child *ch, struct pollfd *out)
{
    size_t n = 0;
    if (!ch->exited)
        out[n++] = (struct pollfd){ch->pid_fd, POLLIN, 0};
    if (ch->in_fd >= 0)
        out[n++] = (struct pollfd){ch->in_fd, POLLOUT, 0};
    if (ch->err_fd >= 0)
        out[n++] = (struct pollfd){ch->err_fd, POLLIN, 0};
    return n;
}

double fulfilment_child_wake_at(const struct fulfilment_child *ch)
{
    return ch->exited ? ch->linger_until : ch->deadline;
}

static void feed_stdin(struct fulfilment_child *ch)
{
    ssize_t w = write(ch->in_fd, ch->input + ch->written, ch->input_len - ch->written);
    if (w > 0)
        ch->written += (size_t)w;
    if ((w < 0 && errno != EAGAIN && errno != EINTR) || ch->written == ch->input_len)
        close_fd(&ch->in_fd); /* EPIPE: it stopped reading; fine */
}

static void drain_stderr(struct fulfilment_child *ch)
{
    char tmp[1024];
    for (;;) {
        ssize_t r = read(ch->err_fd, tmp, sizeof(tmp));
        if (r > 0) {
            size_t room = sizeof(ch->captured) - 1 - ch->captured_len;
            size_t keep = (size_t)r < room ? (size_t)r : room;
            memcpy(ch->captured + ch->captured_len, tmp, keep);
            ch->captured_len += keep;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            close_fd(&ch->err_fd);
        if (r < 0 && errno == EINTR)
            continue;
        return;
    }
}

static void check_exit(struct fulfilment_child *ch)
{
    pid_t r = waitpid(ch->pid, &ch->status, WNOHANG);
    if (r == ch->pid || (r < 0 && errno == ECHILD)) {
        ch->exited = true;
        ch->linger_until = ids_monotonic_seconds() + STDERR_LINGER_S;
        close_fd(&ch->in_fd);
        close_fd(&ch->pid_fd);
    }
}

static short revents_of(const struct pollfd *fds, size_t n, int fd)
{
    for (size_t i = 0; fd >= 0 && i < n; i++)
        if (fds[i].fd == fd)
            return fds[i].revents;
    return 0;
}

bool fulfilment_child_step(struct fulfilment_child *ch, const struct pollfd *fds, size_t n)
{
    if (ch->in_fd >= 0 && (revents_of(fds, n, ch->in_fd) & (POLLOUT | POLLERR | POLLHUP)))
        feed_stdin(ch);
    if (ch->err_fd >= 0 && (revents_of(fds, n, ch->err_fd) & (POLLIN | POLLERR | POLLHUP)))
        drain_stderr(ch);
    if (!ch->exited && (revents_of(fds, n, ch->pid_fd) & (POLLIN | POLLERR | POLLHUP)))
        check_exit(ch);
    double now = ids_monotonic_seconds();
    if (ch->exited)
        return ch->err_fd < 0 || now >= ch->linger_until;
    return now >= ch->deadline;
}

static void describe(int result, int status, int64_t timeout_ms, const char *stderr_text,
                     char *error, size_t size)
{
    char head[96];
    if (result == FULFILMENT_TIMEOUT)
        snprintf(head, sizeof(head), "fulfilment timed out after %lld ms", (long long)timeout_ms);
    else if (WIFSIGNALED(status))
        snprintf(head, sizeof(head), "fulfilment killed by signal %d", WTERMSIG(status));
    else
        snprintf(head, sizeof(head), "fulfilment exited with status %d", WEXITSTATUS(status));
    snprintf(error, size, "%s%s%s", head, stderr_text[0] ? ": " : "", stderr_text);
    size_t n = strlen(error);
    while (n > 0 && (error[n - 1] == '\n' || error[n - 1] == '\r'))
        error[--n] = '\0';
}

int fulfilment_child_exit_code(const struct fulfilment_child *ch)
{
    return ch->exited && WIFEXITED(ch->status) ? WEXITSTATUS(ch->status) : -1;
}

int fulfilment_child_finish(struct fulfilment_child *ch, char *error, size_t error_size)
{
    error[0] = '\0';
    bool in_time = ch->exited;
    /* Whatever is left of its process group goes: nothing outlives a fulfilment. */
    end_child(ch);
    ch->captured[ch->captured_len] = '\0';
    int result = !in_time ? FULFILMENT_TIMEOUT
                 : (WIFEXITED(ch->status) && WEXITSTATUS(ch->status) == 0) ? FULFILMENT_OK
                                                                           : FULFILMENT_FAILED;
    if (result != FULFILMENT_OK)
        describe(result, ch->status, ch->timeout_ms, ch->captured, error, error_size);
    free(ch->input);
    free(ch);
    return result;
}

int fulfilment_run(const struct fulfilment_command *cmd, const char *input, size_t input_len,
                   const char *const *extra_env, int64_t timeout_ms, char *error,
                   size_t error_size)
{
    struct fulfilment_child *ch;
    if (fulfilment_child_start(cmd, input, input_len, extra_env, timeout_ms, &ch, error,
                               error_size) != 0)
        return FULFILMENT_ESPAWN;
    struct pollfd fds[FULFILMENT_CHILD_FDS];
    bool done = false;
    while (!done) {
        size_t n = fulfilment_child_pollfds(ch, fds);
        double left = fulfilment_child_wake_at(ch) - ids_monotonic_seconds();
        int wait_ms = left > 0 ? (int)(left * 1000) + 1 : 0;
        if (poll(fds, n, wait_ms) < 0 && errno != EINTR)
            break;
        done = fulfilment_child_step(ch, fds, n);
    }
    return fulfilment_child_finish(ch, error, error_size);
}
