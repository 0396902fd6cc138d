/*
 * test_relay_reply.c - the relay's reply parser: single and multi-line
 * replies, bare LF, every split of the input, several replies in one
 * buffer, enhanced status codes and the derived ones, bounded lines and
 * line counts, malformed replies, printable report text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/smtp_client_reply.h"

/* Feed all of s in pieces of at most step bytes; returns the status of
 * the last event and counts LINE events.  Stops at DONE or BAD. */
static enum smtp_client_status feed_all(struct smtp_client_reply *r, const char *s, size_t n,
    size_t step, unsigned *lines, size_t *consumed)
{
	size_t pos = 0;
	enum smtp_client_status st = SMTP_CLIENT_MORE;

	*lines = 0;
	while (pos < n) {
		size_t len = n - pos < step ? n - pos : step, used;
		st = smtp_client_reply_feed(r, s + pos, len, &used);
		assert_true(used <= len);
		pos += used;
		if (st == SMTP_CLIENT_LINE)
			(*lines)++;
		if (st == SMTP_CLIENT_DONE || st == SMTP_CLIENT_BAD)
			break;
		if (st == SMTP_CLIENT_MORE)
			assert_int_equal(used, len);
	}
	if (consumed)
		*consumed = pos;
	return st;
}

static enum smtp_client_status parse(struct smtp_client_reply *r, const char *s)
{
	unsigned lines;
	smtp_client_reply_init(r);
	return feed_all(r, s, strlen(s), strlen(s) + 1, &lines, NULL);
}

static void test_single_line(void **state)
{
	struct smtp_client_reply r;
	char dsn[12];

	assert_int_equal(parse(&r, "250 2.0.0 Ok: queued as 123\r\n"), SMTP_CLIENT_DONE);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.enh, "2.0.0");
	assert_string_equal(r.text, "250 2.0.0 Ok: queued as 123");
	assert_string_equal(r.line_text, "2.0.0 Ok: queued as 123");
	assert_int_equal(r.nlines, 1);
	smtp_client_reply_dsn(&r, dsn, sizeof(dsn));
	assert_string_equal(dsn, "2.0.0");

	assert_int_equal(parse(&r, "354\n"), SMTP_CLIENT_DONE);   /* bare LF, no text */
	assert_int_equal(r.code, 354);
	assert_string_equal(r.text, "354");
	assert_string_equal(r.line_text, "");

	/* incomplete */
	assert_int_equal(parse(&r, "250 ok"), SMTP_CLIENT_MORE);
}

static const char ehlo[] =
	"250-mx.example.test Hello\r\n"
	"250-PIPELINING\r\n"
	"250-SIZE 10240000\r\n"
	"250-8BITMIME\r\n"
	"250 ENHANCEDSTATUSCODES\r\n";

static void test_multi_line_every_split(void **state)
{
	struct smtp_client_reply r;
	size_t n = strlen(ehlo);

	for (size_t step = 1; step <= n; step++) {
		unsigned lines;
		size_t used;
		smtp_client_reply_init(&r);
		assert_int_equal(feed_all(&r, ehlo, n, step, &lines, &used), SMTP_CLIENT_DONE);
		assert_int_equal(used, n);
		assert_int_equal(lines, 4);
		assert_int_equal(r.nlines, 5);
		assert_int_equal(r.code, 250);
		assert_string_equal(r.line_text, "ENHANCEDSTATUSCODES");
		assert_string_equal(r.text, "250-mx.example.test Hello 250-PIPELINING "
		    "250-SIZE 10240000 250-8BITMIME 250 ENHANCEDSTATUSCODES");
	}
}

static void test_line_events_carry_text(void **state)
{
	struct smtp_client_reply r;
	const char *p = ehlo;
	size_t n = strlen(ehlo), used;
	const char *want[] = { "mx.example.test Hello", "PIPELINING", "SIZE 10240000", "8BITMIME" };

	smtp_client_reply_init(&r);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(smtp_client_reply_feed(&r, p, n, &used), SMTP_CLIENT_LINE);
		assert_string_equal(r.line_text, want[i]);
		p += used;
		n -= used;
	}
	assert_int_equal(smtp_client_reply_feed(&r, p, n, &used), SMTP_CLIENT_DONE);
	assert_int_equal(used, n);
}

static void test_several_replies_in_one_buffer(void **state)
{
	/* pipelined replies arrive together: MAIL, RCPT, RCPT, DATA */
	const char *in = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <x@y>: unknown\r\n354 go\r\n";
	const int codes[] = { 250, 250, 550, 354 };
	const char *enh[] = { "2.1.0", "2.1.5", "5.1.1", "" };
	struct smtp_client_reply r;
	size_t n = strlen(in), used;

	smtp_client_reply_init(&r);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(smtp_client_reply_feed(&r, in, n, &used), SMTP_CLIENT_DONE);
		assert_int_equal(r.code, codes[i]);
		assert_string_equal(r.enh, enh[i]);
		in += used;
		n -= used;
	}
	assert_int_equal(n, 0);
}

