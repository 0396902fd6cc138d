/*
 * qmgr_notify.c - the receiver's announcements of new queue files to the
 * qmgr, in order, never dropped while the qmgr is only busy.
 *
 * The socket to the qmgr is non-blocking, and a burst of messages while
 * the qmgr is busy fills its send buffer (a few hundred announcements).
 * An announcement that does not fit waits here, behind any that already
 * wait, and a write event sends them as room frees.  Without this, such a
 * message waited in incoming/ for the qmgr's next scan (queue_scan_interval,
 * a minute by default).  When the qmgr is gone (EPIPE) the waiting ones are
 * dropped: the qmgr that replaces it scans incoming/ at start.
 */
#include "receiver/qmgr_notify.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/xalloc.h"
#include "queue/qfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

struct qmgr_notify {
	int fd;
	struct event *ev_write;
	/* a ring of queue ids waiting to be sent, oldest at head */
	char (*ring)[QID_MAX];
	unsigned long head, count, cap;
	int overflow_logged;
	struct ipc_msg msg;
};

/* Send one; 1 sent, 0 no room (try later), -1 failed for good. */
static int send_one(struct qmgr_notify *n, const char *qid)
{
	ipc_init(&n->msg, MSG_QUEUE_NEW);
	ipc_add_str(&n->msg, qid);
	if (ipc_send(n->fd, &n->msg) == 0)
		return 1;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
		return 0;
	log_debug("%s: could not notify the qmgr: %s", qid, strerror(errno));
	return -1;
}

static void flush(struct qmgr_notify *n)
{
	while (n->count > 0) {
		int r = send_one(n, n->ring[n->head]);
		if (r == 0)
			break;
		if (r < 0) {
			/* the qmgr is gone: its successor scans incoming/ */
			n->count = 0;
			break;
		}
		n->head = (n->head + 1) % n->cap;
		n->count--;
	}
	if (n->count == 0) {
		n->head = 0;
		n->overflow_logged = 0;
		event_del(n->ev_write);
	} else {
		event_add(n->ev_write, NULL);
	}
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	flush(arg);
}

struct qmgr_notify *qmgr_notify_new(struct event_base *base, int fd)
{
	struct qmgr_notify *n = xcalloc(1, sizeof(*n));

	n->fd = fd;
	n->ev_write = event_new(base, fd, EV_WRITE, on_writable, n);
	if (n->ev_write == NULL)
		fatal("cannot set up the event loop");
	return n;
}

static void push(struct qmgr_notify *n, const char *qid)
{
	if (n->count == QMGR_NOTIFY_MAX_WAITING) {
		if (!n->overflow_logged)
			log_warn("the qmgr takes no announcements (%lu waiting): new messages "
			    "wait for its next scan of the queue", n->count);
		n->overflow_logged = 1;
		return;
	}
	if (n->count == n->cap) {
		/* grow, unrolling the ring so that head is 0 */
		unsigned long cap = n->cap ? n->cap * 2 : 64;
		char (*ring)[QID_MAX] = xreallocarray(NULL, cap, sizeof(*ring));
		for (unsigned long i = 0; i < n->count; i++)
			memcpy(ring[i], n->ring[(n->head + i) % n->cap], QID_MAX);
		free(n->ring);
		n->ring = ring;
		n->cap = cap;
		n->head = 0;
	}
	unsigned long tail = (n->head + n->count) % n->cap;
	snprintf(n->ring[tail], QID_MAX, "%s", qid);
	n->count++;
}

void qmgr_notify_send(struct qmgr_notify *n, const char *qid)
{
	/* in order: behind those already waiting */
	if (n->count == 0) {
		int r = send_one(n, qid);
		if (r != 0)
			return;
	}
	push(n, qid);
	flush(n);
}

unsigned long qmgr_notify_waiting(const struct qmgr_notify *n)
{
	return n->count;
}

void qmgr_notify_free(struct qmgr_notify *n)
{
	if (n == NULL)
		return;
	if (n->count > 0)
		log_debug("%lu announcements to the qmgr not sent: its scan finds them",
		    n->count);
	event_free(n->ev_write);
	free(n->ring);
	free(n);
}
