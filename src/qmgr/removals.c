/*
 * removals.c - the finished queue files of one event-loop turn leave
 * together: each is unlinked at once (so nothing, a rescan included, sees
 * it again), and one fsync of its directory, run after every other
 * callback of the turn, makes all of that turn's removals durable.
 *
 * A message finished with nothing left to do is recorded by its removal
 * alone (msg_commit in scheduler.c), so until that fsync a crash of the
 * machine brings its file back and delivers it again, as a crash between
 * a worker's report and the record of its results always could.  Nothing
 * acts on a removal but forgetting the message in memory.
 */
#include "qmgr/qmgr_private.h"
#include "queue/qfile.h"

#include <event2/event.h>

static struct queue_removals noted = QUEUE_REMOVALS_INIT;
static struct event *sync_ev;

static void sync_fire(evutil_socket_t fd, short what, void *arg)
{
	removals_sync();
}

int removals_unlink(enum qdir dir, const char *qid)
{
	if (queue_unlink_noted(&noted, Q.queue_dirfd[dir], qid) < 0)
		return -1;
	if (sync_ev == NULL)
		sync_ev = event_new(Q.base, -1, 0, sync_fire, NULL);
	/* at the end of the active queue: after the callbacks of this turn
	 * (one already active stays so) */
	event_active(sync_ev, EV_TIMEOUT, 0);
	return 0;
}

void removals_sync(void)
{
	queue_removals_sync(&noted);
}

void removals_close(void)
{
	removals_sync();
	if (sync_ev != NULL)
		event_free(sync_ev);
	sync_ev = NULL;
}
