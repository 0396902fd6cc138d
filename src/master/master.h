/*
 * master.h - the supervisor: opens listeners and directories, forks the
 * receiver, qmgr and spawner, restarts a child that dies, reloads on
 * SIGHUP, stops everything gracefully on SIGTERM.  Parses no network input.
 */
#ifndef MP_MASTER_H
#define MP_MASTER_H

#include <sys/types.h>

#include "conf/config.h"

struct daemon_ctx {
	struct config cfg;
	int root_mode;          /* started as root: children drop privileges */
	uid_t user_uid;         /* identity of receiver/qmgr/relay */
	gid_t user_gid;
};

/* Returns the exit status of the daemon. */
int master_run(struct daemon_ctx *d);

#endif
