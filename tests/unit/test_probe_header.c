/*
 * test_probe_header.c - the probe message mailmond sends and the parser
 * that finds its header again in a delivered file (what mailprocd adds on
 * top, folding, CRLF, strangers' files, malformed headers).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "mailmond/probe_msg.h"

static enum probe_parse_result parse(const char *text, struct probe_id *id, const char **why)
{
	return probe_msg_parse(text, strlen(text), id, why);
}

static void test_roundtrip(void **state)
{
	struct probe_id id = { .name = "local-1.x", .seq = 42, .sent_usec = 1764900000123456ULL,
		.run = "0123456789abcdef" }, got;
	struct buf b = BUF_INIT;
	const char *why;

	probe_msg_build(&b, &id, "mailmond@example.test", "mon@example.test", "mx.example.test");
	/* what a delivery adds in front */
	struct buf d = BUF_INIT;
	buf_puts(&d, "Return-Path: <mailmond@example.test>\nDelivered-To: mon@example.test\n"
	    "Received: from mx.example.test\n\tby mx.example.test with LMTP; now\n");
	buf_append(&d, b.data, b.len);
	assert_int_equal(probe_msg_parse(d.data, d.len, &got, &why), PROBE_FOUND);
	assert_string_equal(got.name, "local-1.x");
	assert_int_equal(got.seq, 42);
	assert_int_equal(got.sent_usec, 1764900000123456ULL);
	assert_string_equal(got.run, "0123456789abcdef");
	/* CRLF everywhere, no line starting with a dot, a blank line before the body */
	assert_null(strstr(b.data, "\n."));
	assert_non_null(strstr(b.data, "\r\n\r\n"));
	for (size_t i = 0; i < b.len; i++) {
		if (b.data[i] == '\n')
			assert_int_equal(b.data[i - 1], '\r');
	}
	buf_free(&b);
	buf_free(&d);
}

static void test_forms(void **state)
{
	struct probe_id id;
	const char *why;

	/* case of the name, blanks, order of the fields, folding */
	assert_int_equal(parse("Subject: x\nx-mailmond-probe:run=0123456789abcdef;sent=5;"
	    "\n  seq=7 ;\tname=a\n\nbody\n", &id, &why), PROBE_FOUND);
	assert_string_equal(id.name, "a");
	assert_int_equal(id.seq, 7);
	assert_int_equal(id.sent_usec, 5);
	/* a file cut short inside the header section */
	assert_int_equal(parse("X-Mailmond-Probe: name=a; seq=1; sent=2; run=0123456789abcdef",
	    &id, &why), PROBE_FOUND);
	/* not probes */
	assert_int_equal(parse("", &id, &why), PROBE_NONE);
	assert_int_equal(parse("Subject: hello\n\nX-Mailmond-Probe: name=a; seq=1; sent=2; "
	    "run=0123456789abcdef\n", &id, &why), PROBE_NONE);
	assert_int_equal(parse("X-Mailmond-Probes: name=a\n", &id, &why), PROBE_NONE);
	assert_int_equal(parse(" X-Mailmond-Probe: name=a; seq=1; sent=2; run=0123456789abcdef\n",
	    &id, &why), PROBE_NONE);
	assert_int_equal(parse("\nX-Mailmond-Probe: name=a; seq=1; sent=2; run=0123456789abcdef\n",
	    &id, &why), PROBE_NONE);
}

static void test_bad(void **state)
{
	static const struct {
		const char *value;
		const char *why;
	} cases[] = {
		{ "name=a; seq=1; sent=2", "a field is missing" },
		{ "name=a; seq=1; sent=2; run=0123456789abcdef; x=1", "unknown key" },
		{ "name=a; seq=1; seq=1; sent=2; run=0123456789abcdef", "a key given twice" },
		{ "name=a/b; seq=1; sent=2; run=0123456789abcdef", "bad name" },
		{ "name=; seq=1; sent=2; run=0123456789abcdef", "bad name" },
		{ "name=a; seq=-1; sent=2; run=0123456789abcdef", "bad seq" },
		{ "name=a; seq=12345678901234567890; sent=2; run=0123456789abcdef", "bad seq" },
		{ "name=a; seq=1; sent=2x; run=0123456789abcdef", "bad sent time" },
		{ "name=a; seq=1; sent=2; run=0123456789ABCDEF", "bad run" },
		{ "name=a; seq=1; sent=2; run=0123", "bad run" },
		{ "name=a seq=1; sent=2; run=0123456789abcdef", "expected ';'" },
		{ "name=a; seq; sent=2; run=0123456789abcdef", "expected key=value" },
		{ "", "a field is missing" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[400];
		struct probe_id id;
		const char *why = NULL;
		snprintf(text, sizeof(text), "X-Mailmond-Probe: %s\n\n", cases[i].value);
		assert_int_equal(parse(text, &id, &why), PROBE_BAD);
		assert_non_null(why);
		if (strncmp(why, cases[i].why, strlen(cases[i].why)) != 0)
			fail_msg("\"%s\": why \"%s\", want \"%s\"", cases[i].value, why, cases[i].why);
	}
	struct probe_id id;
	const char *why;
	/* twice */
	assert_int_equal(parse("X-Mailmond-Probe: name=a; seq=1; sent=2; run=0123456789abcdef\n"
	    "X-Mailmond-Probe: name=a; seq=1; sent=2; run=0123456789abcdef\n", &id, &why), PROBE_BAD);
	assert_string_equal(why, "header given twice");
	/* too long once unfolded */
	char big[2000] = "X-Mailmond-Probe: name=a;";
	for (int i = 0; i < 60; i++)
		strcat(big, "\n                  x");
	assert_int_equal(parse(big, &id, &why), PROBE_BAD);
	assert_string_equal(why, "header too long");
	/* a NUL inside the header */
	static const char nul[] = "X-Mailmond-Probe: name=a; seq=1;\0 sent=2; run=0123456789abcdef\n";
	assert_int_equal(probe_msg_parse(nul, sizeof(nul) - 1, &id, &why), PROBE_BAD);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
