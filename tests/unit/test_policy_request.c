/*
 * test_policy_request.c - the Postfix policy request parser: a complete
 * request, every chunking of it, several requests in one stream, CR LF,
 * unknown attributes, and every protocol error (too many attributes, a
 * long line, control bytes, no '=', a repeated attribute, a request that
 * is not smtpd_access_policy).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "policy/policy_request.h"

static const char rcpt_request[] =
    "request=smtpd_access_policy\n"
    "protocol_state=RCPT\n"
    "protocol_name=ESMTP\n"
    "client_address=192.0.2.7\n"
    "client_name=mail.remote.test\n"
    "reverse_client_name=mail.remote.test\n"
    "helo_name=mail.remote.test\n"
    "sender=someone@remote.test\n"
    "recipient=alice@example.test\n"
    "recipient_count=0\n"
    "queue_id=\n"
    "instance=123.456.7.0\n"
    "size=12345\n"
    "etrn_domain=\n"
    "stress=\n"
    "ccert_subject=\n"
    "encryption_protocol=\n"
    "\n";

/* Feed all of text; returns the status of the last feed and how many
 * requests completed (the last one stays in *last). */
static enum policy_parse_status feed_all(struct policy_parser *p, const char *text,
    size_t len, size_t chunk, int *done, struct policy_request *last)
{
	enum policy_parse_status st = POLICY_PARSE_MORE;
	size_t off = 0;

	*done = 0;
	while (off < len) {
		size_t n = len - off < chunk ? len - off : chunk, used;
		while (n > 0) {
			st = policy_parser_feed(p, text + off, n, &used);
			if (st == POLICY_PARSE_ERROR)
				return st;
			assert_true(used <= n);
			off += used;
			n -= used;
			if (st == POLICY_PARSE_DONE) {
				policy_request_free(last);
				policy_parser_take(p, last);
				(*done)++;
			}
		}
	}
	return st;
}

static void test_complete_request(void **state)
{
	struct policy_parser p;
	struct policy_request r = { 0 };
	int done;

	policy_parser_init(&p);
	assert_int_equal(feed_all(&p, rcpt_request, sizeof(rcpt_request) - 1, 65536, &done, &r),
	    POLICY_PARSE_DONE);
	assert_int_equal(done, 1);
	assert_string_equal(policy_request_get(&r, PA_REQUEST), "smtpd_access_policy");
	assert_string_equal(policy_request_get(&r, PA_PROTOCOL_STATE), "RCPT");
	assert_string_equal(policy_request_get(&r, PA_CLIENT_ADDRESS), "192.0.2.7");
	assert_string_equal(policy_request_get(&r, PA_SENDER), "someone@remote.test");
	assert_string_equal(policy_request_get(&r, PA_RECIPIENT), "alice@example.test");
	assert_string_equal(policy_request_get(&r, PA_INSTANCE), "123.456.7.0");
	assert_string_equal(policy_request_get(&r, PA_QUEUE_ID), "");
	assert_string_equal(policy_request_get(&r, PA_SASL_USERNAME), "");  /* absent */
	assert_int_equal(policy_request_number(&r, PA_SIZE), 12345);
	assert_int_equal(policy_request_number(&r, PA_RECIPIENT_COUNT), 0);
	assert_int_equal(r.nattrs, 17);
	assert_false(policy_parser_pending(&p));
	policy_request_free(&r);
	policy_parser_free(&p);
}

/* Every chunk size gives the same request. */
static void test_every_chunking(void **state)
{
	for (size_t chunk = 1; chunk <= 64; chunk++) {
		struct policy_parser p;
		struct policy_request r = { 0 };
		int done;
		policy_parser_init(&p);
		assert_int_equal(feed_all(&p, rcpt_request, sizeof(rcpt_request) - 1, chunk,
		    &done, &r), POLICY_PARSE_DONE);
		assert_int_equal(done, 1);
		assert_string_equal(policy_request_get(&r, PA_RECIPIENT), "alice@example.test");
		assert_int_equal(policy_request_number(&r, PA_SIZE), 12345);
		policy_request_free(&r);
		policy_parser_free(&p);
	}
}

