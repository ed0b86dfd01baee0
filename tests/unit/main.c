/*
 * main.c — runs every suite in suites.h with check.
 * `unit-tests SUITE...` runs only the named suites; CK_FORK=yes isolates tests.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUITE(name) Suite *suite_##name(void);
#include "suites.h"
#undef SUITE

struct suite_entry {
    const char *name;
    Suite *(*make)(void);
};

static const struct suite_entry all_suites[] = {
#define SUITE(name) {#name, suite_##name},
#include "suites.h"
#undef SUITE
};

static int wanted(const char *name, int argc, char **argv)
{
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    SRunner *runner = NULL;
    size_t n = sizeof(all_suites) / sizeof(all_suites[0]);

    for (size_t i = 0; i < n; i++) {
        if (!wanted(all_suites[i].name, argc, argv))
            continue;
        if (runner == NULL)
            runner = srunner_create(all_suites[i].make());
        else
            srunner_add_suite(runner, all_suites[i].make());
    }
    if (runner == NULL) {
        fprintf(stderr, "unit-tests: no suite matches\n");
        return 2;
    }
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
