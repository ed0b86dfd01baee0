/* test_log.c — placeholder until the log suite is written. */
#include <check.h>

Suite *suite_log(void);

Suite *suite_log(void)
{
    return suite_create("log");
}
