/*
 * test_parse_util.c - sizes, durations and integers as the config and the
 * database sources write them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/parse_util.h"

static void test_sizes(void **state)
{
	uint64_t v;
	assert_int_equal(parse_size("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_size("512K", &v), 0);
	assert_int_equal(v, 512 * 1024);
	assert_int_equal(parse_size("50M", &v), 0);
	assert_int_equal(v, 50 * 1024 * 1024);
	assert_int_equal(parse_size("2g", &v), 0);
	assert_int_equal(v, 2ULL * 1024 * 1024 * 1024);
	assert_int_equal(parse_size("100", &v), 0);
	assert_int_equal(v, 100);
	assert_int_equal(parse_size("", &v), -1);
	assert_int_equal(parse_size("K", &v), -1);
	assert_int_equal(parse_size("10KB", &v), -1);
	assert_int_equal(parse_size("-1", &v), -1);
	assert_int_equal(parse_size("1.5M", &v), -1);
	assert_int_equal(parse_size("10T", &v), -1);
	assert_int_equal(parse_size("18446744073709551615", &v), 0);
	assert_int_equal(parse_size("18446744073709551616", &v), -1);
	assert_int_equal(parse_size("18446744073709551615K", &v), -1);
}

static void test_durations(void **state)
{
	uint64_t v;
	assert_int_equal(parse_duration("300s", &v), 0);
	assert_int_equal(v, 300);
	assert_int_equal(parse_duration("5m", &v), 0);
	assert_int_equal(v, 300);
	assert_int_equal(parse_duration("4h", &v), 0);
	assert_int_equal(v, 4 * 3600);
	assert_int_equal(parse_duration("5d", &v), 0);
	assert_int_equal(v, 5 * 86400);
	assert_int_equal(parse_duration("7", &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(parse_duration("5x", &v), -1);
	assert_int_equal(parse_duration("m", &v), -1);
	assert_int_equal(parse_duration(" 5m", &v), -1);
	assert_int_equal(parse_duration("5m ", &v), -1);
}

static void test_uint(void **state)
{
	uint64_t v;
	assert_int_equal(parse_uint("65535", 65535, &v), 0);
	assert_int_equal(v, 65535);
	assert_int_equal(parse_uint("65536", 65535, &v), -1);
	assert_int_equal(parse_uint("1k", 65535, &v), -1);
	assert_int_equal(parse_uint("", 65535, &v), -1);
	assert_int_equal(parse_uint("+1", 65535, &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_uint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
