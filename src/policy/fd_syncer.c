/*
 * fd_syncer.c - a thread that fdatasyncs one descriptor every interval
 * until it is stopped.  It touches nothing but the descriptor, so the
 * owner's single-threaded code (LMDB, libevent) needs no locks.
 */
#include "policy/fd_syncer.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct fd_syncer {
	int fd;
	unsigned interval_s;
	char *what;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int stop;
};

static void *run(void *arg)
{
	struct fd_syncer *s = arg;
	time_t last_log = 0;

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += s->interval_s;
		while (!s->stop && pthread_cond_timedwait(&s->wake, &s->lock, &until) != ETIMEDOUT)
			;
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->lock);
		if (fdatasync(s->fd) < 0 && time(NULL) - last_log >= 60) {
			last_log = time(NULL);
			log_warn("%s: fdatasync: %s", s->what, strerror(errno));
		}
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

struct fd_syncer *fd_syncer_start(int fd, unsigned interval_s, const char *what)
{
	struct fd_syncer *s = xcalloc(1, sizeof(*s));
	pthread_condattr_t ca;
	int rc;

	s->fd = fd;
	s->interval_s = interval_s;
	s->what = xstrdup(what);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake, &ca);
	pthread_condattr_destroy(&ca);
	if ((rc = pthread_create(&s->thread, NULL, run, s)) != 0) {
		log_warn("%s: no sync thread (%s): synced only at stop", what, strerror(rc));
		pthread_cond_destroy(&s->wake);
		pthread_mutex_destroy(&s->lock);
		free(s->what);
		free(s);
		return NULL;
	}
	return s;
}

void fd_syncer_stop(struct fd_syncer *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = 1;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s->what);
	free(s);
}
