/*
 * test_qmgr_figures.c - qmgr/figures.c: the queue gauges and the oldest
 * arrival kept through many messages coming, moving and going in any
 * order (the arrival heap), messages on disk; the arrival time in a queue
 * id; deliveries by status and action with delays only for final
 * results; workers counted in exactly one state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "qmgr/qmgr_private.h"
#include "lib/msgtypes.h"
#include "metrics/qmgr_figures.h"

#define N 500

static int64_t gauge(int s)
{
	return metrics_gauge_read(&metrics_qmgr->queue_messages[s]);
}

static uint64_t oldest(void)
{
	return __atomic_load_n(&metrics_qmgr->queue_oldest_arrival_usec, __ATOMIC_RELAXED);
}

static uint64_t arrival(const struct qmsg *m)
{
	return (uint64_t)m->qf.arrival_sec * 1000000u + (uint64_t)m->qf.arrival_usec;
}

/* The oldest of the messages still in, by a plain scan. */
static uint64_t scan_oldest(struct qmsg **v, const int *in)
{
	uint64_t best = 0;
	for (int i = 0; i < N; i++)
		if (in[i] && (best == 0 || arrival(v[i]) < best))
			best = arrival(v[i]);
	return best;
}

static void test_queue_gauges_and_oldest(void **state)
{
	static struct qmsg *v[N];
	static int in[N];
	int active = 0, deferred = 0;

	srandom(12);
	figures_start();
	assert_int_equal(gauge(FQ_ACTIVE), 0);
	assert_int_equal(oldest(), 0);
	for (int i = 0; i < N; i++) {
		v[i] = calloc(1, sizeof(*v[i]));
		/* arrivals out of order, some equal */
		v[i]->qf.arrival_sec = 1700000000 + random() % 300;
		v[i]->qf.arrival_usec = random() % 3;
		v[i]->dir = i % 3 == 0 ? QDIR_DEFERRED : i % 3 == 1 ? QDIR_ACTIVE : QDIR_INCOMING;
		figures_msg_in(v[i]);
		in[i] = 1;
		*(v[i]->dir == QDIR_DEFERRED ? &deferred : &active) += 1;
		assert_int_equal(oldest(), scan_oldest(v, in));
	}
	assert_int_equal(gauge(FQ_ACTIVE), active);
	assert_int_equal(gauge(FQ_DEFERRED), deferred);
	/* moves between active/ and deferred/, and leaving, in any order */
	for (int round = 0; round < 4 * N; round++) {
		int i = (int)(random() % N);
		if (!in[i]) {
			continue;
		} else if (random() % 2) {
			int was_deferred = v[i]->dir == QDIR_DEFERRED;
			v[i]->dir = was_deferred ? QDIR_ACTIVE : QDIR_DEFERRED;
			figures_msg_moved(v[i]);
			active += was_deferred ? 1 : -1;
			deferred += was_deferred ? -1 : 1;
		} else {
			figures_msg_out(v[i]);
			figures_msg_out(v[i]);  /* a second time changes nothing */
			in[i] = 0;
			*(v[i]->dir == QDIR_DEFERRED ? &deferred : &active) -= 1;
		}
		assert_int_equal(gauge(FQ_ACTIVE), active);
		assert_int_equal(gauge(FQ_DEFERRED), deferred);
		assert_int_equal(oldest(), scan_oldest(v, in));
	}
	for (int i = 0; i < N; i++) {
		if (in[i])
			figures_msg_out(v[i]);
		free(v[i]);
	}
	assert_int_equal(gauge(FQ_ACTIVE), 0);
	assert_int_equal(gauge(FQ_DEFERRED), 0);
	assert_int_equal(oldest(), 0);
}

static void test_messages_on_disk(void **state)
{
	struct qmsg m;

	figures_start();
	memset(&m, 0, sizeof(m));
	m.qf.arrival_sec = 1700000100;
	m.dir = QDIR_DEFERRED;
	figures_msg_in(&m);
	/* the last scan: 3 new and 2 deferred on disk, the oldest older */
	figures_disk(3, 2, 1700000000ull * 1000000u);
	assert_int_equal(gauge(FQ_ACTIVE), 3);
	assert_int_equal(gauge(FQ_DEFERRED), 3);
	assert_int_equal(oldest(), 1700000000ull * 1000000u);
	/* put back to disk: still queued, deferred */
	figures_msg_to_disk(&m);
	assert_int_equal(gauge(FQ_DEFERRED), 3);
	assert_int_equal(m.fig_heap, 0);
	/* one left on disk for lack of room, by its queue id */
	figures_msg_left_on_disk("0TPJSH68UKL00N690001", QDIR_INCOMING);
	assert_int_equal(gauge(FQ_ACTIVE), 4);
	figures_scan_begin();   /* the next scan finds nothing on disk */
	figures_disk(0, 0, 0);
	assert_int_equal(gauge(FQ_ACTIVE), 0);
	assert_int_equal(gauge(FQ_DEFERRED), 0);
	assert_int_equal(oldest(), 0);
	/* a scan lists the directories, then loading makes room by putting
	 * one back to disk: the scan's count adds it */
	figures_msg_in(&m);
	figures_scan_begin();
	figures_msg_to_disk(&m);
	figures_disk(1, 0, 0);
	assert_int_equal(gauge(FQ_ACTIVE), 1);
	assert_int_equal(gauge(FQ_DEFERRED), 1);
	assert_int_equal(oldest(), 1700000100ull * 1000000u);
	/* the next scan sees it on disk itself */
	figures_scan_begin();
	figures_disk(0, 1, 1700000100ull * 1000000u);
	assert_int_equal(gauge(FQ_DEFERRED), 1);
}

