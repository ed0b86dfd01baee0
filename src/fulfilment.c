/*
 * fulfilment.c — the child process of one fulfilment (see fulfilment.h).
 *
 * The child gets three descriptors: stdin from a pipe we write the order to,
 * stdout on /dev/null, stderr to a pipe we read (bounded). One poll loop
 * feeds stdin, drains stderr and watches the clock; at the deadline the whole
 * process group gets SIGKILL, so a command that forked helpers leaves nothing
 * behind. Runs on worker threads; shares nothing between calls.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

struct child {
    pid_t pid;
    int in_fd;                    /* our end of its stdin, -1 once closed */
    int err_fd;                   /* our end of its stderr, -1 at EOF */
};

static int spawn_child(const struct fulfilment_command *cmd, char **env, struct child *ch,
                       char *error, size_t error_size)
{
    int in[2] = {-1, -1}, err[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = -1;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
        snprintf(error, error_size, "cannot create pipes: %s", strerror(errno));
        goto out_pipes;
    }
    if (posix_spawn_file_actions_init(&fa) != 0)
        goto out_pipes;
    if (posix_spawnattr_init(&attr) != 0)
        goto out_fa;
    sigset_t none;
    sigemptyset(&none);
    if (posix_spawn_file_actions_adddup2(&fa, in[0], 0) != 0 ||
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0) != 0 ||
        posix_spawn_file_actions_adddup2(&fa, err[1], 2) != 0 ||
        posix_spawnattr_setpgroup(&attr, 0) != 0 || posix_spawnattr_setsigmask(&attr, &none) != 0 ||
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                            POSIX_SPAWN_SETSIGDEF) != 0) {
        snprintf(error, error_size, "cannot prepare the child process");
        goto out_attr;
    }
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    int e = posix_spawnp(&ch->pid, cmd->argv[0], &fa, &attr, cmd->argv, env);
    if (e != 0) {
        snprintf(error, error_size, "cannot start %s: %s", cmd->argv[0], strerror(e));
        goto out_attr;
    }
    ch->in_fd = in[1];
    ch->err_fd = err[0];
    in[1] = err[0] = -1;
    fcntl(ch->in_fd, F_SETFL, O_NONBLOCK);
    rc = 0;
out_attr:
    posix_spawnattr_destroy(&attr);
out_fa:
    posix_spawn_file_actions_destroy(&fa);
out_pipes:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    return rc;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* After the command exits, how long its stderr may still drain (a background
 * child that inherited it would otherwise hold us until the timeout). */
#define STDERR_LINGER_S 0.1
#define POLL_SLICE_MS 50

struct pump_state {
    size_t written;
    bool exited;
    int status;
    double linger_until;
};

static void feed_stdin(struct child *ch, const char *input, size_t len, struct pump_state *ps)
{
    ssize_t w = write(ch->in_fd, input + ps->written, len - ps->written);
    if (w > 0)
        ps->written += (size_t)w;
    if ((w < 0 && errno != EAGAIN && errno != EINTR) || ps->written == len)
        close_fd(&ch->in_fd); /* EPIPE: it stopped reading; fine */
}

static void drain_stderr(struct child *ch, char *buf, size_t cap, size_t *used)
{
    char tmp[1024];
    ssize_t r = read(ch->err_fd, tmp, sizeof(tmp));
    if (r > 0) {
        size_t keep = (size_t)r < cap - *used ? (size_t)r : cap - *used;
        memcpy(buf + *used, tmp, keep);
        *used += keep;
    } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        close_fd(&ch->err_fd);
    }
}

static void check_exit(struct child *ch, struct pump_state *ps)
{
    if (ps->exited)
        return;
    pid_t r = waitpid(ch->pid, &ps->status, WNOHANG);
    if (r == ch->pid || (r < 0 && errno == ECHILD)) {
        ps->exited = true;
        ps->linger_until = ids_monotonic_seconds() + STDERR_LINGER_S;
        close_fd(&ch->in_fd);
    }
}

/*
 * Feeds stdin, collects stderr and watches for the command's exit. Returns
 * true when it exited before the deadline (ps->status holds how).
 */
static bool pump(struct child *ch, const char *input, size_t len, double deadline, char *buf,
                 size_t cap, size_t *used, struct pump_state *ps)
{
    if (len == 0)
        close_fd(&ch->in_fd);
    for (;;) {
        check_exit(ch, ps);
        double now = ids_monotonic_seconds();
        if (ps->exited && (ch->err_fd < 0 || now >= ps->linger_until))
            return true;
        if (!ps->exited && now >= deadline)
            return false;
        double until = ps->exited ? ps->linger_until : deadline;
        int slice = (int)((until - now) * 1000) + 1;
        struct pollfd p[2] = {{ch->in_fd, POLLOUT, 0}, {ch->err_fd, POLLIN, 0}};
        int n = poll(p, 2, slice < POLL_SLICE_MS ? slice : POLL_SLICE_MS);
        if (n < 0 && errno != EINTR)
            return false;
        if (n <= 0)
            continue;
        if (ch->in_fd >= 0 && (p[0].revents & (POLLOUT | POLLERR | POLLHUP)))
            feed_stdin(ch, input, len, ps);
        if (ch->err_fd >= 0 && (p[1].revents & (POLLIN | POLLERR | POLLHUP)))
            drain_stderr(ch, buf, cap, used);
    }
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

int fulfilment_run(const struct fulfilment_command *cmd, const char *input, size_t input_len,
                   const char *const *extra_env, int64_t timeout_ms, char *error,
                   size_t error_size)
{
    error[0] = '\0';
    char **env = make_env(extra_env);
    if (env == NULL) {
        snprintf(error, error_size, "out of memory");
        return FULFILMENT_ESPAWN;
    }
    struct child ch = {-1, -1, -1};
    int rc = spawn_child(cmd, env, &ch, error, error_size);
    free(env);
    if (rc != 0)
        return FULFILMENT_ESPAWN;

    double deadline = ids_monotonic_seconds() + (double)timeout_ms / 1000.0;
    char captured[4096];
    size_t used = 0;
    struct pump_state ps = {0};
    bool in_time = pump(&ch, input, input_len, deadline, captured, sizeof(captured) - 1, &used,
                        &ps);
    int status = ps.status;
    /* Whatever is left of its process group goes: nothing outlives a fulfilment. */
    kill(-ch.pid, SIGKILL);
    if (!ps.exited) {
        while (waitpid(ch.pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    close_fd(&ch.in_fd);
    close_fd(&ch.err_fd);
    captured[used] = '\0';
    int result = !in_time ? FULFILMENT_TIMEOUT
                 : (WIFEXITED(status) && WEXITSTATUS(status) == 0) ? FULFILMENT_OK
                                                                   : FULFILMENT_FAILED;
    if (result != FULFILMENT_OK)
        describe(result, status, timeout_ms, captured, error, error_size);
    return result;
}
