/* test_trace.c — placeholder until the trace suite is written. */
#include <check.h>

Suite *suite_trace(void);

Suite *suite_trace(void)
{
    return suite_create("trace");
}
