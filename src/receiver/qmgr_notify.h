/*
 * qmgr_notify.h - the receiver's announcements of new queue files to the
 * qmgr (MSG_QUEUE_NEW), kept in order until the socket takes them.
 */
#ifndef MP_RECEIVER_QMGR_NOTIFY_H
#define MP_RECEIVER_QMGR_NOTIFY_H

struct event_base;
struct qmgr_notify;

/* Announcements waiting for room in the socket at most; past that the
 * newest are left to the qmgr's next scan of incoming/ (logged once). */
#define QMGR_NOTIFY_MAX_WAITING 100000

/* fd: the non-blocking SOCK_SEQPACKET socket to the qmgr (kept open by
 * the caller). */
struct qmgr_notify *qmgr_notify_new(struct event_base *base, int fd);
/* Announce qid now, or as soon as the socket has room again. */
void qmgr_notify_send(struct qmgr_notify *n, const char *qid);
/* Announcements not sent yet (for tests and the log). */
unsigned long qmgr_notify_waiting(const struct qmgr_notify *n);
void qmgr_notify_free(struct qmgr_notify *n);

#endif
