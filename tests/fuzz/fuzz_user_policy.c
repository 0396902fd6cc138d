/*
 * fuzz_user_policy.c - libFuzzer target for users' own policies: the text
 * of ~/.mailprocd/policy through the parser, and raw bytes through the
 * decoder of the compiled form (which the sync's writer takes from a
 * process running as the user), with property checks:
 *   - the parser either compiles (0, no report) or reports as many errors
 *     as it returns, each with a line in range and a NUL-terminated text;
 *   - a compiled policy encodes, decodes and encodes again to the same
 *     bytes;
 *   - whatever the decoder accepts re-encodes to the same bytes, and can
 *     be evaluated, described and freed.
 *
 * Not part of the meson build.  Build and run by hand:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_user_policy.c src/policy/user_policy.c \
 *     src/policy/user_policy_parse.c src/policy/user_policy_codec.c \
 *     src/rules/regex.c src/lib/buf.c src/lib/xalloc.c src/lib/log.c \
 *     src/lib/parse_util.c -lpcre2-8 -o /tmp/fuzz_user_policy
 *   /tmp/fuzz_user_policy -max_len=8192 -max_total_time=120
 * The first byte picks the mode: even = a file, odd = a blob.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/user_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); abort(); } } while (0)

struct reports {
	int n;
	int max_line;
};

static void report(void *arg, int line, const char *msg)
{
	struct reports *r = arg;
	CHECK(line >= 0 && line <= r->max_line);
	CHECK(strlen(msg) < 1024);
	r->n++;
}

static void exercise(const struct user_policy *p)
{
	static const char *const senders[] = { "", "joe@spam.test", "A@B.C" };
	static const char *const clients[] = { "", "203.0.113.7", "2001:db8::1", "::ffff:10.0.0.1",
	    "garbage" };
	static const char *const helos[] = { "", "mx.dynamic.test", "aaaaaaaaaaaaaaaaaaaaaaab" };
	struct user_policy_match m;
	struct buf b = BUF_INIT;

	for (size_t i = 0; i < 3; i++) {
		user_policy_evaluate(p, senders[i], clients[i + 2 < 5 ? i + 2 : 0], helos[i], &m);
		CHECK(m.action == UPA_NONE || m.action == UPA_ALLOW || m.action == UPA_BLOCK);
		if (m.action != UPA_NONE)
			CHECK(m.line > 0 && m.rule != NULL);
		if (m.action != UPA_BLOCK)
			CHECK(m.text == NULL);
	}
	user_policy_describe(p, &b);
	buf_free(&b);
}

static void roundtrip(const struct user_policy *p)
{
	struct buf a = BUF_INIT, b = BUF_INIT;
	struct user_policy *q = NULL;
	user_policy_encode(p, &a);
	CHECK(user_policy_decode(a.data, a.len, &q) == 0);
	user_policy_encode(q, &b);
	CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
	user_policy_free(q);
	buf_free(&a);
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct user_policy *p = NULL;
	if (size == 0)
		return 0;
	const char *rest = (const char *)data + 1;
	size_t len = size - 1;
	if ((data[0] & 1) == 0) {
		struct reports r = { 0, 1 };
		for (size_t i = 0; i < len; i++)
			r.max_line += rest[i] == '\n';
		int errors = user_policy_parse(rest, len, &p, report, &r);
		if (errors == 0) {
			CHECK(p != NULL && r.n == 0);
			roundtrip(p);
			exercise(p);
		} else {
			CHECK(p == NULL && r.n > 0 && r.n <= errors + 1);
		}
	} else if (user_policy_decode(rest, len, &p) == 0) {
		roundtrip(p);
		struct buf b = BUF_INIT;
		user_policy_encode(p, &b);
		CHECK(b.len == len && memcmp(b.data, rest, len) == 0);
		buf_free(&b);
		exercise(p);
	} else {
		CHECK(p == NULL);
	}
	user_policy_free(p);
	return 0;
}
