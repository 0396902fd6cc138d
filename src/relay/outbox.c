/*
 * outbox.c - messages to the qmgr (results, done) in order, never
 * blocking: what the socket does not take now waits here and goes out
 * when it is writable.  A qmgr that cannot be written to at all is gone:
 * the relay stops (from the loop, not from deep inside a connection).
 */
#include "relay/relay_private.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

struct out_item {
	TAILQ_ENTRY(out_item) entry;
	uint32_t type;
	uint64_t job_id;
	uint32_t index;
	uint32_t status;
	char *dsn;
	char *text;
};

static struct ipc_msg omsg;

static void out_free(struct out_item *o)
{
	free(o->dsn);
	free(o->text);
	free(o);
}

void outbox_drop(struct relay *r)
{
	struct out_item *o;
	while ((o = TAILQ_FIRST(&r->outbox)) != NULL) {
		TAILQ_REMOVE(&r->outbox, o, entry);
		out_free(o);
	}
}

static void outbox_flush(struct relay *r)
{
	struct out_item *o;

	while ((o = TAILQ_FIRST(&r->outbox)) != NULL) {
		ipc_init(&omsg, o->type);
		ipc_add_u64(&omsg, o->job_id);  /* HELLO: the nonce */
		if (o->type == MSG_RELAY_RESULT) {
			ipc_add_u32(&omsg, o->index);
			ipc_add_u32(&omsg, o->status);
			ipc_add_str(&omsg, o->dsn);
			ipc_add_str(&omsg, o->text);
		}
		if (ipc_send(r->ipc_fd, &omsg) < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				event_add(r->ipc_wev, NULL);
				return;
			}
			log_warn("relay: cannot report to the qmgr: %s", strerror(errno));
			/* stop from the loop: we may be deep in a connection */
			r->gone = 1;
			outbox_drop(r);
			relay_kick(r);
			return;
		}
		TAILQ_REMOVE(&r->outbox, o, entry);
		out_free(o);
	}
	relay_kick(r);          /* a stopping relay may be finished now */
}

static void outbox_add(struct relay *r, struct out_item *o)
{
	if (r->gone) {
		out_free(o);
		return;
	}
	int was_empty = TAILQ_EMPTY(&r->outbox);
	TAILQ_INSERT_TAIL(&r->outbox, o, entry);
	if (was_empty)
		outbox_flush(r);
}

void relay_send_result(struct relay *r, uint64_t job_id, uint32_t index,
    enum relay_status status, const char *dsn, const char *text)
{
	struct out_item *o = xcalloc(1, sizeof(*o));
	o->type = MSG_RELAY_RESULT;
	o->job_id = job_id;
	o->index = index;
	o->status = (uint32_t)status;
	o->dsn = xstrdup(dsn);
	o->text = xstrdup(text);
	outbox_add(r, o);
}

void relay_send_done(struct relay *r, uint64_t job_id)
{
	struct out_item *o = xcalloc(1, sizeof(*o));
	o->type = MSG_RELAY_DONE;
	o->job_id = job_id;
	outbox_add(r, o);
}

void relay_send_hello(struct relay *r, uint64_t nonce)
{
	struct out_item *o = xcalloc(1, sizeof(*o));
	o->type = MSG_RELAY_HELLO;
	o->job_id = nonce;
	outbox_add(r, o);
}

void outbox_writable(evutil_socket_t fd, short what, void *arg)
{
	outbox_flush(arg);
}
