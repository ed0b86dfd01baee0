/* test_order.c — placeholder until the order suite is written. */
#include <check.h>

Suite *suite_order(void);

Suite *suite_order(void)
{
    return suite_create("order");
}
