/* test_store.c — placeholder until the store suite is written. */
#include <check.h>

Suite *suite_store(void);

Suite *suite_store(void)
{
    return suite_create("store");
}
