/* test_committer.c — placeholder until the committer suite is written. */
#include <check.h>

Suite *suite_committer(void);

Suite *suite_committer(void)
{
    return suite_create("committer");
}
