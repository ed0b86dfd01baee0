/*
 * spawn_rate.c — the ceiling of bench/fulfilment.sh's fulfilment_command row:
 * how many commands a second this machine can start and reap the way
 * src/fulfilment.c starts them, with no daemon around it.
 *
 *   spawn_rate [SECONDS [THREADS [COMMAND]]]     (defaults: 5, nproc, /bin/true)
 *
 * Each of THREADS threads, for SECONDS seconds, in a loop: two pipes (the
 * command's stdin, and its stderr read back non-blocking), posix_spawnp with
 * stdin from the first, stdout to /dev/null, stderr to the second, a process
 * group of its own, an empty signal mask and SIGPIPE/SIGTERM/SIGINT/SIGHUP
 * at their defaults (fulfilment.c's prepare_spawn); an order-sized input
 * written to its stdin, which is then closed; its stderr read to EOF; the
 * child reaped with waitpid. orderd also watches the child through a pidfd
 * and keeps a deadline: this is the least a command can cost here.
 *
 * Prints one line: "spawns/s N count C seconds S threads T". Exit 1 if a
 * command cannot be started.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char input[] =
    "{\"order_id\":\"01M8AJKVKZGKBC8VSNJ2N4KRD3\",\"customer_id\":\"cust-42\","
    "\"items\":[{\"sku\":\"SKU-1\",\"quantity\":2,\"unit_price_cents\":1999}],"
    "\"created_at\":\"2026-12-04T20:00:00.000Z\",\"attempt\":1}\n";

static char *argv_child[2];
static double end_at;
static atomic_ullong spawned;
static atomic_int failed;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int spawn_one(void)
{
    int in[2], err[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(err, O_CLOEXEC | O_NONBLOCK) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int e = posix_spawnp(&pid, argv_child[0], &fa, &attr, argv_child, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(err[1]);
    if (e != 0) {
        close(in[1]);
        close(err[0]);
        errno = e;
        return -1;
    }
    /* The input: the child may have exited already (EPIPE, SIGPIPE ignored). */
    ssize_t w = write(in[1], input, sizeof(input) - 1);
    (void)w;
    close(in[1]);
    /* Its stderr to EOF (its exit closes it), then the child reaped. */
    char buf[512];
    struct pollfd pfd = {err[0], POLLIN, 0};
    for (;;) {
        ssize_t r = read(err[0], buf, sizeof(buf));
        if (r > 0 || (r < 0 && errno == EINTR))
            continue;
        if (r < 0 && errno == EAGAIN && poll(&pfd, 1, -1) >= 0)
            continue;
        break;
    }
    close(err[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return 0;
}

static void *spawner(void *arg)
{
    (void)arg;
    while (now_s() < end_at) {
        if (spawn_one() != 0) {
            atomic_fetch_add(&failed, 1);
            fprintf(stderr, "spawn_rate: cannot start %s: %s\n", argv_child[0], strerror(errno));
            return NULL;
        }
        atomic_fetch_add(&spawned, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    long threads = argc > 2 ? atol(argv[2]) : sysconf(_SC_NPROCESSORS_ONLN);
    argv_child[0] = argc > 3 ? argv[3] : "/bin/true";
    argv_child[1] = NULL;
    if (seconds <= 0 || threads < 1 || threads > 1024) {
        fprintf(stderr, "usage: spawn_rate [SECONDS [THREADS [COMMAND]]]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    pthread_t *t = calloc((size_t)threads, sizeof(*t));
    if (t == NULL)
        return 1;
    double start = now_s();
    end_at = start + seconds;
    for (long i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, spawner, NULL) != 0) {
            fprintf(stderr, "spawn_rate: cannot start a thread\n");
            return 1;
        }
    for (long i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double elapsed = now_s() - start;
    free(t);
    if (atomic_load(&failed))
        return 1;
    unsigned long long n = atomic_load(&spawned);
    printf("spawns/s %.0f count %llu seconds %.2f threads %ld\n", (double)n / elapsed, n, elapsed,
           threads);
    return 0;
}
