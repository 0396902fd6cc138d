/*
 * commit_pool.c - a few threads that run qwriter_commit() for the
 * receiver's event loop.  See commit_pool.h.
 *
 * Two queues under one mutex: `todo` (submitted, waiting for a thread) and
 * `finished` (committed, waiting for the loop).  A thread that finishes a
 * request appends it to `finished` and writes to an eventfd; the loop's
 * event on the eventfd runs the done callbacks; then the thread does the
 * pool's chore, if any.  The threads block every signal: signals belong to
 * the loop thread.
 */
#include "receiver/commit_pool.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "queue/qfile.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#define COMMIT_POOL_MAX_THREADS 64

STAILQ_HEAD(req_queue, commit_req);

struct commit_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;            /* todo is not empty, or stopping */
	struct req_queue todo;
	struct req_queue finished;
	int stopping;
	int pending;                    /* submitted, done not yet run */
	int wake_fd;                    /* eventfd: finished is not empty */
	struct event *wake_ev;
	int nthreads;
	pthread_t threads[COMMIT_POOL_MAX_THREADS];
	void (*chore)(void *arg);       /* after each commit, or NULL */
	void *chore_arg;
};

static void *commit_thread(void *arg)
{
	struct commit_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (STAILQ_EMPTY(&p->todo) && !p->stopping)
			pthread_cond_wait(&p->work, &p->lock);
		struct commit_req *req = STAILQ_FIRST(&p->todo);
		if (req == NULL)
			break;          /* stopping and nothing left */
		STAILQ_REMOVE_HEAD(&p->todo, link);
		pthread_mutex_unlock(&p->lock);

		req->error = qwriter_commit(req->w) == 0 ? 0 : errno;
		req->w = NULL;

		pthread_mutex_lock(&p->lock);
		int was_empty = STAILQ_EMPTY(&p->finished);
		STAILQ_INSERT_TAIL(&p->finished, req, link);
		if (was_empty) {
			uint64_t one = 1;
			ssize_t n = write(p->wake_fd, &one, sizeof(one));
			(void)n;        /* a full counter is still readable */
		}
		if (p->chore != NULL && !p->stopping) {
			pthread_mutex_unlock(&p->lock);
			p->chore(p->chore_arg);
			pthread_mutex_lock(&p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Run the done callbacks of the finished requests (loop thread). */
static void run_finished(struct commit_pool *p)
{
	struct req_queue batch;

	pthread_mutex_lock(&p->lock);
	STAILQ_INIT(&batch);
	STAILQ_CONCAT(&batch, &p->finished);
	pthread_mutex_unlock(&p->lock);
	while (!STAILQ_EMPTY(&batch)) {
		struct commit_req *req = STAILQ_FIRST(&batch);
		STAILQ_REMOVE_HEAD(&batch, link);
		p->pending--;
		req->done(req);
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t count;
	ssize_t n = read(fd, &count, sizeof(count));
	(void)n;                /* EAGAIN: woken for a batch already run */
	run_finished(arg);
}

struct commit_pool *commit_pool_start(struct event_base *base, int nthreads,
    void (*chore)(void *arg), void *chore_arg)
{
	struct commit_pool *p = xcalloc(1, sizeof(*p));
	sigset_t all, old;

	p->chore = chore;
	p->chore_arg = chore_arg;
	if (nthreads < 1 || nthreads > COMMIT_POOL_MAX_THREADS)
		panic("commit_pool_start: %d threads", nthreads);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	STAILQ_INIT(&p->todo);
	STAILQ_INIT(&p->finished);
	p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->wake_fd < 0) {
		log_warn("commit pool: eventfd: %s", strerror(errno));
		goto fail;
	}
	p->wake_ev = event_new(base, p->wake_fd, EV_READ | EV_PERSIST, on_wake, p);
	if (p->wake_ev == NULL || event_add(p->wake_ev, NULL) < 0) {
		log_warn("commit pool: cannot watch the eventfd");
		goto fail;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (; p->nthreads < nthreads; p->nthreads++) {
		int err = pthread_create(&p->threads[p->nthreads], NULL, commit_thread, p);
		if (err != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			log_warn("commit pool: pthread_create: %s", strerror(err));
			goto fail;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return p;
fail:
	commit_pool_stop(p);
	return NULL;
}

void commit_pool_submit(struct commit_pool *p, struct commit_req *req)
{
	req->error = 0;
	pthread_mutex_lock(&p->lock);
	STAILQ_INSERT_TAIL(&p->todo, req, link);
	p->pending++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

int commit_pool_pending(const struct commit_pool *p)
{
	return p->pending;
}

void commit_pool_stop(struct commit_pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	/* the threads drain `todo` before they leave */
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	run_finished(p);
	if (p->wake_ev != NULL)
		event_free(p->wake_ev);
	if (p->wake_fd >= 0)
		close(p->wake_fd);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
