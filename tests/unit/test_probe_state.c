/*
 * test_probe_state.c - a probe's states and figures: late after
 * late_after or at once when it could not be sent, lost after lost_after,
 * recovered on an arrival, each change reported once, when the next
 * check is due, and the delay by the monotonic clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mailmond/probe_state.h"

#define S 1000000ULL    /* a second in microseconds */
#define LATE (2 * S)
#define LOST (10 * S)

static char changes[1024];

static void on_change(struct probe *p, const char *state, double delay, void *arg)
{
	size_t len = strlen(changes);
	snprintf(changes + len, sizeof(changes) - len, "%s:%s:%.1f ", p->conf->name, state, delay);
}

static struct mm_probe_conf conf = { .name = "p" };

static void check(struct probe *p, uint64_t now)
{
	probe_check(p, now, LATE, LOST, on_change, NULL);
}

static void test_late_then_recovered(void **state)
{
	struct probe p;
	changes[0] = '\0';
	probe_init(&p, &conf);
	assert_int_equal(probe_next_check(&p, LATE, LOST), UINT64_MAX);
	probe_send_started(&p, 1, 100 * S);
	probe_send_accepted(&p, 1);
	assert_int_equal(probe_next_check(&p, LATE, LOST), 102 * S);
	check(&p, 101 * S);
	assert_string_equal(changes, "");
	check(&p, 102 * S);
	assert_string_equal(changes, "p:late:2.0 ");
	assert_int_equal(p.state, PROBE_LATE);
	assert_int_equal(p.late, 1);
	assert_int_equal(probe_next_check(&p, LATE, LOST), 110 * S);
	/* a second send turning late changes nothing more */
	probe_send_started(&p, 2, 103 * S);
	check(&p, 106 * S);
	assert_string_equal(changes, "p:late:2.0 ");
	assert_int_equal(p.late, 2);
	/* the first one arrives: recovered, and the pending ones up to it gone */
	probe_arrived(&p, 1, 6.5, on_change, NULL);
	assert_string_equal(changes, "p:late:2.0 p:recovered:6.5 ");
	assert_int_equal(p.state, PROBE_OK);
	assert_int_equal(p.npending, 1);
	assert_int_equal(p.received, 1);
	assert_true(p.last_delay == 6.5);
	assert_int_equal(p.delay.count, 1);
	assert_int_equal(p.delay.sum_usec, 6500000);
	/* the second, late already, turning lost later is a change */
	check(&p, 113 * S);
	assert_string_equal(changes, "p:late:2.0 p:recovered:6.5 p:lost:10.0 ");
	assert_int_equal(p.lost, 1);
	assert_int_equal(p.npending, 0);
	assert_int_equal(probe_next_check(&p, LATE, LOST), UINT64_MAX);
	probe_free(&p);
}

static void test_send_failures(void **state)
{
	struct probe p;
	changes[0] = '\0';
	probe_init(&p, &conf);
	for (uint64_t seq = 1; seq <= 3; seq++) {
		probe_send_started(&p, seq, seq * S);
		probe_send_failed(&p, seq, seq * S, on_change, NULL);
	}
	/* late at once, once */
	assert_string_equal(changes, "p:late:0.0 ");
	assert_int_equal(p.send_failures, 3);
	assert_int_equal(p.late, 3);
	assert_int_equal(p.sent, 0);
	/* never sent, so never seen: lost after lost_after, once */
	check(&p, 11 * S);
	check(&p, 13 * S);
	assert_string_equal(changes, "p:late:0.0 p:lost:10.0 ");
	assert_int_equal(p.lost, 3);
	assert_int_equal(p.late, 3);
	/* a probe arrives: recovered from lost */
	probe_send_started(&p, 4, 14 * S);
	probe_arrived(&p, 4, 0.25, on_change, NULL);
	assert_string_equal(changes, "p:late:0.0 p:lost:10.0 p:recovered:0.2 ");
	probe_free(&p);
}

