/*
 * test_prom_text.c - the exposition format writer: family headers with
 * escaped help, samples with and without labels, label value escaping,
 * number formats, histograms (cumulative buckets, +Inf, sum in seconds,
 * count), and metrics_observe's bucket choice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "lib/buf.h"
#include "metrics/metrics.h"
#include "metrics/prom_text.h"

static void test_family_escapes_help(void **state)
{
	struct buf b = BUF_INIT;

	prom_family(&b, "x_total", "counter", "a \\ b\nc \"q\"");
	assert_string_equal(b.data, "# HELP x_total a \\\\ b\\nc \"q\"\n# TYPE x_total counter\n");
	buf_free(&b);
}

static void test_samples(void **state)
{
	struct buf b = BUF_INIT;

	prom_sample(&b, "g", NULL, 3);
	prom_sample(&b, "g", (const char *[]){ "a", "x", "b", "y", NULL }, -2.5);
	prom_sample(&b, "g", (const char *[]){ "v", "q\"\\\nz", NULL }, 0.1);
	prom_sample(&b, "g", NULL, NAN);
	prom_sample(&b, "g", NULL, INFINITY);
	prom_sample(&b, "g", NULL, -INFINITY);
	prom_sample(&b, "g", NULL, 1e300);
	prom_sample(&b, "g", NULL, 0.1 + 0.2);  /* needs all 17 digits */
	prom_sample_u64(&b, "c_total", (const char *[]){ "p", "smtp", NULL }, UINT64_MAX);
	assert_string_equal(b.data,
	    "g 3\n"
	    "g{a=\"x\",b=\"y\"} -2.5\n"
	    "g{v=\"q\\\"\\\\\\nz\"} 0.1\n"
	    "g NaN\n"
	    "g +Inf\n"
	    "g -Inf\n"
	    "g 1e+300\n"
	    "g 0.30000000000000004\n"
	    "c_total{p=\"smtp\"} 18446744073709551615\n");
	buf_free(&b);
}

static const struct metrics_bounds three = { 3, { 0.5, 1, 2.5 } };

static void test_observe_buckets(void **state)
{
	struct metrics_hist h = { 0 };

	metrics_observe(&h, &three, 0.5);       /* on a bound: that bucket */
	metrics_observe(&h, &three, 0.7);
	metrics_observe(&h, &three, 1);
	metrics_observe(&h, &three, 3);         /* beyond: +Inf only */
	metrics_observe(&h, &three, -4);        /* counts as 0 */
	metrics_observe(&h, &three, NAN);       /* counts as 0 */
	assert_int_equal(h.bucket[0], 3);
	assert_int_equal(h.bucket[1], 2);
	assert_int_equal(h.bucket[2], 0);
	assert_int_equal(h.count, 6);
	assert_int_equal(h.sum_usec, 5200000);
}

static void test_histogram(void **state)
{
	struct metrics_hist h = { 0 };
	struct buf b = BUF_INIT;

	metrics_observe(&h, &three, 0.25);
	metrics_observe(&h, &three, 2);
	metrics_observe(&h, &three, 2);
	metrics_observe(&h, &three, 10);
	prom_histogram(&b, "d_seconds", (const char *[]){ "stage", "queue", NULL }, &h, &three);
	assert_string_equal(b.data,
	    "d_seconds_bucket{stage=\"queue\",le=\"0.5\"} 1\n"
	    "d_seconds_bucket{stage=\"queue\",le=\"1\"} 1\n"
	    "d_seconds_bucket{stage=\"queue\",le=\"2.5\"} 3\n"
	    "d_seconds_bucket{stage=\"queue\",le=\"+Inf\"} 4\n"
	    "d_seconds_sum{stage=\"queue\"} 14.25\n"
	    "d_seconds_count{stage=\"queue\"} 4\n");
	buf_reset(&b);
	prom_histogram(&b, "s", NULL, &h, &three);
	assert_non_null(strstr(b.data, "s_bucket{le=\"+Inf\"} 4\ns_sum 14.25\ns_count 4\n"));
	buf_free(&b);
}

/* A reader racing an observation: +Inf is never below a finite bucket. */
static void test_histogram_count_behind_buckets(void **state)
{
	struct metrics_hist h = { 0 };
	struct buf b = BUF_INIT;

	h.bucket[0] = 2;
	h.count = 1;
	prom_histogram(&b, "r", NULL, &h, &three);
	assert_non_null(strstr(b.data, "r_bucket{le=\"+Inf\"} 2\n"));
	assert_non_null(strstr(b.data, "r_count 2\n"));
	buf_free(&b);
}

static void test_contract_bounds(void **state)
{
	assert_int_equal(metrics_delay_bounds.n, 16);
	assert_true(metrics_delay_bounds.le[0] == 0.01);
	assert_true(metrics_delay_bounds.le[15] == 86400);
	assert_int_equal(metrics_spam_bounds.n, 12);
	assert_true(metrics_spam_bounds.le[0] == 0.05);
	assert_true(metrics_spam_bounds.le[11] == 120);
	for (int i = 1; i < metrics_delay_bounds.n; i++)
		assert_true(metrics_delay_bounds.le[i] > metrics_delay_bounds.le[i - 1]);
	for (int i = 1; i < metrics_spam_bounds.n; i++)
		assert_true(metrics_spam_bounds.le[i] > metrics_spam_bounds.le[i - 1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_family_escapes_help),
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_observe_buckets),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_histogram_count_behind_buckets),
		cmocka_unit_test(test_contract_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
