/* test_ids.c — placeholder until the ids suite is written. */
#include <check.h>

Suite *suite_ids(void);

Suite *suite_ids(void)
{
    return suite_create("ids");
}
