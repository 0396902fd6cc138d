/*
 * service.h - `mailprocd: metrics`, the master's child that serves
 * GET /metrics on the `listen metrics` sockets, unprivileged, from
 * read-only mappings of every region (see metrics.h).
 */
#ifndef MP_METRICS_SERVICE_H
#define MP_METRICS_SERVICE_H

#include "conf/config.h"
#include "metrics/metrics.h"

/* Entered in the forked child, already running as cfg->user (root mode) or
 * the invoking user.  listen_fds[i] is the listening socket of
 * cfg->listen[i]; the ones of proto LISTEN_METRICS are served (the others
 * are -1 here).  ro_fds are read-only descriptors of the regions (closed
 * here once mapped).  master_fd brings reloads (MSG_CONFIG).  SIGTERM:
 * return 0. */
int metrics_service_main(struct config *cfg, const int *listen_fds,
    int ro_fds[METRICS_REGION_COUNT], int master_fd);

#endif
