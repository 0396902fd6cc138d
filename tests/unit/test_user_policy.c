/*
 * test_user_policy.c - the parser of ~/.mailprocd/policy, its error
 * messages, the codec of the compiled form (including hostile bytes) and
 * the verdicts: any allow wins, else the first block.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "policy/user_policy.h"
#include "lib/buf.h"
#include "rules/regex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct errors {
	int n;
	struct buf text;        /* "LINE: message\n" for each */
};

static void collect(void *arg, int line, const char *msg)
{
	struct errors *e = arg;
	e->n++;
	buf_printf(&e->text, "%d: %s\n", line, msg);
}

static struct user_policy *parse_ok(const char *text)
{
	struct user_policy *p = NULL;
	struct errors e = { 0, BUF_INIT };
	int rc = user_policy_parse(text, strlen(text), &p, collect, &e);
	if (rc != 0)
		print_message("unexpected errors:\n%s", e.text.data);
	assert_int_equal(rc, 0);
	assert_int_equal(e.n, 0);
	assert_non_null(p);
	buf_free(&e.text);
	return p;
}

/* The errors of a bad text, as "LINE: message\n" lines (caller frees). */
static char *parse_errors(const char *text, int expect_count)
{
	struct user_policy *p = (struct user_policy *)1;
	struct errors e = { 0, BUF_INIT };
	int rc = user_policy_parse(text, strlen(text), &p, collect, &e);
	assert_int_equal(rc, expect_count);
	assert_int_equal(e.n, expect_count);
	assert_null(p);
	return buf_steal(&e.text);
}

static void assert_error(const char *text, const char *expect)
{
	char *got = parse_errors(text, 1);
	if (strstr(got, expect) == NULL)
		fail_msg("expected \"%s\" in \"%s\"", expect, got);
	free(got);
}

static const char example[] =
    "# ~/.mailprocd/policy\n"
    "block    sender  *@spam.example.test   \"We do not take mail from you\"\n"
    "block    client  203.0.113.0/24\n"
    "block    helo    /\\.dynamic\\./\n"
    "allow    sender  *@friends.example.test       # allow wins over block and greylist\n"
    "greylist on                                   # off by default\n"
    "maxsize  5M\n";

static void test_spec_example(void **state)
{
	struct user_policy *p = parse_ok(example);
	struct user_policy_match m;

	assert_int_equal(user_policy_rule_count(p), 4);
	assert_int_equal(user_policy_greylist(p), 1);
	assert_int_equal(user_policy_maxsize(p), 5 * 1024 * 1024);

	user_policy_evaluate(p, "joe@SPAM.example.test", "192.0.2.1", "mx.example.test", &m);
	assert_int_equal(m.action, UPA_BLOCK);
	assert_int_equal(m.line, 2);
	assert_string_equal(m.text, "We do not take mail from you");
	assert_string_equal(m.rule, "sender *@spam.example.test");

	user_policy_evaluate(p, "a@b.test", "203.0.113.77", "x", &m);
	assert_int_equal(m.action, UPA_BLOCK);
	assert_int_equal(m.line, 3);
	assert_null(m.text);
	assert_string_equal(m.rule, "client 203.0.113.0/24");

	user_policy_evaluate(p, "a@b.test", "192.0.2.1", "host1.DYNAMIC.isp.test", &m);
	assert_int_equal(m.action, UPA_BLOCK);
	assert_int_equal(m.line, 4);
	assert_string_equal(m.rule, "helo /\\.dynamic\\./");

	/* allow wins even over an earlier matching block */
	user_policy_evaluate(p, "pal@friends.example.test", "203.0.113.5",
	    "a.dynamic.test", &m);
	assert_int_equal(m.action, UPA_ALLOW);
	assert_int_equal(m.line, 5);
	assert_string_equal(m.rule, "sender *@friends.example.test");

	user_policy_evaluate(p, "a@b.test", "192.0.2.1", "mx.b.test", &m);
	assert_int_equal(m.action, UPA_NONE);
	user_policy_free(p);
}

