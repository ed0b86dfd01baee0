/* test_metrics.c — placeholder until the metrics suite is written. */
#include <check.h>

Suite *suite_metrics(void);

Suite *suite_metrics(void)
{
    return suite_create("metrics");
}
