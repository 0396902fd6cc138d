/*
 * spawner.h - the spawner process (root in root mode): forks per-user
 * workers on the qmgr's request, each dropped to the uid/gid the databases
 * give the recipient the request names, and hands the qmgr its end of the
 * worker's socket.
 */
#ifndef MP_SPAWNER_H
#define MP_SPAWNER_H

#include "conf/config.h"

/* master_fd brings reloads (MSG_CONFIG: *cfg is swapped in place, and the
 * workers forked from then on get the new settings; the qmgr retires the
 * running ones once idle). */
int spawner_main(struct config *cfg, int qmgr_fd, int master_fd, int root_mode);

#endif