static void test_first_block_wins(void **state)
{
	struct user_policy *p = parse_ok(
	    "block sender a* \"first\"\n"
	    "block sender *b \"second\"\n");
	struct user_policy_match m;
	user_policy_evaluate(p, "ab", "", "", &m);
	assert_int_equal(m.action, UPA_BLOCK);
	assert_int_equal(m.line, 1);
	assert_string_equal(m.text, "first");
	user_policy_evaluate(p, "xb", "", "", &m);
	assert_int_equal(m.line, 2);
	user_policy_free(p);
}

static void test_glob(void **state)
{
	struct user_policy *p = parse_ok(
	    "block sender ?oe@x.test\n"
	    "block sender <>\n"
	    "block sender *@*.sub.test\n"
	    "block sender exact@Y.TEST\n");
	struct user_policy_match m;
	static const struct { const char *sender; int line; } cases[] = {
		{ "joe@x.test", 1 }, { "JOE@X.TEST", 1 }, { "oe@x.test", 0 },
		{ "jjoe@x.test", 0 }, { "joe@x.test.evil", 0 },
		{ "", 2 }, { "<>", 0 },
		{ "a@b.sub.test", 3 }, { "a@sub.test", 0 }, { "a@b.c.sub.test", 3 },
		{ "exact@y.test", 4 }, { "xexact@y.test", 0 }, { "exact@y.test2", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		user_policy_evaluate(p, cases[i].sender, "", "", &m);
		if (m.line != cases[i].line)
			fail_msg("sender \"%s\": line %d, expected %d", cases[i].sender, m.line,
			    cases[i].line);
	}
	user_policy_free(p);

	/* a pathological glob stays fast (no exponential backtracking) */
	p = parse_ok("block sender *a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b\n");
	char subject[4096];
	memset(subject, 'a', sizeof(subject) - 1);
	subject[sizeof(subject) - 1] = '\0';
	user_policy_evaluate(p, subject, "", "", &m);
	assert_int_equal(m.action, UPA_NONE);
	user_policy_free(p);
}

static void test_cidr(void **state)
{
	struct user_policy *p = parse_ok(
	    "block client 10.1.2.3\n"
	    "block client 2001:db8::/32\n"
	    "block client 198.51.100.128/25\n"
	    "block client ::1\n"
	    "block client 0.0.0.0/0\n");
	struct user_policy_match m;
	static const struct { const char *client; int line; } cases[] = {
		{ "10.1.2.3", 1 }, { "::ffff:10.1.2.3", 1 },
		{ "2001:db8:1::5", 2 }, { "2001:db9::1", 0 },
		{ "198.51.100.200", 3 }, { "198.51.100.127", 5 },
		{ "::1", 4 }, { "::2", 0 }, { "", 0 }, { "unknown", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		user_policy_evaluate(p, "", cases[i].client, "", &m);
		if (m.line != cases[i].line)
			fail_msg("client \"%s\": line %d, expected %d", cases[i].client, m.line,
			    cases[i].line);
	}
	user_policy_free(p);
}

static void test_helo_regex(void **state)
{
	struct user_policy *p = parse_ok("allow helo /^mx[0-9]+\\.ok\\.test$/\n"
	    "block helo /a\\/b/\n");
	struct user_policy_match m;
	user_policy_evaluate(p, "", "", "MX12.ok.test", &m);
	assert_int_equal(m.action, UPA_ALLOW);
	user_policy_evaluate(p, "", "", "mx.ok.test", &m);
	assert_int_equal(m.action, UPA_NONE);
	user_policy_evaluate(p, "", "", "xa/by", &m);
	assert_int_equal(m.action, UPA_BLOCK);
	user_policy_evaluate(p, "", "", "", &m);
	assert_int_equal(m.action, UPA_NONE);
	user_policy_free(p);

	/* a catastrophic pattern hits the match limit: no match, no hang */
	p = parse_ok("block helo /^(a+)+$/\n");
	char subject[200];
	memset(subject, 'a', sizeof(subject) - 2);
	subject[sizeof(subject) - 2] = 'b';
	subject[sizeof(subject) - 1] = '\0';
	user_policy_evaluate(p, "", "", subject, &m);
	assert_int_equal(m.action, UPA_NONE);
	user_policy_free(p);
}

static void test_empty_and_comments(void **state)
{
	struct user_policy *p = parse_ok("");
	struct user_policy_match m;
	assert_int_equal(user_policy_rule_count(p), 0);
	assert_int_equal(user_policy_greylist(p), 0);
	assert_int_equal(user_policy_maxsize(p), 0);
	user_policy_free(p);
	p = parse_ok("# only a comment\r\n\n   \t\n  # indented\ngreylist off\r\n"
	    "BLOCK Sender x@y.test\n");
	assert_int_equal(user_policy_greylist(p), 0);
	user_policy_evaluate(p, "x@y.test", "", "", &m);
	assert_int_equal(m.action, UPA_BLOCK);
	user_policy_free(p);
	user_policy_evaluate(NULL, "x@y.test", "", "", &m);
	assert_int_equal(m.action, UPA_NONE);
}

static void test_errors(void **state)
{
	assert_error("frobnicate all\n", "1: unknown keyword \"frobnicate\"");
	assert_error("\n\nblock\n", "3: block: expected sender, client or helo");
	assert_error("block recipient x\n", "1: block: unknown test \"recipient\"");
	assert_error("block sender\n", "1: block sender: missing glob");
	assert_error("allow sender x@y \"text\"\n", "1: a \"text\" goes with block only");
	assert_error("block sender x@y \"unterminated\n", "missing closing \" of the text");
	assert_error("block sender x@y \"bad\ttab\"\n", "text: the text may hold printable");
	assert_error("block sender x@y extra\n", "unexpected \"extra\" after the glob");
	assert_error("block sender x@y \"t\" more\n", "unexpected \"more\" at the end");
	assert_error("block client 300.1.1.1\n", "client \"300.1.1.1\": not an IPv4 or IPv6");
	assert_error("block client 10.0.0.1/24\n", "bits set beyond the prefix");
	assert_error("block client 10.0.0.0/33\n", "prefix length too large");
	assert_error("block client 10.0.0.0/\n", "bad prefix length");
	assert_error("block client 2001:db8::/x\n", "bad prefix length");
	assert_error("block helo mx.test\n", "helo: expected a /regex/");
	assert_error("block helo /abc\n", "missing closing / of the regex");
	assert_error("block helo /a(b/\n", "helo: bad regex /a(b/: missing closing parenthesis");
	assert_error("block helo //\n", "helo: empty regex");
	assert_error("block helo /a/x\n", "must end with white space");
	assert_error("greylist maybe\n", "greylist: expected on or off");
	assert_error("greylist on\ngreylist off\n", "2: greylist given twice (first on line 1)");
	assert_error("maxsize 5T\n", "maxsize: bad size \"5T\"");
	assert_error("maxsize 0\n", "maxsize: bad size \"0\"");
	assert_error("maxsize 1M\nmaxsize 2M\n", "2: maxsize given twice");

	/* a NUL byte inside a line */
	static const char nul[] = "greylist on\nblock sender a\0b\n";
	struct user_policy *p = NULL;
	struct errors e = { 0, BUF_INIT };
	assert_int_equal(user_policy_parse(nul, sizeof(nul) - 1, &p, collect, &e), 1);
	assert_string_equal(e.text.data, "2: NUL byte in the line\n");
	buf_free(&e.text);

	/* every broken line is reported, with its number */
	char *all = parse_errors("block x\nok\nmaxsize big\n", 3);
	assert_non_null(strstr(all, "1: block: unknown test \"x\""));
	assert_non_null(strstr(all, "2: unknown keyword \"ok\""));
	assert_non_null(strstr(all, "3: maxsize: bad size"));
	free(all);
}

static void test_limits(void **state)
{
	struct user_policy *p = NULL;
	struct errors e = { 0, BUF_INIT };
	size_t big = USER_POLICY_MAX_FILE + 1;
	char *text = malloc(big);
	memset(text, '\n', big);
	assert_int_equal(user_policy_parse(text, big, &p, collect, &e), 1);
	assert_null(p);
	assert_non_null(strstr(e.text.data, "0: file larger than 65536 bytes"));
	buf_free(&e.text);
	free(text);

	/* too many rules */
	struct buf b = BUF_INIT;
	for (int i = 0; i <= USER_POLICY_MAX_RULES; i++)
		buf_printf(&b, "block sender %d@x\n", i);
	char *got = parse_errors(b.data, 1);
	assert_non_null(strstr(got, "1001: more than 1000 rules"));
	free(got);
	buf_free(&b);

	/* too many helo regexes: each costs up to the match limit at every
	 * request, in the service's only loop */
	for (int i = 0; i < USER_POLICY_MAX_HELO_RULES; i++)
		buf_printf(&b, "block helo /^(?:x%d)?(a|aa)+(a|aa)+$/\n", i);
	user_policy_free(parse_ok(b.data));
	buf_puts(&b, "allow helo /one-more/\n");
	got = parse_errors(b.data, 1);
	assert_non_null(strstr(got, "17: more than 16 helo rules"));
	free(got);
	buf_reset(&b);

	/* too many errors: reported up to a bound, then one line */
	for (int i = 0; i < 200; i++)
		buf_puts(&b, "junk\n");
	e = (struct errors){ 0, BUF_INIT };
	int rc = user_policy_parse(b.data, b.len, &p, collect, &e);
	assert_true(rc > 50);
	assert_int_equal(e.n, 51);
	assert_non_null(strstr(e.text.data, "0: too many errors"));
	buf_free(&e.text);
	buf_free(&b);

	/* a long glob and text */
	for (int i = 0; i < USER_POLICY_MAX_PATTERN + 1; i++)
		buf_putc(&b, 'a');
	char *line = NULL;
	assert_true(asprintf(&line, "block sender %s\n", b.data) > 0);
	assert_error(line, "sender glob too long");
	free(line);
	buf_free(&b);
	for (int i = 0; i < USER_POLICY_MAX_TEXT + 1; i++)
		buf_putc(&b, 't');
	assert_true(asprintf(&line, "block sender a \"%s\"\n", b.data) > 0);
	assert_error(line, "text longer than 200 bytes");
	free(line);
	buf_free(&b);
}

static void test_codec_roundtrip(void **state)
{
	struct user_policy *p = parse_ok(example), *q = NULL;
	struct buf b = BUF_INIT, b2 = BUF_INIT;
	struct user_policy_match m;

	user_policy_encode(p, &b);
	assert_int_equal(user_policy_decode(b.data, b.len, &q), 0);
	assert_int_equal(user_policy_rule_count(q), 4);
	assert_int_equal(user_policy_greylist(q), 1);
	assert_int_equal(user_policy_maxsize(q), 5 * 1024 * 1024);
	user_policy_encode(q, &b2);
	assert_int_equal(b.len, b2.len);
	assert_memory_equal(b.data, b2.data, b.len);
	user_policy_evaluate(q, "x@spam.example.test", "", "", &m);
	assert_int_equal(m.action, UPA_BLOCK);
	assert_int_equal(m.line, 2);
	assert_string_equal(m.text, "We do not take mail from you");
	user_policy_evaluate(q, "", "203.0.113.9", "", &m);
	assert_int_equal(m.line, 3);
	user_policy_free(q);
	user_policy_free(p);
	buf_free(&b);
	buf_free(&b2);
}

/* Every truncation, every single-byte change and trailing junk: the
 * decoder returns 0 or -1, never reads past the end (ASan), and what it
 * accepts re-encodes to a valid blob. */
static void test_codec_hostile(void **state)
{
	struct user_policy *p = parse_ok(example), *q;
	struct buf b = BUF_INIT;
	user_policy_encode(p, &b);
	user_policy_free(p);

	for (size_t cut = 0; cut < b.len; cut++) {
		unsigned char *copy = malloc(cut ? cut : 1);
		memcpy(copy, b.data, cut);
		assert_int_equal(user_policy_decode(copy, cut, &q), -1);
		assert_null(q);
		free(copy);
	}
	unsigned char *copy = malloc(b.len + 1);
	memcpy(copy, b.data, b.len);
	copy[b.len] = 0;
	assert_int_equal(user_policy_decode(copy, b.len + 1, &q), -1);
	for (size_t i = 0; i < b.len; i++) {
		static const unsigned char values[] = { 0x00, 0x01, 0x02, 0x03, 0x0a, 0x22,
		    0x2f, 0x7f, 0xff };
		for (size_t v = 0; v < sizeof(values); v++) {
			memcpy(copy, b.data, b.len);
			copy[i] = values[v];
			if (user_policy_decode(copy, b.len, &q) == 0) {
				struct buf again = BUF_INIT;
				struct user_policy *r = NULL;
				user_policy_encode(q, &again);
				assert_int_equal(user_policy_decode(again.data, again.len, &r), 0);
				user_policy_free(r);
				buf_free(&again);
				user_policy_free(q);
			} else {
				assert_null(q);
			}
		}
	}
	free(copy);

	/* specific lies: a count beyond the limit, a bad CIDR, text on allow */
	static const unsigned char too_many[] = { 'M','P','U','P', 1, 0, 0,0,0,0,0,0,0,0,
	    0x03, 0xe9 };
	assert_int_equal(user_policy_decode(too_many, sizeof(too_many), &q), -1);
	static const unsigned char bad_cidr[] = { 'M','P','U','P', 1, 0, 0,0,0,0,0,0,0,0,
	    0, 1, 2, 2, 0,0,0,1, 0, 9, '1','.','2','.','3','.','4','/','8', 0, 0 };
	assert_int_equal(user_policy_decode(bad_cidr, sizeof(bad_cidr), &q), -1);
	static const unsigned char good_cidr[] = { 'M','P','U','P', 1, 0, 0,0,0,0,0,0,0,0,
	    0, 1, 2, 2, 0,0,0,1, 0, 9, '1','.','0','.','0','.','0','/','8', 0, 0 };
	assert_int_equal(user_policy_decode(good_cidr, sizeof(good_cidr), &q), 0);
	user_policy_free(q);
	static const unsigned char text_on_allow[] = { 'M','P','U','P', 1, 0, 0,0,0,0,0,0,0,0,
	    0, 1, 1, 1, 0,0,0,1, 0, 1, 'a', 0, 1, 'x' };
	assert_int_equal(user_policy_decode(text_on_allow, sizeof(text_on_allow), &q), -1);
	static const unsigned char text_on_block[] = { 'M','P','U','P', 1, 0, 0,0,0,0,0,0,0,0,
	    0, 1, 2, 1, 0,0,0,1, 0, 1, 'a', 0, 1, 'x' };
	assert_int_equal(user_policy_decode(text_on_block, sizeof(text_on_block), &q), 0);
	user_policy_free(q);
	static const unsigned char line_zero[] = { 'M','P','U','P', 1, 0, 0,0,0,0,0,0,0,0,
	    0, 1, 2, 1, 0,0,0,0, 0, 1, 'a', 0, 0 };
	assert_int_equal(user_policy_decode(line_zero, sizeof(line_zero), &q), -1);
	buf_free(&b);

	/* more helo regexes than the parser allows: a forged blob */
	for (int n = USER_POLICY_MAX_HELO_RULES; n <= USER_POLICY_MAX_HELO_RULES + 1; n++) {
		buf_append(&b, "MPUP\x01\x00\0\0\0\0\0\0\0\0", 14);
		buf_putc(&b, 0);
		buf_putc(&b, (char)n);
		for (int i = 0; i < n; i++) {
			/* block, helo, line i + 1, pattern "a", no text */
			buf_append(&b, "\x02\x03\0\0\0", 5);
			buf_putc(&b, (char)(i + 1));
			buf_append(&b, "\0\x01" "a" "\0\0", 5);
		}
		assert_int_equal(user_policy_decode(b.data, b.len, &q),
		    n <= USER_POLICY_MAX_HELO_RULES ? 0 : -1);
		user_policy_free(q);
		buf_free(&b);
	}
}

static int teardown(void **state)
{
	rule_regex_cache_clear();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_example),
		cmocka_unit_test(test_first_block_wins),
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_helo_regex),
		cmocka_unit_test(test_empty_and_comments),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_codec_roundtrip),
		cmocka_unit_test(test_codec_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
