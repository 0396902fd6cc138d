/*
 * qspares.h - spare queue files: empty files made in incoming/ ahead of
 * need, whose names are durable before a message is written into one.
 *
 * A message committed into a fresh queue file needs two syncs one after
 * the other: the file's, then an fsync of incoming/ that started after
 * the file was made (fsync_group.h: the ticket taken at the creation), so
 * that its name survives a crash too.  A spare is made the same way, ticket
 * and all, but ahead of need and in a batch, and the refill that made it
 * starts that fsync of incoming/ at once, off every session's path.  By
 * the time a message written into it is committed its name is durable
 * already, and the commit waits for the file's own fsync only.  Should the
 * message come before that, its commit waits for the same fsync, as a
 * fresh file's would; should that fsync fail, the commit fails (the rule
 * is the ticket's, unchanged), and the batch's other spares are removed.
 *
 * Spares are made only while mail comes fast (the batch is sized to about
 * a quarter second of the recent rate, at most QSPARES_MAX), and one older
 * than QSPARES_MAX_AGE_MS is not used but removed: a spare's queue id was
 * made with the file and says when, and the queue orders new mail and
 * reports its age by that time.  A spare is an uncommitted file like any
 * other being written, so the qmgr ignores it, and the master's purge of
 * incoming/ removes those a receiver that died left behind.
 *
 * qspares_take() is for the receiver's loop thread; qspares_refill() runs
 * on any one thread at a time (the commit threads, between commits).
 */
#ifndef MP_QSPARES_H
#define MP_QSPARES_H

#include "queue/qfile.h"

#include <stdint.h>

#define QSPARES_MAX 64
#define QSPARES_MAX_AGE_MS 2000

struct fsync_group;
struct qspares;

/* Spares for queue_dir's incoming/, made durable through dir_sync (which
 * must outlive them).  NULL (logged) when incoming/ cannot be opened. */
struct qspares *qspares_new(const char *queue_dir, struct fsync_group *dir_sync);
/* The oldest fresh spare: its descriptor (open for writing, the file
 * empty), its queue id in qid and in *ticket the fsync_group ticket taken
 * when it was made (qwriter_open_spare); -1 when there is none.  Counts towards
 * the rate that sizes the next refill.  Stale spares met on the way are
 * removed, and so are those whose queue id is not above every id given to
 * a message before (qspares_note_id): ids keep the order in which
 * messages came, which is the order new mail waiting on disk is served. */
int qspares_take(struct qspares *s, char qid[QID_MAX], uint64_t *ticket);
/* A message got the queue id qid without a spare (none was ready). */
void qspares_note_id(struct qspares *s, const char *qid);
/* Remove the spares too old to be used; the number still ready (the
 * receiver calls it on a timer, so that an idle queue keeps none). */
size_t qspares_expire(struct qspares *s);
/* Make spares if the rate asks for more than are ready: create them,
 * offering each as it is made, then fsync incoming/ for them all.
 * Returns at once when none are needed, another thread is at it, or a
 * spare could not be made within the last second (logged once). */
void qspares_refill(struct qspares *s);
/* What was made, used and removed unused so far. */
struct qspares_counts {
	uint64_t made, used;
	uint64_t unused;        /* removed: too old, or below a message's id */
	uint64_t failures;      /* refills stopped by a spare that could not be made */
	uint64_t ready;
};
void qspares_counts(struct qspares *s, struct qspares_counts *out);
/* Remove the spares not taken and free s (no refill may be running). */
void qspares_free(struct qspares *s);

/* For tests: the clock in milliseconds (CLOCK_MONOTONIC when NULL). */
void qspares_set_clock(struct qspares *s, uint64_t (*now_ms)(void));

#endif
