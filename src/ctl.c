/*
 * ctl.c — `orderd ctl` (see ctl.h). Being written (issue 20).
 */
#include <stdio.h>

#include "ctl.h"

int ctl_main(const struct config *cfg, int argc, char **argv)
{
    (void)cfg;
    (void)argc;
    (void)argv;
    fprintf(stderr, "orderd: ctl is not built yet\n");
    return 1;
}
