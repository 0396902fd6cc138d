/*
 * test_fsync_group.c - the shared directory fsync: a commit returns only
 * after an fsync that started after its ticket, one started for somebody
 * else counts, the callers that arrive while one runs share the next, and
 * a failure reaches the callers that needed it.  The fsync is replaced by
 * a function that counts its calls and can be held inside.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/fsync_group.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int calls;               /* fake fsyncs begun */
static int ended;               /* fake fsyncs ended */
static int hold_first;          /* the first call waits for `released` */
static int in_first, released;
static int fail_call;           /* this call (1-based) fails with EIO */

static void reset(int hold, int fail)
{
	calls = ended = in_first = released = 0;
	hold_first = hold;
	fail_call = fail;
}

static int fake_sync(int fd)
{
	pthread_mutex_lock(&mu);
	int me = ++calls;
	if (me == 1 && hold_first) {
		in_first = 1;
		pthread_cond_broadcast(&cv);
		while (!released)
			pthread_cond_wait(&cv, &mu);
	}
	ended++;
	pthread_mutex_unlock(&mu);
	if (me == fail_call) {
		errno = EIO;
		return -1;
	}
	return 0;
}

/* A ticket taken before somebody else's fsync began is served by it. */
static void test_an_fsync_for_another_counts(void **state)
{
	struct fsync_group g;

	reset(0, 0);
	fsync_group_init(&g, -1, fake_sync);
	uint64_t a = fsync_group_ticket(&g);
	uint64_t b = fsync_group_ticket(&g);
	assert_int_equal(fsync_group_sync(&g, b), 0);
	assert_int_equal(calls, 1);
	assert_int_equal(fsync_group_sync(&g, a), 0);
	assert_int_equal(calls, 1);             /* nothing new to wait for */
	/* a ticket taken after that fsync began needs a new one */
	uint64_t c = fsync_group_ticket(&g);
	assert_int_equal(fsync_group_sync(&g, c), 0);
	assert_int_equal(calls, 2);
	fsync_group_close(&g);
}

struct waiter {
	struct fsync_group *g;
	uint64_t ticket;
	int result;
	int ended_at_return;    /* fake fsyncs ended when the call returned */
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	w->result = fsync_group_sync(w->g, w->ticket);
	pthread_mutex_lock(&mu);
	w->ended_at_return = ended;
	pthread_mutex_unlock(&mu);
	return NULL;
}

/* Callers whose tickets came while an fsync ran do not count on it: they
 * share the next one, which starts after it ends. */
static void test_callers_during_one_share_the_next(void **state)
{
	struct fsync_group g;
	struct waiter first, late[3];
	pthread_t t0, t[3];

	reset(1, 0);
	fsync_group_init(&g, -1, fake_sync);
	first = (struct waiter){ .g = &g, .ticket = fsync_group_ticket(&g) };
	assert_int_equal(pthread_create(&t0, NULL, wait_thread, &first), 0);
	/* wait (5 s at most) for it to be inside the first fsync */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&mu);
	while (!in_first && pthread_cond_timedwait(&cv, &mu, &until) == 0)
		;
	int inside = in_first;
	pthread_mutex_unlock(&mu);
	if (!inside) {
		pthread_join(t0, NULL);
		fail_msg("the first caller never made an fsync (it returned %d after %d)",
		    first.result, first.ended_at_return);
	}

	/* the first fsync is under way: these entries came after it began */
	for (int i = 0; i < 3; i++) {
		late[i] = (struct waiter){ .g = &g, .ticket = fsync_group_ticket(&g) };
		assert_int_equal(pthread_create(&t[i], NULL, wait_thread, &late[i]), 0);
	}
	usleep(20000);          /* let them wait (the counts hold either way) */
	pthread_mutex_lock(&mu);
	released = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);

	pthread_join(t0, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(first.result, 0);
	assert_true(first.ended_at_return >= 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(late[i].result, 0);
		assert_int_equal(late[i].ended_at_return, 2);   /* after the second */
	}
	assert_int_equal(calls, 2);             /* three callers, one fsync */
	fsync_group_close(&g);
}

/* A failed fsync fails the callers that needed it; the next one is new. */
static void test_failure_reaches_its_callers(void **state)
{
	struct fsync_group g;

	reset(0, 1);
	fsync_group_init(&g, -1, fake_sync);
	uint64_t a = fsync_group_ticket(&g);
	errno = 0;
	assert_int_equal(fsync_group_sync(&g, a), -1);
	assert_int_equal(errno, EIO);
	uint64_t b = fsync_group_ticket(&g);
	assert_int_equal(fsync_group_sync(&g, b), 0);
	assert_int_equal(calls, 2);
	fsync_group_close(&g);
}

/* The real thing: a directory is opened and fsynced, a missing one is an
 * error. */
static void test_open_a_directory(void **state)
{
	struct fsync_group g;
	char dir[] = "/tmp/test_fsync_group.XXXXXX";

	assert_non_null(mkdtemp(dir));
	assert_int_equal(fsync_group_open(&g, dir), 0);
	assert_int_equal(fsync_group_sync(&g, fsync_group_ticket(&g)), 0);
	fsync_group_close(&g);
	assert_int_equal(rmdir(dir), 0);
	assert_int_equal(fsync_group_open(&g, dir), -1);
	assert_int_equal(errno, ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_an_fsync_for_another_counts),
		cmocka_unit_test(test_callers_during_one_share_the_next),
		cmocka_unit_test(test_failure_reaches_its_callers),
		cmocka_unit_test(test_open_a_directory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
