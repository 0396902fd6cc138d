/*
 * fsync_group.h - one fsync of a directory shared by the threads that need
 * it at about the same time (group commit).
 *
 * A thread that creates a file in the directory takes a ticket right after
 * the creation; when the file is written and fsynced, fsync_group_sync()
 * returns once an fsync of the directory that STARTED after the ticket was
 * taken has ended: only such an fsync is known to carry the new entry.  It
 * starts one only if none has, and while one runs, the callers that arrive
 * meanwhile wait for it to end and then share the next one.  So N
 * concurrent commits cost one or two directory fsyncs instead of N, and a
 * commit whose entry an fsync for somebody else already carried waits for
 * nothing.
 */
#ifndef MP_FSYNC_GROUP_H
#define MP_FSYNC_GROUP_H

#include <pthread.h>
#include <stdint.h>

struct fsync_group {
	pthread_mutex_t lock;
	pthread_cond_t changed;         /* an fsync ended */
	int fd;                         /* the directory, owned */
	int (*sync)(int fd);            /* fsync; a test may put its own */
	int running;                    /* an fsync is under way */
	uint64_t started;               /* fsyncs started so far */
	uint64_t finished;              /* the last one ended (in order) */
	uint64_t failed;                /* the last one that failed, 0: none */
	int failed_errno;
};

/* Open path (a directory) for the group.  -1 with errno if it cannot be
 * opened. */
int fsync_group_open(struct fsync_group *g, const char *path);
/* Use fd (owned from now on) and sync (fsync when NULL). */
void fsync_group_init(struct fsync_group *g, int fd, int (*sync)(int fd));
/* Call after creating the entry (an fsync started from now on carries it). */
uint64_t fsync_group_ticket(struct fsync_group *g);
/* Return once an fsync of the directory started after the ticket was taken
 * has ended: 0, or -1 with errno when that fsync (or a later one ended by
 * then) failed, i.e. the entry is not known to be durable. */
int fsync_group_sync(struct fsync_group *g, uint64_t ticket);
/* Close the directory.  No thread may be in fsync_group_sync(). */
void fsync_group_close(struct fsync_group *g);

#endif
