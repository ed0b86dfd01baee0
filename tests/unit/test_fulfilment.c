/* test_fulfilment.c — command-line splitting and running a real child. */
#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>

#include "fulfilment.h"
#include "ids.h"
#include "timeouts.h"

Suite *suite_fulfilment(void);

static const struct {
    const char *line;
    int rc;
    size_t argc;
    const char *argv[4];
} splits[] = {
    {"true", 0, 1, {"true"}},
    {"  /bin/echo   a  b ", 0, 3, {"/bin/echo", "a", "b"}},
    {"sh -c 'echo $X; exit 3'", 0, 3, {"sh", "-c", "echo $X; exit 3"}},
    {"cmd \"a b\" c\\ d", 0, 3, {"cmd", "a b", "c d"}},
    {"cmd \"say \\\"hi\\\"\"", 0, 2, {"cmd", "say \"hi\""}},
    {"cmd ''", 0, 2, {"cmd", ""}},
    {"cmd 'unterminated", -22, 0, {NULL}},
    {"", -22, 0, {NULL}},
    {"   ", -22, 0, {NULL}},
};

START_TEST(split_command_line)
{
    struct fulfilment_command cmd = {0};
    int rc = fulfilment_parse(splits[_i].line, &cmd);
    ck_assert_int_eq(rc, splits[_i].rc);
    if (rc != 0)
        return;
    ck_assert_uint_eq(cmd.argc, splits[_i].argc);
    for (size_t i = 0; i < cmd.argc; i++)
        ck_assert_str_eq(cmd.argv[i], splits[_i].argv[i]);
    ck_assert_ptr_null(cmd.argv[cmd.argc]);
    fulfilment_command_free(&cmd);
}
END_TEST

static int run(const char *line, const char *input, int64_t timeout_ms, char *error, size_t size)
{
    struct fulfilment_command cmd;
    ck_assert_int_eq(fulfilment_parse(line, &cmd), 0);
    const char *env[] = {"ORDER_ID=01TEST", NULL};
    int rc = fulfilment_run(&cmd, input, strlen(input), env, timeout_ms, error, size);
    fulfilment_command_free(&cmd);
    return rc;
}

START_TEST(exit_zero_is_success_and_stdin_and_env_arrive)
{
    char error[256];
    ck_assert_int_eq(run("sh -c 'read line; [ \"$line\" = order ] && [ \"$ORDER_ID\" = 01TEST ]'",
                         "order\n", 5000, error, sizeof(error)),
                     FULFILMENT_OK);
}
END_TEST

START_TEST(non_zero_exit_reports_status_and_stderr)
{
    char error[256];
    ck_assert_int_eq(run("sh -c 'echo out of stock >&2; exit 3'", "", 5000, error, sizeof(error)),
                     FULFILMENT_FAILED);
    ck_assert_str_eq(error, "fulfilment exited with status 3: out of stock");
}
END_TEST

START_TEST(stderr_is_bounded)
{
    char error[64];
    ck_assert_int_eq(run("sh -c 'head -c 100000 /dev/zero | tr \\\\0 x >&2; exit 1'", "", 5000,
                         error, sizeof(error)),
                     FULFILMENT_FAILED);
    ck_assert_uint_eq(strlen(error), sizeof(error) - 1);
}
END_TEST

START_TEST(timeout_kills_the_process_group)
{
    char error[256];
    double t0 = ids_monotonic_seconds();
    ck_assert_int_eq(run("sh -c 'sleep 30 & sleep 30'", "", 300, error, sizeof(error)),
                     FULFILMENT_TIMEOUT);
    ck_assert_str_eq(error, "fulfilment timed out after 300 ms");
    /* Bounded by the timeout, not by the sleeps (generous margin: not a timing test). */
    ck_assert_double_lt(ids_monotonic_seconds() - t0, 20.0);
}
END_TEST

START_TEST(background_child_does_not_turn_success_into_timeout)
{
    char error[256];
    ck_assert_int_eq(run("sh -c 'sleep 30 & exit 0'", "", 10000, error, sizeof(error)),
                     FULFILMENT_OK);
}
END_TEST