static void test_straight_to_lost(void **state)
{
	struct probe p;
	changes[0] = '\0';
	probe_init(&p, &conf);
	probe_send_started(&p, 1, 0);
	/* a check long overdue: late, then lost, both told */
	check(&p, 60 * S);
	assert_string_equal(changes, "p:late:60.0 p:lost:60.0 ");
	assert_int_equal(p.late, 1);
	assert_int_equal(p.lost, 1);
	/* an arrival while ok changes nothing */
	probe_send_started(&p, 2, 61 * S);
	probe_arrived(&p, 2, 1, on_change, NULL);
	probe_send_started(&p, 3, 62 * S);
	probe_arrived(&p, 3, 1, on_change, NULL);
	assert_string_equal(changes, "p:late:60.0 p:lost:60.0 p:recovered:1.0 ");
	probe_free(&p);
}

/* A probe delivered twice, or one this run never sent (a forged seq would
 * otherwise clear every pending send up to it): counted once, or not at
 * all, and no state change. */
static void test_arrived_twice_or_never_sent(void **state)
{
	struct probe p;
	changes[0] = '\0';
	probe_init(&p, &conf);
	probe_send_started(&p, 1, 0);
	probe_send_started(&p, 2, 1 * S);
	check(&p, 3 * S);
	assert_string_equal(changes, "p:late:3.0 ");
	assert_int_equal(probe_arrival_kind(&p, 1), 0);
	assert_int_equal(probe_arrived(&p, 1, 3.5, on_change, NULL), 0);
	assert_string_equal(changes, "p:late:3.0 p:recovered:3.5 ");
	assert_int_equal(p.received, 1);
	/* the copy */
	assert_int_equal(probe_arrival_kind(&p, 1), PROBE_ARRIVED_AGAIN);
	assert_int_equal(probe_arrived(&p, 1, 9.0, on_change, NULL), PROBE_ARRIVED_AGAIN);
	assert_int_equal(p.received, 1);
	assert_int_equal(p.delay.count, 1);
	assert_true(p.last_delay == 3.5);
	/* never sent: seq 2 stays pending */
	assert_int_equal(probe_arrived(&p, 99, 1.0, on_change, NULL), PROBE_ARRIVED_NEVER_SENT);
	assert_int_equal(probe_arrived(&p, 0, 1.0, on_change, NULL), PROBE_ARRIVED_NEVER_SENT);
	assert_int_equal(p.received, 1);
	assert_int_equal(p.npending, 1);
	/* seq 2 counts when it comes */
	assert_int_equal(probe_arrived(&p, 2, 4.0, on_change, NULL), 0);
	assert_int_equal(p.received, 2);
	assert_string_equal(changes, "p:late:3.0 p:recovered:3.5 ");
	probe_free(&p);
}

/* A send this run has pending: the delay is by the monotonic clock,
 * whatever the wall clock did; else by the header's wall-clock time. */
static void test_delay_by_monotonic_clock(void **state)
{
	struct probe p;
	probe_init(&p, &conf);
	probe_send_started(&p, 1, 100 * S);
	probe_send_started(&p, 2, 101 * S);
	/* sent at wall 5000 s; the wall clock jumped an hour forward, then
	 * back behind the send */
	assert_true(probe_delay(&p, 1, 100 * S + 1500000, 8601 * S, 5000 * S) == 1.5);
	assert_true(probe_delay(&p, 2, 103 * S, 4000 * S, 5000 * S) == 2.0);
	/* not pending (given up, or never this run's): the wall clocks */
	assert_true(probe_delay(&p, 7, 103 * S, 5004 * S, 5000 * S) == 4.0);
	assert_true(probe_delay(&p, 7, 103 * S, 4000 * S, 5000 * S) == 0.0);
	/* counted seq 1 is no longer pending */
	assert_int_equal(probe_arrived(&p, 1, 1.5, on_change, NULL), 0);
	assert_true(probe_delay(&p, 1, 104 * S, 5003 * S, 5000 * S) == 3.0);
	assert_true(probe_delay(&p, 2, 104 * S, 5003 * S, 5000 * S) == 3.0);
	probe_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_late_then_recovered),
		cmocka_unit_test(test_send_failures),
		cmocka_unit_test(test_straight_to_lost),
		cmocka_unit_test(test_arrived_twice_or_never_sent),
		cmocka_unit_test(test_delay_by_monotonic_clock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
