/*
 * test_figure_labels.c - the label values of the receiver's rejection
 * reasons and of the policy service's answers: one for every enum value
 * (a reason added without its labels would give a reply without an
 * enhanced code and a broken sample), well formed, no pair twice; and
 * the exposition has one sample per reason and per answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lib/buf.h"
#include "metrics/expose.h"
#include "metrics/policy_figures.h"
#include "metrics/receiver_figures.h"

/* [a-z_]+ */
static int is_label_word(const char *s)
{
	if (s == NULL || *s == '\0')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || *s == '_'))
			return 0;
	return 1;
}

/* 4.d.d or 5.d.d (one digit each: all our codes) */
static int is_enhanced_code(const char *s)
{
	return s != NULL && strlen(s) == 5 && (s[0] == '4' || s[0] == '5') && s[1] == '.' &&
	    s[2] >= '0' && s[2] <= '9' && s[3] == '.' && s[4] >= '0' && s[4] <= '9';
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void test_rejection_labels(void **state)
{
	for (int i = 0; i < FR_COUNT; i++) {
		assert_true(is_label_word(fig_rejection_name[i]));
		assert_true(is_enhanced_code(fig_rejection_code[i]));
		for (int j = 0; j < i; j++)
			assert_string_not_equal(fig_rejection_name[i], fig_rejection_name[j]);
	}
	/* the contract's example */
	assert_string_equal(fig_rejection_name[FR_UNKNOWN_RECIPIENT], "unknown_recipient");
	assert_string_equal(fig_rejection_code[FR_UNKNOWN_RECIPIENT], "5.1.1");
}

static void test_policy_labels(void **state)
{
	for (int i = 0; i < FPA_COUNT; i++) {
		const char *a = fig_policy_action[i];
		assert_non_null(a);
		assert_true(strcmp(a, "dunno") == 0 || strcmp(a, "reject") == 0 ||
		    strcmp(a, "defer") == 0);
		assert_true(is_label_word(fig_policy_reason[i]));
		for (int j = 0; j < i; j++)
			assert_false(strcmp(a, fig_policy_action[j]) == 0 &&
			    strcmp(fig_policy_reason[i], fig_policy_reason[j]) == 0);
	}
}

static void test_one_sample_each(void **state)
{
	static struct metrics_receiver r;
	static struct metrics_policy p;
	struct buf b = BUF_INIT;

	r.rejections[FR_QUEUE_FULL] = 7;
	p.answers[FPA_GREYLIST] = 3;
	expose_receiver(&b, &r, 0);
	expose_policy(&b, &p, 0);
	assert_int_equal(count(b.data, "\nmailprocd_rejections_total{"), FR_COUNT);
	assert_int_equal(count(b.data, "\nmailprocd_policy_answers_total{"), FPA_COUNT);
	assert_non_null(strstr(b.data,
	    "\nmailprocd_rejections_total{reason=\"queue_full\",code=\"4.3.1\"} 7\n"));
	assert_non_null(strstr(b.data,
	    "\nmailprocd_policy_answers_total{action=\"defer\",reason=\"greylist\"} 3\n"));
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rejection_labels),
		cmocka_unit_test(test_policy_labels),
		cmocka_unit_test(test_one_sample_each),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
