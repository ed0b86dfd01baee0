/*
 * mhd_static.c — the second reference server of bench/run.sh: libmicrohttpd
 * configured as orderd configures it (internal epoll threads, one per CPU,
 * 16 KiB per connection, suspend/resume allowed) answering every request
 * with a static 202 and an order-sized body, after reading the body.
 *
 * It does no work of its own, so its rate is the ceiling of any server built
 * on this library on this machine: orderd / mhd_static says how much of that
 * ceiling orderd's own work (validation, the durable write, processing)
 * leaves, and mhd_static / nginx what the library itself costs.
 *
 *   mhd_static PORT      listens on 127.0.0.1:PORT until SIGTERM or SIGINT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char reply_body[] =
    "{\"order_id\":\"01M8AJKVKZGKBC8VSNJ2N4KRD3\",\"status\":\"queued\","
    "\"trace_id\":\"beb2d5bdf7ba4ba9afa3042cb7313832\"}";

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size,
                              void **req_cls)
{
    struct MHD_Response *reply = cls;
    (void)url, (void)method, (void)version, (void)upload_data;
    if (*req_cls == NULL) {          /* headers only: ask for the body */
        *req_cls = conn;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {     /* a piece of the body: read and dropped */
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(conn, MHD_HTTP_ACCEPTED, reply);
}

static int parse_port(const char *text)
{
    char *end = NULL;
    errno = 0;
    long port = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || port < 1 || port > 65535)
        return -1;
    return (int)port;
}

int main(int argc, char **argv)
{
    int port = argc == 2 ? parse_port(argv[1]) : -1;
    if (port < 0) {
        fprintf(stderr, "usage: mhd_static PORT (1..65535)\n");
        return 1;
    }
    struct MHD_Response *reply = MHD_create_response_from_buffer(
        sizeof(reply_body) - 1, (void *)reply_body, MHD_RESPMEM_PERSISTENT);
    if (reply == NULL ||
        MHD_add_response_header(reply, "Content-Type", "application/json") != MHD_YES) {
        fprintf(stderr, "mhd_static: cannot make the reply\n");
        return 2;
    }
    sigset_t stop; /* blocked before MHD's threads start, so they inherit it */
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (sigprocmask(SIG_BLOCK, &stop, NULL) != 0) {
        perror("mhd_static: sigprocmask");
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, answer, reply, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(cpus > 0 ? cpus : 1),
        MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(16 * 1024), MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "mhd_static: cannot listen on 127.0.0.1:%d\n", port);
        return 2;
    }
    int sig = 0;
    if (sigwait(&stop, &sig) != 0)
        perror("mhd_static: sigwait");
    MHD_stop_daemon(d);
    MHD_destroy_response(reply);
    return 0;
}