/* Pipelined: several requests in one buffer come out one at a time. */
static void test_several_requests(void **state)
{
	struct buf b = BUF_INIT;
	struct policy_parser p;
	struct policy_request r = { 0 };
	size_t off = 0, used;
	int n = 0;

	for (int i = 0; i < 5; i++)
		buf_printf(&b, "request=smtpd_access_policy\r\nprotocol_state=RCPT\r\n"
		    "recipient=r%d@example.test\r\n\r\n", i);
	policy_parser_init(&p);
	while (off < b.len) {
		enum policy_parse_status st = policy_parser_feed(&p, b.data + off, b.len - off, &used);
		off += used;
		if (st == POLICY_PARSE_DONE) {
			char want[64];
			policy_parser_take(&p, &r);
			snprintf(want, sizeof(want), "r%d@example.test", n++);
			assert_string_equal(policy_request_get(&r, PA_RECIPIENT), want);
			policy_request_free(&r);
		} else {
			assert_int_equal(st, POLICY_PARSE_MORE);
		}
	}
	assert_int_equal(n, 5);
	buf_free(&b);
	policy_parser_free(&p);
}

static void test_partial_is_pending(void **state)
{
	struct policy_parser p;
	size_t used;

	policy_parser_init(&p);
	assert_int_equal(policy_parser_feed(&p, "request=smtpd_acc", 17, &used), POLICY_PARSE_MORE);
	assert_int_equal(used, 17);
	assert_true(policy_parser_pending(&p));
	policy_parser_free(&p);
}

/* Values may hold '=' and UTF-8; unknown names are fine. */
static void test_values(void **state)
{
	static const char text[] = "request=smtpd_access_policy\nsender=a=b@x.test\n"
	    "helo_name=h\xc3\xa9.test\nx_future_attribute=1\nrecipient=\n\n";
	struct policy_parser p;
	struct policy_request r = { 0 };
	int done;

	policy_parser_init(&p);
	assert_int_equal(feed_all(&p, text, sizeof(text) - 1, 7, &done, &r), POLICY_PARSE_DONE);
	assert_string_equal(policy_request_get(&r, PA_SENDER), "a=b@x.test");
	assert_string_equal(policy_request_get(&r, PA_HELO_NAME), "h\xc3\xa9.test");
	assert_string_equal(policy_request_get(&r, PA_RECIPIENT), "");
	assert_int_equal(r.nattrs, 5);
	policy_request_free(&r);
	policy_parser_free(&p);
}

static void expect_error(const char *text, size_t len, const char *why)
{
	struct policy_parser p;
	struct policy_request r = { 0 };
	int done;

	/* whole and byte by byte */
	const size_t chunks[2] = { 1, len };
	for (int i = 0; i < 2; i++) {
		size_t chunk = chunks[i];
		policy_parser_init(&p);
		assert_int_equal(feed_all(&p, text, len, chunk, &done, &r), POLICY_PARSE_ERROR);
		assert_int_equal(done, 0);
		assert_non_null(p.error);
		assert_string_equal(p.error, why);
		policy_request_free(&r);
		policy_parser_free(&p);
	}
}

#define ERR(s, why) expect_error((s), sizeof(s) - 1, (why))

