/*
 * qspares.c - spare queue files made durable ahead of need.  See qspares.h.
 *
 * The ready spares are a ring, oldest first, under one mutex.  The rate is
 * counted in one-second buckets (takes in the current second and in the
 * one before); a refill wants a quarter of the larger, at most QSPARES_MAX,
 * and starts once no more than half of that is ready, so a steady stream
 * finds a spare while the next batch is made.  Each spare is offered as
 * soon as it is made, with its ticket; the fsync of incoming/ for the
 * batch follows, outside the lock.  When it fails, the batch's spares not
 * taken yet (the newest in the ring) are removed; those taken fail at
 * their commit, by their ticket.  Spares whose queue id is below the id a
 * message got without a spare (one came while the ring was empty) are
 * removed, not used, when their turn comes: ids keep the order of arrival.
 */
#include "queue/qspares.h"
#include "lib/fsync_group.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RATE_BUCKET_MS 1000
#define CREATE_TRIES 16
/* After a spare could not be made (a full disk, no descriptors left), no
 * refill is tried for this long: one warning, not one per commit. */
#define FAILURE_PAUSE_MS 1000

struct spare {
	int fd;
	uint64_t made_ms;
	uint64_t ticket;                /* fsync_group_ticket() after the creation */
	uint64_t batch;                 /* the refill that made it */
	char qid[QID_MAX];
};

struct qspares {
	pthread_mutex_t lock;
	int dirfd;                      /* incoming/ */
	struct fsync_group *dir_sync;
	uint64_t (*now_ms)(void);
	struct spare ring[QSPARES_MAX];
	size_t head, count;
	int refilling;
	uint64_t batches;
	uint64_t bucket_start;
	unsigned takes_now, takes_before;
	uint64_t made, used, unused, failures;
	uint64_t paused_until;          /* no refill before (ms), after a failure */
	char last_id[QID_MAX];          /* the greatest id given to a message */
};

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct qspares *qspares_new(const char *queue_dir, struct fsync_group *dir_sync)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/incoming", queue_dir) >= (int)sizeof(path)) {
		log_warn("%s/incoming: %s", queue_dir, strerror(ENAMETOOLONG));
		return NULL;
	}
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		log_warn("no spare queue files: %s: %s", path, strerror(errno));
		return NULL;
	}
	struct qspares *s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->dirfd = fd;
	s->dir_sync = dir_sync;
	s->now_ms = monotonic_ms;
	return s;
}

void qspares_set_clock(struct qspares *s, uint64_t (*now_ms)(void))
{
	s->now_ms = now_ms != NULL ? now_ms : monotonic_ms;
}

/* Move the rate's buckets on to now (lock held). */
static void rate_advance(struct qspares *s, uint64_t now)
{
	if (now - s->bucket_start < RATE_BUCKET_MS)
		return;
	s->takes_before = now - s->bucket_start < 2 * RATE_BUCKET_MS ? s->takes_now : 0;
	s->takes_now = 0;
	s->bucket_start = now;
}

/* How many spares the recent rate asks for (lock held). */
static size_t wanted(struct qspares *s, uint64_t now)
{
	rate_advance(s, now);
	unsigned rate = s->takes_now > s->takes_before ? s->takes_now : s->takes_before;
	size_t want = rate / 4;
	return want > QSPARES_MAX ? QSPARES_MAX : want;
}

/* Take the oldest spare off the ring (lock held, count > 0). */
static struct spare pop_oldest(struct qspares *s)
{
	struct spare sp = s->ring[s->head];
	s->head = (s->head + 1) % QSPARES_MAX;
	s->count--;
	return sp;
}

static void remove_spare(struct qspares *s, struct spare *sp)
{
	close(sp->fd);
	if (unlinkat(s->dirfd, sp->qid, 0) < 0 && errno != ENOENT)
		log_warn("qid=%s: cannot remove a spare queue file: %s", sp->qid, strerror(errno));
}

int qspares_take(struct qspares *s, char qid[QID_MAX], uint64_t *ticket)
{
	struct spare stale[QSPARES_MAX], got = { .fd = -1 };
	size_t nstale = 0;
	uint64_t now = s->now_ms();

	pthread_mutex_lock(&s->lock);
	rate_advance(s, now);
	s->takes_now++;
	while (s->count > 0 && got.fd < 0) {
		struct spare sp = pop_oldest(s);
		/* made before the id of a message that came earlier: it
		 * would be served before that message */
		if (now - sp.made_ms <= QSPARES_MAX_AGE_MS && strcmp(sp.qid, s->last_id) > 0) {
			got = sp;
			s->used++;
			memcpy(s->last_id, sp.qid, QID_MAX);
		} else {
			stale[nstale++] = sp;
			s->unused++;
		}
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < nstale; i++)
		remove_spare(s, &stale[i]);
	if (got.fd >= 0) {
		memcpy(qid, got.qid, QID_MAX);
		*ticket = got.ticket;
	}
	return got.fd;
}

