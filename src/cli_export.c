/*
 * cli_export.c — `orderd export` (see cli.h). Being written (issue 20).
 */
#include <stdio.h>

#include "cli.h"

int cli_export(const struct config *cfg, int argc, char **argv)
{
    (void)cfg;
    (void)argc;
    (void)argv;
    fprintf(stderr, "orderd: export is not built yet\n");
    return 1;
}