static void test_enhanced_codes(void **state)
{
	static const struct { const char *reply; const char *enh; const char *dsn; } t[] = {
		{ "550 5.1.1 <x>: user unknown\r\n", "5.1.1", "5.1.1" },
		{ "550 user unknown\r\n", "", "5.0.0" },
		{ "451 4.3.0 try later\r\n", "4.3.0", "4.3.0" },
		{ "452 too many\r\n", "", "4.0.0" },
		{ "250 ok\r\n", "", "2.0.0" },
		{ "550 4.1.1 class does not match\r\n", "4.1.1", "5.0.0" },
		{ "550 5.1.1234 too many digits\r\n", "", "5.0.0" },
		{ "550 5.1.1x glued\r\n", "", "5.0.0" },
		{ "550 5..1 empty\r\n", "", "5.0.0" },
		{ "550 3.1.1 bad class\r\n", "", "5.0.0" },
		{ "550 5.1.1\r\n", "5.1.1", "5.1.1" },
		{ "554 5.7.1\tx\r\n", "", "5.0.0" },
		{ "550-5.2.2 mailbox full\r\n550 5.2.2 really\r\n", "5.2.2", "5.2.2" },
		{ "550 5.100.999 big\r\n", "5.100.999", "5.100.999" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct smtp_client_reply r;
		char dsn[12];
		assert_int_equal(parse(&r, t[i].reply), SMTP_CLIENT_DONE);
		assert_string_equal(r.enh, t[i].enh);
		smtp_client_reply_dsn(&r, dsn, sizeof(dsn));
		assert_string_equal(dsn, t[i].dsn);
	}
}

static void test_malformed(void **state)
{
	static const char *bad[] = {
		"25O ok\r\n",           /* not digits */
		"2500 ok\r\n",          /* no separator after the code */
		"250_ok\r\n",
		"25\r\n",               /* too short */
		"\r\n",                 /* empty line */
		"150 one-xx\r\n",       /* class 1 */
		"650 x\r\n",            /* class 6 */
		"050 x\r\n",
		"250-first\r\n251 second\r\n",  /* code changes */
		"hello there\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct smtp_client_reply r;
		size_t used;
		assert_int_equal(parse(&r, bad[i]), SMTP_CLIENT_BAD);
		assert_non_null(r.error);
		/* stays bad */
		assert_int_equal(smtp_client_reply_feed(&r, "250 ok\r\n", 8, &used), SMTP_CLIENT_BAD);
	}
}

static void test_line_length_bound(void **state)
{
	size_t max = SMTP_CLIENT_LINE_MAX;
	char *s = malloc(max + 8);
	struct smtp_client_reply r;
	unsigned lines;

	/* exactly the maximum, with CRLF: fine, in any split */
	memset(s, 'x', max);
	memcpy(s, "250 ", 4);
	memcpy(s + max, "\r\n", 2);
	for (size_t step = 1; step < 5000; step += 997) {
		smtp_client_reply_init(&r);
		assert_int_equal(feed_all(&r, s, max + 2, step, &lines, NULL), SMTP_CLIENT_DONE);
		assert_int_equal(strlen(r.text), SMTP_CLIENT_TEXT_MAX - 1);     /* cut */
	}
	/* one more byte: refused, also when it never ends */
	memset(s, 'x', max + 1);
	memcpy(s, "250 ", 4);
	memcpy(s + max + 1, "\r\n", 2);
	smtp_client_reply_init(&r);
	assert_int_equal(feed_all(&r, s, max + 3, 7, &lines, NULL), SMTP_CLIENT_BAD);
	smtp_client_reply_init(&r);
	assert_int_equal(feed_all(&r, s, max + 1, max + 1, &lines, NULL), SMTP_CLIENT_MORE);
	size_t used;
	assert_int_equal(smtp_client_reply_feed(&r, "yy", 2, &used), SMTP_CLIENT_BAD);
	free(s);
}

static void test_line_count_bound(void **state)
{
	char buf[16 * (SMTP_CLIENT_LINES_MAX + 2)];
	struct smtp_client_reply r;
	unsigned lines;
	size_t n = 0;

	for (int i = 0; i < SMTP_CLIENT_LINES_MAX - 1; i++)
		n += (size_t)sprintf(buf + n, "250-line%d\r\n", i);
	size_t before_last = n;
	n += (size_t)sprintf(buf + n, "250 last\r\n");
	smtp_client_reply_init(&r);
	assert_int_equal(feed_all(&r, buf, n, n, &lines, NULL), SMTP_CLIENT_DONE);
	assert_int_equal(r.nlines, SMTP_CLIENT_LINES_MAX);
	assert_true(r.text_len < SMTP_CLIENT_TEXT_MAX);
	assert_int_equal(r.text[r.text_len], '\0');

	n = before_last;
	n += (size_t)sprintf(buf + n, "250-one too many\r\n250 last\r\n");
	smtp_client_reply_init(&r);
	assert_int_equal(feed_all(&r, buf, n, n, &lines, NULL), SMTP_CLIENT_BAD);
	assert_int_equal(lines, SMTP_CLIENT_LINES_MAX);
}

static void test_text_is_printable(void **state)
{
	struct smtp_client_reply r;
	const char in[] = "550 5.7.1 bad\x01\x1b[31m\xff\x80 text\0zero\r\n";

	smtp_client_reply_init(&r);
	size_t used;
	assert_int_equal(smtp_client_reply_feed(&r, in, sizeof(in) - 1, &used), SMTP_CLIENT_DONE);
	assert_int_equal(used, sizeof(in) - 1);
	assert_string_equal(r.text, "550 5.7.1 bad??[31m?? text?zero");
	for (size_t i = 0; i < r.text_len; i++)
		assert_true(r.text[i] >= 0x20 && r.text[i] < 0x7f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_multi_line_every_split),
		cmocka_unit_test(test_line_events_carry_text),
		cmocka_unit_test(test_several_replies_in_one_buffer),
		cmocka_unit_test(test_enhanced_codes),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_line_length_bound),
		cmocka_unit_test(test_line_count_bound),
		cmocka_unit_test(test_text_is_printable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
