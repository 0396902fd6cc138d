/*
 * commit_pool.h - queue commits off the receiver's event loop.
 *
 * qwriter_commit() waits for the disk (fsync of the file and of
 * incoming/).  Run inline, it stalls every session for each message, and
 * commits happen one after the other.  The pool runs them on a few
 * threads: the loop never blocks, and the fsyncs of concurrent sessions
 * share the file system's journal commits.
 *
 * A request is submitted from the loop thread; its `done` callback runs
 * later on the loop thread with `error` set (0 or an errno).  Only the
 * qwriter crosses threads; sessions are touched on the loop thread only.
 */
#ifndef MP_COMMIT_POOL_H
#define MP_COMMIT_POOL_H

#include <sys/queue.h>

struct event_base;
struct qwriter;
struct commit_pool;

struct commit_req {
	struct qwriter *w;                      /* in: consumed by the commit */
	int error;                              /* out: 0 or errno */
	void (*done)(struct commit_req *req);   /* on the loop thread */
	void *arg;                              /* the caller's */
	STAILQ_ENTRY(commit_req) link;
};

/* Start nthreads threads and watch for finished requests on base.  After
 * each commit (its request handed back) the thread calls chore(chore_arg)
 * when chore is not NULL: the receiver makes spare queue files there.
 * NULL (logged) when threads or the wake-up descriptor cannot be made. */
struct commit_pool *commit_pool_start(struct event_base *base, int nthreads,
    void (*chore)(void *arg), void *chore_arg);
/* Hand a request to the pool.  req must stay valid until its done
 * callback has run (the callback may free it). */
void commit_pool_submit(struct commit_pool *p, struct commit_req *req);
/* Requests submitted and not yet finished. */
int commit_pool_pending(const struct commit_pool *p);
/* Finish every submitted request (running the done callbacks here), stop
 * the threads and free the pool. */
void commit_pool_stop(struct commit_pool *p);

#endif
