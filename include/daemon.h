/*
 * daemon.h — run orderd: start every part, serve until SIGTERM/SIGINT,
 * drain, stop. Runs on the main thread, which becomes the libuv loop thread.
 */
#ifndef ORDERD_DAEMON_H
#define ORDERD_DAEMON_H

#include "config.h"

/*
 * Serves until told to stop. cfg is the loaded config (kept and updated on
 * reload); config_path and envp are re-read on SIGHUP. Returns the process
 * exit code: 0 after a clean drain, 2 when a part could not start.
 */
int daemon_run(const char *config_path, struct config *cfg, char *const *envp);

#endif
