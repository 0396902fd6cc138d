/*
 * test_status_table.c - the short table of `mailprocctl status` from an
 * exposition: zeros and buckets left out, the mailprocd_ prefix dropped,
 * labels as name=value (escapes undone), histograms as count and
 * average, comments and malformed lines skipped; and the whole path from
 * the figures (expose_all) to the table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "metrics/expose.h"
#include "metrics/policy_figures.h"
#include "metrics/qmgr_figures.h"
#include "metrics/receiver_figures.h"

static char *table(const char *exposition)
{
	static struct buf b;

	buf_reset(&b);
	status_table(&b, exposition);
	return b.data;
}

/* The row of name (with its labels), or NULL. */
static const char *row(const char *t, const char *name)
{
	char want[256];
	snprintf(want, sizeof(want), "\n  %s ", name);
	const char *p = strstr(t, want);
	return p ? p + 1 : NULL;
}

static void assert_row(const char *t, const char *name, const char *value)
{
	const char *r = row(t, name);
	if (r == NULL)
		fail_msg("no row %s in:\n%s", name, t);
	const char *nl = strchr(r, '\n');
	char line[512];
	snprintf(line, sizeof(line), "%.*s", (int)(nl - r), r);
	size_t n = strlen(line), m = strlen(value);
	if (n < m || strcmp(line + n - m, value) != 0 || line[n - m - 1] != ' ')
		fail_msg("row \"%s\" does not end in \" %s\"", line, value);
}

static void test_samples_and_zeros(void **state)
{
	const char *t = table(
	    "# HELP mailprocd_x_total x\n"
	    "# TYPE mailprocd_x_total counter\n"
	    "mailprocd_x_total{status=\"delivered\",action=\"maildir\"} 12\n"
	    "mailprocd_x_total{status=\"deferred\",action=\"maildir\"} 0\n"
	    "mailprocd_queue_messages{state=\"active\"} 3\n"
	    "other_metric 2.5\n");
	assert_int_equal(strncmp(t, "figures (zeros left out):\n", 26), 0);
	assert_row(t, "x_total status=delivered action=maildir", "12");
	assert_null(row(t, "x_total status=deferred action=maildir"));
	assert_row(t, "queue_messages state=active", "3");
	assert_row(t, "other_metric", "2.5");
	assert_null(strstr(t, "HELP"));
}

static void test_histogram_as_count_and_average(void **state)
{
	const char *t = table(
	    "mailprocd_d_seconds_bucket{stage=\"queue\",le=\"1\"} 3\n"
	    "mailprocd_d_seconds_bucket{stage=\"queue\",le=\"+Inf\"} 4\n"
	    "mailprocd_d_seconds_sum{stage=\"queue\"} 6\n"
	    "mailprocd_d_seconds_count{stage=\"queue\"} 4\n"
	    "mailprocd_d_seconds_bucket{stage=\"total\",le=\"+Inf\"} 0\n"
	    "mailprocd_d_seconds_sum{stage=\"total\"} 0\n"
	    "mailprocd_d_seconds_count{stage=\"total\"} 0\n"
	    "s_sum 1\n"
	    "s_count 4\n");
	assert_row(t, "d_seconds stage=queue", "count=4 avg=1.5s");
	assert_null(strstr(t, "bucket"));
	assert_null(strstr(t, "stage=total"));
	assert_null(strstr(t, "_sum"));
	assert_row(t, "s", "count=4 avg=0.25s");
}

static void test_escapes_and_garbage(void **state)
{
	const char *t = table(
	    "a{v=\"x\\\"y\\\\z\\nw\",b=\"2\"} 1\n"
	    "broken{v=\"unterminated} 1\n"
	    "nolabelvalue{v=1} 1\n"
	    "novalue\n"
	    "spaces 1 2\n"
	    "{} 1\n"
	    "\n"
	    "last 7");
	assert_row(t, "a v=x\"y\\z w b=2", "1");
	assert_null(strstr(t, "broken"));
	assert_null(strstr(t, "nolabelvalue"));
	assert_null(strstr(t, "novalue"));
	assert_null(strstr(t, "spaces"));
	assert_row(t, "last", "7");
	assert_string_equal(table(""), "figures (zeros left out):\n  (none)\n");
}

static void test_from_the_figures(void **state)
{
	static struct metrics_receiver r;
	static struct metrics_qmgr q;
	static struct metrics_policy p;
	struct metrics_view v = { &r, &q, &p };
	struct buf text = BUF_INIT;

	r.hdr.created_usec = 1700000000ull * 1000000ull;
	r.sessions_total[FP_LMTP] = 5;
	p.sessions_total = 2;
	r.rejections[FR_UNKNOWN_RECIPIENT] = 4;
	q.deliveries[FD_DELIVERED][FA_MAILDIR] = 9;
	q.queue_oldest_arrival_usec = 1700000000ull * 1000000ull;
	metrics_observe(&q.delay[FS_WORKER], &metrics_delay_bounds, 0.5);
	metrics_observe(&q.delay[FS_WORKER], &metrics_delay_bounds, 1.5);
	expose_all(&text, &v, 1700000060ull * 1000000ull);
	const char *t = table(text.data);
	assert_row(t, "build_info version=0.1.0", "1");
	assert_row(t, "start_time_seconds", "1700000000");
	assert_row(t, "sessions_started_total protocol=lmtp", "5");
	assert_row(t, "sessions_started_total protocol=policy", "2");
	assert_row(t, "rejections_total reason=unknown_recipient code=5.1.1", "4");
	assert_row(t, "deliveries_total status=delivered action=maildir", "9");
	assert_row(t, "queue_oldest_age_seconds", "60");
	assert_row(t, "delivery_delay_seconds stage=worker", "count=2 avg=1s");
	assert_null(row(t, "delivery_delay_seconds stage=queue"));
	buf_free(&text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_samples_and_zeros),
		cmocka_unit_test(test_histogram_as_count_and_average),
		cmocka_unit_test(test_escapes_and_garbage),
		cmocka_unit_test(test_from_the_figures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
