/*
 * test_client_count.c - the per-address session counts: IPv4 and IPv6
 * keys, counts up and down, and lookups that stay right through growth
 * and the backward-shift deletion, checked against a plain array.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "receiver/client_count.h"

static struct client_key v4(const char *addr)
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	struct client_key k;
	assert_int_equal(inet_pton(AF_INET, addr, &in.sin_addr), 1);
	assert_int_equal(client_key_from((struct sockaddr *)&in, sizeof(in), &k), 0);
	return k;
}

static struct client_key v6(const char *addr)
{
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	struct client_key k;
	assert_int_equal(inet_pton(AF_INET6, addr, &in6.sin6_addr), 1);
	assert_int_equal(client_key_from((struct sockaddr *)&in6, sizeof(in6), &k), 0);
	return k;
}

static void test_keys(void **state)
{
	struct client_key a = v4("192.0.2.1"), b = v6("::ffff:192.0.2.1"), c = v6("2001:db8::1");
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	struct client_key k;

	assert_memory_equal(&a, &b, sizeof(a));        /* v4-mapped is the same client */
	assert_memory_not_equal(&a, &c, sizeof(a));
	assert_int_equal(client_key_from((struct sockaddr *)&un, sizeof(un), &k), -1);
}

static void test_counts(void **state)
{
	struct client_count *t = client_count_new();
	struct client_key a = v4("192.0.2.1"), b = v6("2001:db8::1");

	assert_int_equal(client_count_get(t, &a), 0);
	client_count_add(t, &a);
	client_count_add(t, &a);
	client_count_add(t, &b);
	assert_int_equal(client_count_get(t, &a), 2);
	assert_int_equal(client_count_get(t, &b), 1);
	assert_int_equal(client_count_addresses(t), 2);
	client_count_remove(t, &a);
	client_count_remove(t, &b);
	client_count_remove(t, &b);                     /* never below zero */
	assert_int_equal(client_count_get(t, &a), 1);
	assert_int_equal(client_count_get(t, &b), 0);
	assert_int_equal(client_count_addresses(t), 1);
	client_count_free(t);
}

#define N 5000

/* Random adds and removes over many addresses, compared with an array. */
static void test_against_array(void **state)
{
	struct client_count *t = client_count_new();
	static uint32_t expect[N];
	static struct client_key keys[N];
	size_t distinct = 0;

	memset(expect, 0, sizeof(expect));
	srand(42);
	for (int i = 0; i < N; i++) {
		memset(&keys[i], 0, sizeof(keys[i]));
		keys[i].addr[0] = 0x20;
		memcpy(keys[i].addr + 12, &i, sizeof(i));
	}
	for (int round = 0; round < 200000; round++) {
		int i = rand() % N;
		if (rand() % 3 != 0 || expect[i] == 0) {
			distinct += expect[i] == 0;
			expect[i]++;
			client_count_add(t, &keys[i]);
		} else {
			expect[i]--;
			distinct -= expect[i] == 0;
			client_count_remove(t, &keys[i]);
		}
		if (round % 10007 == 0) {
			for (int j = 0; j < N; j++)
				assert_int_equal(client_count_get(t, &keys[j]), expect[j]);
			assert_int_equal(client_count_addresses(t), distinct);
		}
	}
	/* and all the way down to empty */
	for (int i = 0; i < N; i++)
		while (expect[i] > 0) {
			expect[i]--;
			client_count_remove(t, &keys[i]);
			assert_int_equal(client_count_get(t, &keys[i]), expect[i]);
		}
	assert_int_equal(client_count_addresses(t), 0);
	client_count_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_against_array),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
