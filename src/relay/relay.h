/*
 * relay.h - the relay process: an SMTP client that sends forwards and
 * bounces to `relay_host`, and an LMTP client that hands mailing list mail
 * to the list manager's destination named in the job, driven by the qmgr
 * over IPC.
 *
 * Protocol (lib/msgtypes.h): the qmgr sends MSG_RELAY_JOB with the queue
 * file as a read-only descriptor; the relay answers one MSG_RELAY_RESULT
 * per recipient, then MSG_RELAY_DONE.  A job whose message is malformed
 * gets MSG_RELAY_DONE alone (when its job_id could be read): recipients
 * without a result are to be retried.  Jobs run in arrival order on up to
 * RELAY_MAX_CONNS cached connections per destination; a connection
 * carries up to RELAY_MAX_MSGS_PER_CONN transactions and is closed after
 * relay_idle_timeout (a setting) without work.
 */
#ifndef MP_RELAY_H
#define MP_RELAY_H

#include "conf/config.h"

#define RELAY_MAX_CONNS 4
#define RELAY_MAX_MSGS_PER_CONN 100
/* seconds */
#define RELAY_CONNECT_TIMEOUT 30
#define RELAY_REPLY_TIMEOUT 300         /* greeting, EHLO, MAIL, RCPT, DATA, RSET */
#define RELAY_SEND_TIMEOUT 300          /* no progress while sending the message */
#define RELAY_DOT_TIMEOUT 600           /* the reply to the end of data */
#define RELAY_QUIT_TIMEOUT 10
/* After a connection could not be set up while others work: open no new
 * connection for this long (the server may limit connections). */
#define RELAY_CONNECT_BACKOFF 10

/* The status field of MSG_RELAY_RESULT (the values of enum
 * delivery_status). */
enum relay_status { RELAY_SENT = 0, RELAY_TEMPFAIL = 1, RELAY_PERMFAIL = 2 };

/* Serve jobs from the qmgr on ipc_fd (a SOCK_SEQPACKET socket) in one
 * libevent loop.  Returns 0 when the qmgr has closed its end or after
 * SIGTERM: queued jobs are failed as temporary failures, jobs in flight
 * finish first, within cfg->stop_grace_time (or are abandoned, unsent,
 * when the qmgr can no longer read their results); -1 when the loop could
 * not be set up.  master_fd (or -1) brings reloads (MSG_CONFIG: *cfg is
 * swapped in place; jobs after a change of relay_host go to the new one,
 * connections to the old one close once idle). */
int relay_main(int ipc_fd, struct config *cfg, int master_fd);

#endif
