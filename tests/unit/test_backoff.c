/* test_backoff.c — placeholder until the backoff suite is written. */
#include <check.h>

Suite *suite_backoff(void);

Suite *suite_backoff(void)
{
    return suite_create("backoff");
}
