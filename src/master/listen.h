/*
 * listen.h - opening the listening sockets named by `listen` settings.
 * Done by the master (it may need root for ports below 1024) before any
 * child is forked; the receiver inherits the descriptors.
 */
#ifndef MP_LISTEN_H
#define MP_LISTEN_H

#include "conf/config.h"

/* Open every listener of cfg into fds[] (same order as cfg->listen).
 * Unix sockets get the configured mode and group.  Returns 0, or -1 after
 * printing why through log_warn (already opened sockets are closed). */
int listen_open_all(const struct config *cfg, int *fds);
void listen_close_all(const struct config *cfg, int *fds, int unlink_unix);
/* run_dir/control.sock for mailprocctl (learn, status): SOCK_SEQPACKET,
 * mode 0600, its path in path.  The qmgr accepts on it.  -1 (logged) on
 * failure. */
int listen_open_control(const char *run_dir, char *path, size_t pathlen);

#endif