static void test_qid_time(void **state)
{
	char qid[QID_MAX];
	struct timeval before, after;

	gettimeofday(&before, NULL);
	qid_generate(qid);
	gettimeofday(&after, NULL);
	uint64_t t = figures_qid_usec(qid);
	assert_true(t >= (uint64_t)before.tv_sec * 1000000u + (uint64_t)before.tv_usec);
	assert_true(t <= (uint64_t)after.tv_sec * 1000000u + (uint64_t)after.tv_usec);
	assert_int_equal(figures_qid_usec("ABC"), 0);           /* too short */
	assert_int_equal(figures_qid_usec("0TPJSH6zUKL00N690001"), 0);
	assert_int_equal(figures_qid_usec("0TPJSH6ZZZZ00N690001"), 0); /* usec >= 10^6 */
}

static uint64_t delays(int stage)
{
	return metrics_read(&metrics_qmgr->delay[stage].count);
}

static void test_deliveries_and_delays(void **state)
{
	struct qmsg m;
	struct delivery_result r = { .status = DELIVERY_TEMPFAIL, .action = RESULT_ACTION_PIPE };
	struct timeval now;

	memset(&m, 0, sizeof(m));
	gettimeofday(&now, NULL);
	m.qf.arrival_sec = now.tv_sec - 10;
	uint64_t q0 = delays(FS_QUEUE), w0 = delays(FS_WORKER), t0 = delays(FS_TOTAL);
	/* a deferral: counted, no delay */
	figures_result(&m, &r, figures_now_usec() - 2000000);
	assert_int_equal(metrics_read(&metrics_qmgr->deliveries[FD_DEFERRED][FA_PIPE]), 1);
	assert_int_equal(delays(FS_TOTAL), t0);
	/* delivered by the retry that began 1 s ago: one delay per stage */
	r.status = DELIVERY_OK;
	figures_result(&m, &r, figures_now_usec() - 1000000);
	assert_int_equal(metrics_read(&metrics_qmgr->deliveries[FD_DELIVERED][FA_PIPE]), 1);
	assert_int_equal(delays(FS_QUEUE), q0 + 1);
	assert_int_equal(delays(FS_WORKER), w0 + 1);
	assert_int_equal(delays(FS_TOTAL), t0 + 1);
	uint64_t worker = metrics_read(&metrics_qmgr->delay[FS_WORKER].sum_usec);
	uint64_t queue = metrics_read(&metrics_qmgr->delay[FS_QUEUE].sum_usec);
	assert_true(worker >= 1000000 && worker < 5000000);
	assert_true(queue >= 8000000 && queue < 11000000);
	/* an action it does not know counts as none; a bounce */
	r.status = DELIVERY_PERMFAIL;
	r.action = RESULT_ACTION_COUNT + 7;
	figures_result(&m, &r, 0);
	assert_int_equal(metrics_read(&metrics_qmgr->deliveries[FD_BOUNCED][FA_NONE]), 1);
	assert_int_equal(delays(FS_TOTAL), t0 + 2);
	figures_expired(&m);
	assert_int_equal(metrics_read(&metrics_qmgr->deliveries[FD_BOUNCED][FA_NONE]), 2);
	assert_int_equal(delays(FS_WORKER), w0 + 3);
}

static int64_t workers(int s)
{
	return metrics_gauge_read(&metrics_qmgr->workers[s]);
}

static void test_workers_in_one_state(void **state)
{
	struct worker a, b;
	struct job j;

	figures_start();
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	figures_worker(&a);
	figures_worker(&b);
	assert_int_equal(workers(FW_IDLE), 2);
	a.job = &j;
	figures_worker(&a);
	figures_worker(&a);     /* no change: counted once */
	assert_int_equal(workers(FW_IDLE), 1);
	assert_int_equal(workers(FW_BUSY), 1);
	a.check = CHECK_WAITING;
	figures_worker(&a);
	assert_int_equal(workers(FW_BUSY), 0);
	assert_int_equal(workers(FW_WAITING), 1);
	a.check = CHECK_RUNNING;
	figures_worker(&a);
	assert_int_equal(workers(FW_WAITING), 0);
	assert_int_equal(workers(FW_CHECKING), 1);
	figures_worker_gone(&a);
	figures_worker_gone(&a);
	figures_worker_gone(&b);
	for (int s = 0; s < FW_COUNT; s++)
		assert_int_equal(workers(s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queue_gauges_and_oldest),
		cmocka_unit_test(test_messages_on_disk),
		cmocka_unit_test(test_qid_time),
		cmocka_unit_test(test_deliveries_and_delays),
		cmocka_unit_test(test_workers_in_one_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
