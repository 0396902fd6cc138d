/*
 * receiver.h - the receiver process: one libevent loop for every SMTP and
 * LMTP session (the policy service has a process of its own,
 * policy/service.h).  Runs unprivileged; parses all network input;
 * writes messages into the queue and answers 250 only once they are durable.
 */
#ifndef MP_RECEIVER_H
#define MP_RECEIVER_H

#include "conf/config.h"

/* Entered in the forked child, already running as cfg->user (root mode) or
 * the invoking user.  listen_fds[i] is the open, listening, non-blocking
 * socket for cfg->listen[i] (-1 for kinds the receiver does not serve: the
 * master closes the policy listeners in the receiver).
 * qmgr_fd is a SOCK_SEQPACKET socket on which MSG_QUEUE_NEW is sent after
 * each commit.  Returns the exit status: SIGTERM stops accepting, lets
 * sessions finish their transaction (within stop_grace_time), then returns
 * 0.  master_fd brings reloads (MSG_CONFIG: *cfg is swapped in place; new
 * limits apply to the next command, sessions go on). */
int receiver_main(struct config *cfg, const int *listen_fds, int qmgr_fd, int master_fd);

#endif
