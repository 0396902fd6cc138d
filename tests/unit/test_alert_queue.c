/*
 * test_alert_queue.c - one probe's alerts: one runs at a time, the
 * changes meanwhile wait and run once each, in order; beyond
 * ALERT_QUEUE_MAX the oldest waiting is dropped and counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mailmond/alert_queue.h"

static void test_one_at_a_time_in_order(void **state)
{
	struct alert_queue q;
	struct alert_change a;
	alert_queue_init(&q);
	assert_int_equal(alert_queue_next(&q, &a), 0);
	alert_queue_push(&q, "late", 2.5);
	assert_int_equal(alert_queue_next(&q, &a), 1);
	assert_string_equal(a.state, "late");
	assert_true(a.delay == 2.5);
	q.pid = 100;            /* started */
	alert_queue_push(&q, "lost", 10.0);
	alert_queue_push(&q, "recovered", 0.5);
	/* the late one runs: the others wait */
	assert_int_equal(alert_queue_next(&q, &a), 0);
	assert_string_equal(q.running.state, "late");
	alert_queue_done(&q);
	assert_int_equal(q.pid, -1);
	assert_int_equal(alert_queue_next(&q, &a), 1);
	assert_string_equal(a.state, "lost");
	assert_true(a.delay == 10.0);
	q.pid = 101;
	alert_queue_done(&q);
	assert_int_equal(alert_queue_next(&q, &a), 1);
	assert_string_equal(a.state, "recovered");
	q.pid = 102;
	alert_queue_done(&q);
	assert_int_equal(alert_queue_next(&q, &a), 0);
	assert_int_equal(q.dropped, 0);
}

static void test_full_drops_oldest(void **state)
{
	struct alert_queue q;
	struct alert_change a;
	char name[16];
	alert_queue_init(&q);
	q.pid = 100;
	for (int i = 0; i < ALERT_QUEUE_MAX + 2; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		alert_queue_push(&q, name, i);
	}
	assert_int_equal(q.dropped, 2);
	assert_int_equal(q.n, ALERT_QUEUE_MAX);
	alert_queue_done(&q);
	for (int i = 2; i < ALERT_QUEUE_MAX + 2; i++) {
		assert_int_equal(alert_queue_next(&q, &a), 1);
		snprintf(name, sizeof(name), "s%d", i);
		assert_string_equal(a.state, name);
		q.pid = 200 + i;
		alert_queue_done(&q);
	}
	assert_int_equal(alert_queue_next(&q, &a), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_at_a_time_in_order),
		cmocka_unit_test(test_full_drops_oldest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
