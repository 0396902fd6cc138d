/*
 * removals.c - finished queue files leave in groups: each is renamed into
 * finished/ at once (so nothing, a rescan included, sees it again), and at
 * the end of the event-loop turn (an event activated behind the turn's
 * other callbacks) a thread of its own is woken to make the turn's
 * removals durable, one fsync per directory, and then to unlink the files
 * from finished/.  The event loop never waits for the disk: not for the
 * fsync, nor for the blocks of a file to be freed (with `discard` that is
 * a command to the device per file, and measured at half of the loop's
 * time when it unlinked the files itself).  While one group is synced, the
 * removals that come meanwhile make the next.  What a crash leaves in
 * finished/ is removed when the qmgr starts.
 *
 * A message finished with nothing left to do is recorded by its removal
 * alone (msg_commit in scheduler.c), so until that fsync a crash of the
 * machine brings its file back and delivers it again, as a crash between
 * a worker's report and the record of its results always could.  Nothing
 * acts on a removal but forgetting the message in memory, so nothing waits
 * for the fsync; the qmgr waits for the last one when it stops.  Without
 * the thread (it could not start) the loop makes the fsyncs itself at the
 * end of the turn.
 */
#include "qmgr/qmgr_private.h"
#include "lib/log.h"
#include "queue/qfile.h"

#include <event2/event.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static struct queue_removals noted = QUEUE_REMOVALS_INIT;      /* under lock */
static int group_ready;                                         /* under lock */
static int stopping;                                            /* under lock */
static int started;
static pthread_t syncer;
static struct event *turn_end_ev;

static void *sync_thread(void *arg)
{
	pthread_mutex_lock(&lock);
	for (;;) {
		while (!(group_ready && noted.ndirs > 0) && !stopping)
			pthread_cond_wait(&work, &lock);
		if (noted.ndirs == 0 && stopping)
			break;          /* nothing left */
		struct queue_removals group;
		queue_removals_take(&group, &noted);
		group_ready = 0;
		pthread_mutex_unlock(&lock);
		queue_removals_sync(&group);
		queue_removals_free(&group);
		pthread_mutex_lock(&lock);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

/* The end of the turn: the group is complete, have it synced. */
static void turn_end(evutil_socket_t fd, short what, void *arg)
{
	pthread_mutex_lock(&lock);
	if (started) {
		group_ready = 1;
		pthread_cond_signal(&work);
	} else {
		queue_removals_sync(&noted);
	}
	pthread_mutex_unlock(&lock);
}

void removals_start(int finished_fd)
{
	sigset_t all, old;

	/* without finished/ (it could not be opened) files are unlinked in
	 * place, on the loop */
	noted.finished_fd = finished_fd;
	if (noted.finished_fd >= 0) {
		int n = queue_purge_finished(noted.finished_fd);
		if (n < 0)
			log_warn("cannot empty finished/: %s", strerror(errno));
		else if (n > 0)
			log_info("removed %d file(s) of finished messages left in finished/", n);
	}

	sigfillset(&all);       /* signals belong to the loop thread */
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int err = pthread_create(&syncer, NULL, sync_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0)
		log_warn("cannot start the thread that syncs removals: %s; the event loop "
		    "syncs them", strerror(err));
	started = err == 0;
	turn_end_ev = event_new(Q.base, -1, 0, turn_end, NULL);
}

int removals_remove(enum qdir dir, const char *qid)
{
	pthread_mutex_lock(&lock);
	int r = queue_remove_noted(&noted, Q.queue_dirfd[dir], qid);
	pthread_mutex_unlock(&lock);
	/* behind the callbacks already active (one active stays so) */
	if (r == 0)
		event_active(turn_end_ev, EV_TIMEOUT, 0);
	return r;
}

void removals_close(void)
{
	if (turn_end_ev != NULL)
		event_free(turn_end_ev);
	turn_end_ev = NULL;
	if (!started) {
		queue_removals_sync(&noted);
		queue_removals_free(&noted);
		return;
	}
	pthread_mutex_lock(&lock);
	stopping = 1;
	pthread_cond_signal(&work);
	pthread_mutex_unlock(&lock);
	pthread_join(syncer, NULL);     /* after the last group's fsync */
	queue_removals_free(&noted);
	started = 0;
}
