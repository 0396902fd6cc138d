/*
 * service.h - the policy service process (`mailprocd: policy`): Postfix
 * policy delegation on the `listen policy` sockets, in its own libevent
 * loop, unprivileged.
 */
#ifndef MP_POLICY_SERVICE_H
#define MP_POLICY_SERVICE_H

#include "conf/config.h"

/* Entered in the forked child, already running as cfg->user (root mode) or
 * the invoking user.  listen_fds[i] is the listening socket of
 * cfg->listen[i]; the ones of proto LISTEN_POLICY are served (the others
 * are -1 here).  master_fd brings reloads (MSG_CONFIG).  SIGTERM: stop
 * accepting, answer the requests already read, close, return 0. */
int policy_service_main(struct config *cfg, const int *listen_fds, int master_fd);

#endif