static void test_protocol_errors(void **state)
{
	ERR("request=smtpd_access_policy\nsender=a\x00@x\n\n", "a control character");
	ERR("request=smtpd_access_policy\nsender=a\x01@x\n\n", "a control character");
	ERR("request=smtpd_access_policy\nsender=a\t@x\n\n", "a control character");
	ERR("request=smtpd_access_policy\nsender=a\x7f@x\n\n", "a control character");
	ERR("request=smtpd_access_policy\nsender=a\r@x\n\n", "a control character");
	ERR("request=smtpd_access_policy\r\r\n\n", "a control character");
	ERR("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "a control character");
	ERR("request=smtpd_access_policy\nno equals sign\n\n", "a line without '='");
	ERR("request=smtpd_access_policy\n=value\n\n", "an attribute without a name");
	ERR("request=smtpd_access_policy\nsender=a\nsender=b\n\n", "an attribute twice");
	ERR("request=something_else\n\n", "not request=smtpd_access_policy");
	ERR("sender=a\n\n", "not request=smtpd_access_policy");
	ERR("\n", "empty request");
	ERR("GET / HTTP/1.0\r\n\r\n", "a line without '='");
}

static void test_line_limit(void **state)
{
	struct buf b = BUF_INIT;
	struct policy_parser p;
	struct policy_request r = { 0 };
	int done;

	/* exactly 4096 bytes, with CR LF: fine */
	buf_puts(&b, "request=smtpd_access_policy\nsender=");
	while (b.len - strlen("request=smtpd_access_policy\n") < 4096)
		buf_putc(&b, 'a');
	buf_puts(&b, "\r\n\n");
	policy_parser_init(&p);
	assert_int_equal(feed_all(&p, b.data, b.len, 1000, &done, &r), POLICY_PARSE_DONE);
	assert_int_equal(strlen(policy_request_get(&r, PA_SENDER)), 4096 - 7);
	policy_request_free(&r);
	policy_parser_free(&p);

	/* one more byte: an error, noticed before the LF */
	buf_reset(&b);
	buf_puts(&b, "request=smtpd_access_policy\nsender=");
	while (b.len - strlen("request=smtpd_access_policy\n") < 4096 + 1)
		buf_putc(&b, 'a');
	expect_error(b.data, b.len, "a line over 4096 bytes");
	buf_free(&b);
}

static void test_attribute_limit(void **state)
{
	struct buf b = BUF_INIT;
	struct policy_parser p;
	struct policy_request r = { 0 };
	int done;

	buf_puts(&b, "request=smtpd_access_policy\n");
	for (int i = 1; i < 100; i++)
		buf_printf(&b, "x%d=%d\n", i, i);
	buf_puts(&b, "\n");
	policy_parser_init(&p);
	assert_int_equal(feed_all(&p, b.data, b.len, 4096, &done, &r), POLICY_PARSE_DONE);
	assert_int_equal(r.nattrs, 100);
	policy_request_free(&r);
	policy_parser_free(&p);

	buf_reset(&b);
	buf_puts(&b, "request=smtpd_access_policy\n");
	for (int i = 1; i <= 100; i++)
		buf_printf(&b, "x%d=%d\n", i, i);
	buf_puts(&b, "\n");
	expect_error(b.data, b.len, "too many attributes");
	buf_free(&b);
}

static void test_numbers(void **state)
{
	struct policy_request r = { 0 };
	r.attr[PA_SIZE] = strdup("18446744073709551615");
	assert_true(policy_request_number(&r, PA_SIZE) == UINT64_MAX);
	free(r.attr[PA_SIZE]);
	r.attr[PA_SIZE] = strdup("18446744073709551616");
	assert_int_equal(policy_request_number(&r, PA_SIZE), 0);
	free(r.attr[PA_SIZE]);
	r.attr[PA_SIZE] = strdup("12x");
	assert_int_equal(policy_request_number(&r, PA_SIZE), 0);
	free(r.attr[PA_SIZE]);
	r.attr[PA_SIZE] = NULL;
	assert_int_equal(policy_request_number(&r, PA_SIZE), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_complete_request),
		cmocka_unit_test(test_every_chunking),
		cmocka_unit_test(test_several_requests),
		cmocka_unit_test(test_partial_is_pending),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_attribute_limit),
		cmocka_unit_test(test_numbers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
