/*
 * qmgr.h - the queue manager process: owns the queue, schedules deliveries
 * per user with a cap and round-robin fairness, retries, asks the spawner
 * for workers and hands them jobs, hands forwards and bounces to the relay.
 */
#ifndef MP_QMGR_H
#define MP_QMGR_H

#include "conf/config.h"

/* Entered in the forked child, running as cfg->user (root mode) or the
 * invoking user.  receiver_fd delivers MSG_QUEUE_NEW; spawner_fd is the
 * request channel to the spawner; relay_fd carries forwards and bounces to
 * the relay; control_fd is the listening control socket (mailprocctl learn
 * and status), or -1; master_fd brings reloads (MSG_CONFIG: *cfg is swapped
 * in place).  SIGUSR1 retries deferred mail now; SIGTERM stops after the
 * jobs in flight (within stop_grace_time).  Returns the exit status. */
int qmgr_main(struct config *cfg, int receiver_fd, int spawner_fd, int relay_fd,
    int control_fd, int master_fd, int root_mode);

#endif
