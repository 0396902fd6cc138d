/*
 * spawner.h - the spawner process (root in root mode): forks per-user
 * workers on the qmgr's request, each dropped to the uid/gid the databases
 * give the recipient the request names, and hands the qmgr its end of the
 * worker's socket.
 */
#ifndef MP_SPAWNER_H
#define MP_SPAWNER_H

#include "conf/config.h"

int spawner_main(const struct config *cfg, int qmgr_fd, int root_mode);

#endif