START_TEST(missing_program_is_a_failure_not_a_crash)
{
    char error[256];
    int rc = run("/nonexistent/fulfil", "", 1000, error, sizeof(error));
    ck_assert(rc == FULFILMENT_ESPAWN || rc == FULFILMENT_FAILED);
}
END_TEST

/* Many children in one poll loop, as a worker runs them: each gets its own stdin
 * and its own verdict, and the loop ends when the last one has exited. */
#define IN_FLIGHT 16

START_TEST(many_children_in_one_poll_loop)
{
    struct fulfilment_command ok, bad;
    signal(SIGPIPE, SIG_IGN); /* as main does: a child that reads nothing closes its stdin */
    ck_assert_int_eq(fulfilment_parse("sh -c 'read n; [ \"$n\" = \"$WANT\" ]'", &ok), 0);
    ck_assert_int_eq(fulfilment_parse("sh -c 'exit 7'", &bad), 0);
    struct fulfilment_child *ch[IN_FLIGHT];
    bool done[IN_FLIGHT] = {false};
    for (int i = 0; i < IN_FLIGHT; i++) {
        char input[16], want[32], error[64];
        snprintf(input, sizeof(input), "%d\n", i);
        snprintf(want, sizeof(want), "WANT=%d", i);
        const char *env[] = {want, NULL};
        ck_assert_int_eq(fulfilment_child_start(i % 4 == 3 ? &bad : &ok, input, strlen(input),
                                                env, 30000, &ch[i], error, sizeof(error)),
                         0);
    }
    int left = IN_FLIGHT, results[IN_FLIGHT];
    struct pollfd fds[IN_FLIGHT * FULFILMENT_CHILD_FDS];
    while (left > 0) {
        size_t n = 0;
        for (int i = 0; i < IN_FLIGHT; i++)
            if (!done[i])
                n += fulfilment_child_pollfds(ch[i], fds + n);
        ck_assert_int_ge(poll(fds, n, 1000), 0);
        for (int i = 0; i < IN_FLIGHT; i++) {
            if (done[i] || !fulfilment_child_step(ch[i], fds, n))
                continue;
            char error[256];
            results[i] = fulfilment_child_finish(ch[i], error, sizeof(error));
            done[i] = true;
            left--;
        }
    }
    for (int i = 0; i < IN_FLIGHT; i++)
        ck_assert_int_eq(results[i], i % 4 == 3 ? FULFILMENT_FAILED : FULFILMENT_OK);
    fulfilment_command_free(&ok);
    fulfilment_command_free(&bad);
}
END_TEST

/* A child abandoned before it exits is killed and reaped, not left behind. */
START_TEST(finish_before_exit_kills_the_child)
{
    struct fulfilment_command cmd;
    ck_assert_int_eq(fulfilment_parse("sleep 30", &cmd), 0);
    struct fulfilment_child *ch;
    char error[256];
    ck_assert_int_eq(fulfilment_child_start(&cmd, "", 0, NULL, 30000, &ch, error, sizeof(error)),
                     0);
    ck_assert_int_eq(fulfilment_child_finish(ch, error, sizeof(error)), FULFILMENT_TIMEOUT);
    ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1); /* nothing left to reap */
    fulfilment_command_free(&cmd);
}
END_TEST

Suite *suite_fulfilment(void)
{
    Suite *s = suite_create("fulfilment");
    TCase *tc = tcase_create("split");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, split_command_line, 0, (int)(sizeof(splits) / sizeof(splits[0])));
    suite_add_tcase(s, tc);
    tc = tcase_create("run");
    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);
    tcase_add_test(tc, exit_zero_is_success_and_stdin_and_env_arrive);
    tcase_add_test(tc, non_zero_exit_reports_status_and_stderr);
    tcase_add_test(tc, stderr_is_bounded);
    tcase_add_test(tc, timeout_kills_the_process_group);
    tcase_add_test(tc, background_child_does_not_turn_success_into_timeout);
    tcase_add_test(tc, missing_program_is_a_failure_not_a_crash);
    tcase_add_test(tc, many_children_in_one_poll_loop);
    tcase_add_test(tc, finish_before_exit_kills_the_child);
    suite_add_tcase(s, tc);
    return s;
}