size_t qspares_expire(struct qspares *s)
{
	struct spare stale[QSPARES_MAX];
	size_t nstale = 0, left;
	uint64_t now = s->now_ms();

	pthread_mutex_lock(&s->lock);
	while (s->count > 0 && now - s->ring[s->head].made_ms > QSPARES_MAX_AGE_MS) {
		stale[nstale++] = pop_oldest(s);
		s->unused++;
	}
	left = s->count;
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < nstale; i++)
		remove_spare(s, &stale[i]);
	return left;
}

void qspares_note_id(struct qspares *s, const char *qid)
{
	pthread_mutex_lock(&s->lock);
	if (strcmp(qid, s->last_id) > 0)
		snprintf(s->last_id, sizeof(s->last_id), "%s", qid);
	pthread_mutex_unlock(&s->lock);
}

/* Create one empty file under a fresh queue id. */
static int make_spare(struct qspares *s, struct spare *sp)
{
	for (int tries = 0; tries < CREATE_TRIES; tries++) {
		qid_generate(sp->qid);
		sp->fd = openat(s->dirfd, sp->qid, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
		    QFILE_MODE_WRITING);
		if (sp->fd >= 0) {
			sp->ticket = fsync_group_ticket(s->dir_sync);
			sp->made_ms = s->now_ms();
			return 0;
		}
		if (errno != EEXIST)
			break;
	}
	return -1;
}

/* After a failed fsync of incoming/: remove the batch's spares not taken
 * yet, the newest in the ring. */
static void drop_batch(struct qspares *s, uint64_t batch)
{
	struct spare gone[QSPARES_MAX];
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (s->count > 0) {
		struct spare *sp = &s->ring[(s->head + s->count - 1) % QSPARES_MAX];
		if (sp->batch != batch)
			break;
		gone[n++] = *sp;
		s->count--;
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < n; i++)
		remove_spare(s, &gone[i]);
}

void qspares_refill(struct qspares *s)
{
	struct spare sp;
	size_t n = 0, want;
	uint64_t batch, last_ticket = 0;

	pthread_mutex_lock(&s->lock);
	uint64_t now = s->now_ms();
	want = wanted(s, now);
	if (s->refilling || want < 2 || s->count > want / 2 || now < s->paused_until) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->refilling = 1;
	want -= s->count;
	batch = ++s->batches;
	pthread_mutex_unlock(&s->lock);

	for (; n < want; n++) {
		if (make_spare(s, &sp) < 0) {
			log_warn("cannot make a spare queue file (none tried for %d ms): %s",
			    FAILURE_PAUSE_MS, strerror(errno));
			pthread_mutex_lock(&s->lock);
			s->failures++;
			s->paused_until = s->now_ms() + FAILURE_PAUSE_MS;
			pthread_mutex_unlock(&s->lock);
			break;
		}
		sp.batch = batch;
		last_ticket = sp.ticket;
		/* the ring has room: at most QSPARES_MAX - count are made */
		pthread_mutex_lock(&s->lock);
		s->ring[(s->head + s->count) % QSPARES_MAX] = sp;
		s->count++;
		s->made++;
		pthread_mutex_unlock(&s->lock);
	}
	/* the names' fsync, which commits into these spares wait for */
	if (n > 0 && fsync_group_sync(s->dir_sync, last_ticket) < 0) {
		log_warn("fsync of incoming/ for spare queue files: %s", strerror(errno));
		drop_batch(s, batch);
	}
	pthread_mutex_lock(&s->lock);
	s->refilling = 0;
	pthread_mutex_unlock(&s->lock);
}

void qspares_counts(struct qspares *s, struct qspares_counts *out)
{
	pthread_mutex_lock(&s->lock);
	*out = (struct qspares_counts){ .made = s->made, .used = s->used,
	    .unused = s->unused, .failures = s->failures, .ready = s->count };
	pthread_mutex_unlock(&s->lock);
}

void qspares_free(struct qspares *s)
{
	if (s == NULL)
		return;
	while (s->count > 0) {
		struct spare sp = pop_oldest(s);
		remove_spare(s, &sp);
	}
	close(s->dirfd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
