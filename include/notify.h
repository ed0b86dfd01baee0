/*
 * notify.h — the systemd notification protocol (sd_notify(3)) without
 * libsystemd: one datagram to $NOTIFY_SOCKET. A no-op when the variable is
 * unset (not started by systemd). Any thread.
 */
#ifndef ORDERD_NOTIFY_H
#define ORDERD_NOTIFY_H

/* Sends state ("READY=1", "RELOADING=1", "STOPPING=1", "STATUS=..."). 0 or -errno. */
int notify_send(const char *state);

#endif
