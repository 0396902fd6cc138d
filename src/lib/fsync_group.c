/*
 * fsync_group.c - group commit of a directory's fsync.  See fsync_group.h.
 *
 * Generations: `started` counts the fsyncs begun, `finished` names the
 * last one ended; at most one runs at a time, so they end in order.  A
 * ticket is the value of `started` after the entry was made: the caller
 * needs generation ticket + 1 or any later one (the one under way when the
 * ticket was taken began before the entry).  Whoever finds none running
 * starts the next, without the lock, and wakes everybody when it ends.
 */
#include "lib/fsync_group.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

void fsync_group_init(struct fsync_group *g, int fd, int (*sync)(int fd))
{
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->changed, NULL);
	g->fd = fd;
	g->sync = sync != NULL ? sync : fsync;
	g->running = 0;
	g->started = 0;
	g->finished = 0;
	g->failed = 0;
	g->failed_errno = 0;
}

int fsync_group_open(struct fsync_group *g, const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	fsync_group_init(g, fd, NULL);
	return 0;
}

uint64_t fsync_group_ticket(struct fsync_group *g)
{
	pthread_mutex_lock(&g->lock);
	uint64_t ticket = g->started;
	pthread_mutex_unlock(&g->lock);
	return ticket;
}

int fsync_group_sync(struct fsync_group *g, uint64_t ticket)
{
	pthread_mutex_lock(&g->lock);
	const uint64_t mine = ticket + 1;
	while (g->finished < mine) {
		if (g->running) {
			pthread_cond_wait(&g->changed, &g->lock);
			continue;
		}
		const uint64_t gen = ++g->started;
		g->running = 1;
		pthread_mutex_unlock(&g->lock);
		int r = g->sync(g->fd);
		int err = errno;
		pthread_mutex_lock(&g->lock);
		g->running = 0;
		g->finished = gen;
		if (r < 0) {
			g->failed = gen;
			g->failed_errno = err;
		}
		pthread_cond_broadcast(&g->changed);
	}
	/* a later failure counts too: after a failed fsync nothing written
	 * before it is known to be on disk */
	int failed = g->failed >= mine;
	int err = g->failed_errno;
	pthread_mutex_unlock(&g->lock);
	if (failed) {
		errno = err;
		return -1;
	}
	return 0;
}

void fsync_group_close(struct fsync_group *g)
{
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
	pthread_cond_destroy(&g->changed);
	pthread_mutex_destroy(&g->lock);
}
