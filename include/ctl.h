/*
 * ctl.h — `orderd ctl`: the operator's commands against the running daemon's
 * HTTP API (orders get/list, dlq list/redrive/delete, stats), as tables for
 * people or JSON for scripts. src/ctl.c; the main thread, nothing else runs.
 */
#ifndef ORDERD_CTL_H
#define ORDERD_CTL_H

struct config;

/* argv[0] is "ctl"; its options and command follow. cfg may be NULL (no
 * config file on this host): then --url is needed. Returns the exit status
 * (orderd(8), CTL). */
int ctl_main(const struct config *cfg, int argc, char **argv);

#endif
