/*
 * test_mime.c - the MIME analyser on real-world style messages: folded
 * and RFC 2047 encoded headers, multipart/alternative and nested
 * multipart/mixed bodies, charsets, truncation at the body limit, and
 * hostile structure (bad boundaries, junk, deep nesting, huge header
 * sections) that must parse in linear time without crashing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "mime/mime.h"

#define BIG (1024 * 1024)

static struct mime_message m;

static void parse_n(const char *s, size_t len, size_t limit, int flags)
{
	mime_message_free(&m);
	assert_int_equal(mime_parse(s, len, limit, flags, &m), 0);
	assert_non_null(m.body_text);
	assert_int_equal(strlen(m.body_text), m.body_text_len);
	assert_true(m.body_text_len <= limit);
}

static void parse(const char *s)
{
	parse_n(s, strlen(s), BIG, 0);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int valid_utf8(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		size_t k;
		unsigned int cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			k = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 4;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (i + k > n)
			return 0;
		for (size_t j = 1; j < k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if ((k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k;
	}
	return 1;
}

/* Every header is clean UTF-8 without control bytes, trimmed. */
static void check_headers_clean(void)
{
	for (size_t i = 0; i < m.nheaders; i++) {
		const char *v = m.headers[i].value;
		size_t n = strlen(v);
		assert_true(valid_utf8(v, n));
		for (size_t j = 0; j < n; j++) {
			unsigned char c = (unsigned char)v[j];
			assert_true(c == '\t' || (c >= 0x20 && c != 0x7f));
		}
		if (n > 0) {
			assert_true(v[0] != ' ' && v[0] != '\t');
			assert_true(v[n - 1] != ' ' && v[n - 1] != '\t');
		}
		assert_true(m.headers[i].name[0] != '\0');
	}
}

static void test_plain_message(void **state)
{
	parse("Return-Path: <a@example.test>\n"
	    "From: Alice <a@example.test>\n"
	    "Subject:   hello there  \n"
	    "\n"
	    "Hello world\n"
	    "second line\n");
	assert_int_equal(m.nheaders, 3);
	assert_string_equal(m.headers[0].name, "Return-Path");
	assert_string_equal(m.headers[2].value, "hello there");
	assert_string_equal(mime_header_first(&m, "subject"), "hello there");
	assert_string_equal(mime_header_first(&m, "FROM"), "Alice <a@example.test>");
	assert_null(mime_header_first(&m, "To"));
	assert_string_equal(m.body_text, "Hello world\nsecond line\n");
	assert_int_equal(m.body_truncated, 0);

	/* CRLF line ends give the same result. */
	parse("From: Alice <a@example.test>\r\nSubject: hello\r\n\r\nHello world\r\nline 2\r\n");
	assert_int_equal(m.nheaders, 2);
	assert_string_equal(mime_header_first(&m, "Subject"), "hello");
	assert_string_equal(m.body_text, "Hello world\nline 2\n");

	/* Empty input. */
	parse_n("", 0, BIG, 0);
	assert_int_equal(m.nheaders, 0);
	assert_null(m.headers);
	assert_string_equal(m.body_text, "");
}

static void test_folded_headers(void **state)
{
	parse("Subject: This is\n a folded\n\tsubject   \n"
	    "X-Long: a\r\n  b\r\n"
	    "Received: from mx.example.test (mx.example.test [192.0.2.1])\n"
	    "\tby mail.example.test with ESMTP id 123\n"
	    "\tfor <bob@example.test>; Mon, 1 Jan 2024 00:00:00 +0000\n"
	    "X-Empty:\n"
	    "X-Spaces:    \n"
	    "Subject: second\n"
	    "Obsolete  : spaced name\n"
	    "\n"
	    "body");
	assert_int_equal(m.nheaders, 7);
	assert_string_equal(m.headers[0].value, "This is a folded\tsubject");
	assert_string_equal(m.headers[1].value, "a  b");
	assert_string_equal(m.headers[2].value,
	    "from mx.example.test (mx.example.test [192.0.2.1])\tby mail.example.test "
	    "with ESMTP id 123\tfor <bob@example.test>; Mon, 1 Jan 2024 00:00:00 +0000");
	assert_string_equal(m.headers[3].value, "");
	assert_string_equal(m.headers[4].value, "");
	/* First one wins. */
	assert_string_equal(mime_header_first(&m, "SUBJECT"), "This is a folded\tsubject");
	assert_string_equal(m.headers[6].name, "Obsolete");
	assert_string_equal(m.headers[6].value, "spaced name");
	assert_string_equal(m.body_text, "body");
	check_headers_clean();
}

static void test_rfc2047(void **state)
{
	parse("Subject: =?UTF-8?B?w6l0w6kgZMOpasOg?=\n"
	    "X-Q: =?ISO-8859-1?Q?Caf=E9_cr=E8me?=\n"
	    /* Adjacent words joined, also across a fold. */
	    "X-Adj: =?utf-8?q?a?= =?utf-8?q?b?=\n  =?utf-8?q?c?= d\n"
	    /* A character split across two words in the same charset. */
	    "X-Split: =?UTF-8?B?ww==?= =?UTF-8?B?qXQ=?=\n"
	    /* Words and text: the blanks next to text stay. */
	    "X-Mixed: Re: =?iso-8859-1?q?na=EFve?= text =?utf-8?q?=E2=82=AC?=!\n"
	    "X-Koi: =?KOI8-R?B?8NLJ18XU?=\n"
	    "X-Jis: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\n"
	    "X-Cp1252: =?windows-1252?Q?=93quoted=94_=80?=\n"
	    "X-Unknown: =?x-no-such-charset?Q?abc?=\n"
	    "X-Broken: =?utf-8?Q?broken and =?utf-8?X?bad?= and =?" "?=\n"
	    "X-Lang: =?utf-8*en?q?lang?=\n"
	    "X-Lower: =?utf-8?b?w6k?=\n"
	    "X-Evil-Name: =?../../etc/passwd?q?x?= =?UTF-8//TRANSLIT?q?y?=\n"
	    "\n");
	assert_string_equal(mime_header_first(&m, "Subject"), "été déjà");
	assert_string_equal(mime_header_first(&m, "X-Q"), "Café crème");
	assert_string_equal(mime_header_first(&m, "X-Adj"), "abc d");
	assert_string_equal(mime_header_first(&m, "X-Split"), "ét");
	assert_string_equal(mime_header_first(&m, "X-Mixed"), "Re: naïve text €!");
	assert_string_equal(mime_header_first(&m, "X-Koi"), "Привет");
	assert_string_equal(mime_header_first(&m, "X-Jis"), "こんにちは");
	assert_string_equal(mime_header_first(&m, "X-Cp1252"), "\xe2\x80\x9cquoted\xe2\x80\x9d \xe2\x82\xac");
	assert_string_equal(mime_header_first(&m, "X-Unknown"), "abc");
	assert_string_equal(mime_header_first(&m, "X-Broken"),
	    "=?utf-8?Q?broken and =?utf-8?X?bad?= and =?" "?=");
	assert_string_equal(mime_header_first(&m, "X-Lang"), "lang");
	assert_string_equal(mime_header_first(&m, "X-Lower"), "é");
	/* Names iconv must not see do not make encoded words. */
	assert_string_equal(mime_header_first(&m, "X-Evil-Name"),
	    "=?../../etc/passwd?q?x?= =?UTF-8//TRANSLIT?q?y?=");
	check_headers_clean();
}

static void test_header_controls(void **state)
{
	static const char msg[] = "X-Ctl: a\x01" "b\0c\x7f" "d\rx\n"
	    "X-Enc: =?utf-8?q?x=00y=0Az=09t?=\n"
	    "X-Raw: caf\xe9 \xff\xfe ok \xc3\xa9\n"
	    "X-Trail: =?utf-8?q?_pad_?=\n"
	    "\n";
	parse_n(msg, sizeof(msg) - 1, BIG, 0);
	assert_string_equal(mime_header_first(&m, "X-Ctl"), "a b c d x");
	assert_string_equal(mime_header_first(&m, "X-Enc"), "x y z\tt");
	assert_string_equal(mime_header_first(&m, "X-Raw"),
	    "caf\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd ok \xc3\xa9");
	assert_string_equal(mime_header_first(&m, "X-Trail"), "pad");
	check_headers_clean();
}

static const char alternative[] =
    "From: shop@example.test\n"
    "Subject: =?UTF-8?Q?Gro=C3=9Fe_Auswahl?=\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/alternative;\n"
    "\tboundary=\"----=_Part_1_2.3\"\n"
    "\n"
    "This is a multi-part message in MIME format.\n"
    "\n"
    "------=_Part_1_2.3\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Gr=C3=BC=C3=9Fe aus K=C3=B6ln, this line is long and has a soft =\n"
    "break.   \n"
    "a=3Db\n"
    "------=_Part_1_2.3\n"
    "Content-Type: text/html; charset=\"UTF-8\"\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "PHA+SGVsbG8gPGI+d8O2cmxkPC9i\n"
    "PjwvcD4NCjxwPmxpbmUyPC9wPg==\n"
    "------=_Part_1_2.3--\n"
    "epilogue is not text\n";

static void test_alternative(void **state)
{
	parse(alternative);
	assert_string_equal(mime_header_first(&m, "Subject"), "Große Auswahl");
	assert_string_equal(m.body_text,
	    "Grüße aus Köln, this line is long and has a soft break.\n"
	    "a=b\n"
	    "<p>Hello <b>wörld</b></p>\n<p>line2</p>");
	assert_int_equal(m.body_truncated, 0);

	/* The same with CRLF line ends. */
	struct buf b = BUF_INIT;
	for (const char *p = alternative; *p; p++) {
		if (*p == '\n')
			buf_putc(&b, '\r');
		buf_putc(&b, *p);
	}
	parse_n(b.data, b.len, BIG, 0);
	assert_string_equal(m.body_text,
	    "Grüße aus Köln, this line is long and has a soft break.\n"
	    "a=b\n"
	    "<p>Hello <b>wörld</b></p>\n<p>line2</p>");
	buf_free(&b);

	/* Headers only: no body work. */
	parse_n(alternative, strlen(alternative), BIG, MIME_HEADERS_ONLY);
	assert_int_equal(m.nheaders, 4);
	assert_string_equal(m.body_text, "");
	assert_int_equal(m.body_text_len, 0);
}

static void test_nested_mixed(void **state)
{
	parse("From: a@example.test\n"
	    "Content-Type: multipart/mixed; boundary=outer\n"
	    "\n"
	    "--outer\n"
	    "Content-Type: multipart/alternative; boundary=\"inner\"\n"
	    "\n"
	    "--inner\n"
	    "Content-Type: text/plain; charset=iso-8859-2\n"
	    "Content-Transfer-Encoding: 8bit\n"
	    "\n"
	    "\xaf\xf3\xb3w\n"
	    "--inner\n"
	    "Content-Type: text/html\n"
	    "\n"
	    "<b>html</b>\n"
	    "--inner--\n"
	    "--outer\n"
	    "Content-Type: application/pdf; name=\"invoice.pdf\"\n"
	    "Content-Disposition: attachment; filename=\"invoice.pdf\"\n"
	    "Content-Transfer-Encoding: base64\n"
	    "\n"
	    "JVBERi0xLjQgU0VDUkVUUERGREFUQSBiaW5hcnkAAQI=\n"
	    "--outer\n"
	    "Content-Type: image/png\n"
	    "Content-Transfer-Encoding: base64\n"
	    "\n"
	    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk\n"
	    "--outer\n"
	    "Content-Type: text/plain; name=\"notes.txt\"\n"
	    "Content-Disposition: attachment; filename=\"notes.txt\"\n"
	    "Content-Transfer-Encoding: base64\n"
	    "\n"
	    "dGV4dCBhdHRhY2htZW50DQo=\n"
	    "--outer\n"
	    "Content-Type: message/rfc822\n"
	    "\n"
	    "From: inner@example.test\n"
	    "Subject: forwarded\n"
	    "Content-Type: text/plain; charset=KOI8-R\n"
	    "Content-Transfer-Encoding: base64\n"
	    "\n"
	    "8NLJ18XU\n"
	    "--outer--\n");
	assert_int_equal(m.nheaders, 2);
	assert_string_equal(m.body_text,
	    "Żółw\n<b>html</b>\ntext attachment\n\nПривет");
	assert_null(strstr(m.body_text, "SECRET"));
	assert_null(strstr(m.body_text, "JVBER"));
	assert_null(strstr(m.body_text, "iVBOR"));
	/* Headers of parts and of the forwarded message are not top-level. */
	assert_null(mime_header_first(&m, "Subject"));
}

static void test_truncation(void **state)
{
	const char *msg = "Subject: t\n\n0123456789abcdefghij";
	parse_n(msg, strlen(msg), 10, 0);
	assert_string_equal(m.body_text, "0123456789");
	assert_int_equal(m.body_text_len, 10);
	assert_int_equal(m.body_truncated, 1);

	/* Exactly the limit is not truncated. */
	parse_n(msg, strlen(msg), 20, 0);
	assert_string_equal(m.body_text, "0123456789abcdefghij");
	assert_int_equal(m.body_truncated, 0);

	parse_n(msg, strlen(msg), 0, 0);
	assert_string_equal(m.body_text, "");
	assert_int_equal(m.body_truncated, 1);

	/* Never in the middle of a character. */
	msg = "Subject: t\n\n\xc3\xa9\xc3\xa9\xc3\xa9";
	parse_n(msg, strlen(msg), 5, 0);
	assert_string_equal(m.body_text, "\xc3\xa9\xc3\xa9");
	assert_int_equal(m.body_truncated, 1);

	/* The joining newline counts; a part that does not fit is cut. */
	parse_n(alternative, strlen(alternative), 60, 0);
	assert_int_equal(m.body_text_len, 60);
	assert_int_equal(m.body_truncated, 1);
	assert_memory_equal(m.body_text, "Grüße aus Köln", strlen("Grüße aus Köln"));
	assert_true(valid_utf8(m.body_text, m.body_text_len));

	/* A huge base64 text part stops early with a small limit. */
	struct buf b = BUF_INIT;
	buf_puts(&b, "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n");
	for (int i = 0; i < 200000; i++)
		buf_puts(&b, "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\n");
	double t0 = now();
	parse_n(b.data, b.len, 1000, 0);
	double t1 = now();
	assert_int_equal(m.body_text_len, 1000);
	assert_int_equal(m.body_truncated, 1);
	assert_int_equal(strspn(m.body_text, "A"), 1000);
	assert_true(t1 - t0 < 0.1);
	buf_free(&b);
}

static void test_malformed_boundaries(void **state)
{
	/* Unquoted boundary with tspecials, delimiter lines with trailing
	 * blanks, boundary-like lines that are not delimiters (exact match,
	 * not prefix), and a part without a blank line after its headers. */
	parse("Content-Type: multipart/mixed; boundary=----=_NextPart_000 (comment)\n"
	    "\n"
	    "preamble\n"
	    "------=_NextPart_000   \n"
	    "Content-Type: text/plain\n"
	    "\n"
	    "one\n"
	    "--not-the-boundary\n"
	    "------=_NextPart_000junk\n"
	    "------=_NextPart_000\t\r\n"
	    "\n"
	    "two\n"
	    "------=_NextPart_000\n"
	    "Content-Type: text/plain\n"
	    "three, no blank line above\n"
	    "------=_NextPart_000--  \n"
	    "epilogue\n");
	assert_string_equal(m.body_text,
	    "one\n--not-the-boundary\n------=_NextPart_000junk\ntwo\nthree, no blank line above");

	/* multipart without boundary: shown as text, not hidden. */
	parse("Content-Type: multipart/mixed\n\n--x\nContent-Type: text/plain\n\nhidden?\n");
	assert_string_equal(m.body_text, "--x\nContent-Type: text/plain\n\nhidden?\n");

	/* A boundary longer than any real one: the same. */
	char big[400];
	memset(big, 'b', 300);
	big[300] = '\0';
	struct buf b = BUF_INIT;
	buf_printf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\n\n--%s\n\nx\n", big, big);
	parse_n(b.data, b.len, BIG, 0);
	assert_non_null(strstr(m.body_text, "x\n"));
	buf_free(&b);

	/* RFC 2231 boundary; charset param in odd case; duplicates: first wins. */
	parse("Content-Type: multipart/mixed; BOUNDARY*=us-ascii''a%20b; boundary*=zz\n\n"
	    "--a b\nContent-Type: text/plain; CHARSET=\"iso-8859-1\"; charset=utf-8\n\n\xe9t\xe9\n--a b--\n");
	assert_string_equal(m.body_text, "été");

	/* Declared boundary never used: only a preamble, nothing to show. */
	parse("Content-Type: multipart/mixed; boundary=aaa\n\n--bbb\n\nhello\n");
	assert_string_equal(m.body_text, "");

	/* Garbage content types. */
	parse("Content-Type: ;;;\"\\(((\n\nplain\n");
	assert_string_equal(m.body_text, "plain\n");
	parse("Content-Type: multipart/mixed; boundary=\"unterminated\n\n--unterminated\n\nx\n");
	assert_string_equal(m.body_text, "x\n");
}

static void test_missing_final_boundary(void **state)
{
	parse("Content-Type: multipart/mixed; boundary=b1\n"
	    "\n"
	    "--b1\n"
	    "Content-Type: text/plain\n"
	    "\n"
	    "first\n"
	    "--b1\n"
	    "Content-Type: text/plain\n"
	    "Content-Transfer-Encoding: quoted-printable\n"
	    "\n"
	    "last=20part\n");
	assert_string_equal(m.body_text, "first\nlast part\n");

	/* The outer boundary closes an inner multipart left open. */
	parse("Content-Type: multipart/mixed; boundary=out\n"
	    "\n"
	    "--out\n"
	    "Content-Type: multipart/alternative; boundary=in\n"
	    "\n"
	    "--in\n"
	    "\n"
	    "inner text\n"
	    "--out\n"
	    "Content-Type: text/plain\n"
	    "\n"
	    "after\n"
	    "--in\n"
	    "\n"
	    "not a boundary any more\n"
	    "--out--\n");
	assert_string_equal(m.body_text, "inner text\nafter\n--in\n\nnot a boundary any more");

	/* Headers of a part cut by the end of the message. */
	parse("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/pl");
	assert_string_equal(m.body_text, "");
}

static void test_body_charsets(void **state)
{
	static const char msg[] = "Content-Type: multipart/mixed; boundary=b\n\n"
	    "--b\nContent-Type: text/plain; charset=utf-16\nContent-Transfer-Encoding: base64\n\n"
	    "//5oAGkA\n"
	    "--b\nContent-Type: text/plain; charset=utf-8\n\nbad \xff\xc3 utf8 \xed\xa0\x80 nul\0 x\n"
	    "--b\nContent-Type: text/plain; charset=\"x-unheard-of\"\n\nstill text\n"
	    "--b\nContent-Type: text/plain; charset=euc-jp\nContent-Transfer-Encoding: quoted-printable\n\n"
	    "=A4=B3=A4=F3 =FF=FF\n"
	    "--b\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n"
	    "--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
	    "bGluZTENCmxpbmUyDQo=\n"
	    "--b--\n";
	parse_n(msg, sizeof(msg) - 1, BIG, 0);
	assert_string_equal(m.body_text,
	    "hi\n"
	    "bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd nul  x\n"
	    "still text\n"
	    "\xe3\x81\x93\xe3\x82\x93 \xef\xbf\xbd\xef\xbf\xbd\n"
	    "BEGIN:VCALENDAR\n"
	    "line1\nline2\n");
	assert_true(valid_utf8(m.body_text, m.body_text_len));

	/* Found by fuzzing: glibc reads "UTF+8" as UTF-8 and passes
	 * sequences above U+10FFFF through; the output is checked. */
	parse("Content-Type: text/plain; charset=\"UTF+8\"\n\nA\xf6\xa5\xb5\xba" "B\n");
	assert_string_equal(m.body_text,
	    "A\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "B\n");
}

static void test_no_colon_and_no_body(void **state)
{
	/* A line that is not a header field ends the header section. */
	parse("Subject: a\nThis is not a header\nFrom: b\n\nbody\n");
	assert_int_equal(m.nheaders, 1);
	assert_string_equal(m.headers[0].value, "a");
	assert_string_equal(m.body_text, "This is not a header\nFrom: b\n\nbody\n");

	/* ...even with a colon further on, after a space in the name. */
	parse("Subject: a\nHello world: hi\n");
	assert_int_equal(m.nheaders, 1);
	assert_string_equal(m.body_text, "Hello world: hi\n");

	/* An mbox envelope line first is skipped; a leading continuation too. */
	parse("From alice@example.test Mon Jan  1 00:00:00 2024\n  stray\nSubject: s\n\nb");
	assert_int_equal(m.nheaders, 1);
	assert_string_equal(mime_header_first(&m, "Subject"), "s");
	assert_string_equal(m.body_text, "b");

	/* Header sections with no body. */
	parse("Subject: x\nFrom: y");
	assert_int_equal(m.nheaders, 2);
	assert_string_equal(m.headers[1].value, "y");
	assert_string_equal(m.body_text, "");
	parse("Subject: x\n");
	assert_int_equal(m.nheaders, 1);
	assert_string_equal(m.body_text, "");
	parse("Subject: x\r\n\r\n");
	assert_string_equal(m.body_text, "");
	parse("\nbody only\n");
	assert_int_equal(m.nheaders, 0);
	assert_string_equal(m.body_text, "body only\n");
}

/* Deterministic junk. */
static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return rnd_state >> 8;
}

static void test_binary_junk(void **state)
{
	static const char *const pieces[] = { "\n", "\r\n", "--b\n", ": ", "=?utf-8?b?",
		"?=", "=\n", "Content-Type: multipart/mixed; boundary=b\n",
		"Content-Type: text/plain; charset=utf-16\n", "Content-Transfer-Encoding: base64\n",
		"Content-Type: message/rfc822\n", " ", "\t", "\0", "\xff", "=?iso-2022-jp?q?=1B$B" };
	size_t n = 1 << 20;
	char *buf = malloc(n);
	assert_non_null(buf);

	for (int round = 0; round < 20; round++) {
		size_t i = 0;
		while (i < n) {
			if (rnd() % 4 == 0) {
				const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
				size_t k = p[0] ? strlen(p) : 1;
				if (i + k > n)
					break;
				memcpy(buf + i, p, k);
				i += k;
			} else {
				buf[i++] = (char)rnd();
			}
		}
		parse_n(buf, i, round % 2 ? 100 : BIG, 0);
		check_headers_clean();
		assert_true(valid_utf8(m.body_text, m.body_text_len));
	}
	free(buf);
}

static void test_deep_nesting(void **state)
{
	struct buf b = BUF_INIT;
	const int levels = 10000;

	buf_puts(&b, "Subject: deep\n");
	for (int i = 0; i < levels; i++) {
		buf_printf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\n\n--b%d\n", i, i);
		if (i == 1)
			buf_puts(&b, "Content-Type: text/plain\n\nshallow\n--b1\n");
	}
	buf_puts(&b, "Content-Type: text/plain\n\ndeep text\n");
	for (int i = levels - 1; i >= 0; i--)
		buf_printf(&b, "--b%d--\n", i);

	double t0 = now();
	parse_n(b.data, b.len, BIG, 0);
	double t1 = now();
	assert_string_equal(mime_header_first(&m, "Subject"), "deep");
	assert_string_equal(m.body_text, "shallow");
	assert_true(t1 - t0 < 0.5);

	/* Nested message/rfc822 is limited the same way. */
	buf_reset(&b);
	for (int i = 0; i < levels; i++)
		buf_puts(&b, "Content-Type: message/rfc822\n\n");
	buf_puts(&b, "\nbody\n");
	parse_n(b.data, b.len, BIG, 0);
	assert_string_equal(m.body_text, "");
	buf_free(&b);
}

static void test_many_parts(void **state)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "Content-Type: multipart/mixed; boundary=p\n\n");
	for (int i = 0; i < 9000; i++)
		buf_printf(&b, "--p\nContent-Type: text/plain\n\n%d\n", i);
	buf_puts(&b, "--p--\n");
	double t0 = now();
	parse_n(b.data, b.len, BIG, 0);
	double t1 = now();
	assert_true(t1 - t0 < 0.5);
	assert_true(strncmp(m.body_text, "0\n1\n2\n", 6) == 0);
	assert_non_null(strstr(m.body_text, "\n8999"));

	/* Past the part limit, nothing more is read. */
	buf_reset(&b);
	buf_puts(&b, "Content-Type: multipart/mixed; boundary=p\n\n");
	for (int i = 0; i < MIME_MAX_PARTS + 10; i++)
		buf_puts(&b, "--p\nContent-Type: image/gif\n\nx\n");
	buf_puts(&b, "--p\n\nlate text\n--p--\n");
	parse_n(b.data, b.len, BIG, 0);
	assert_string_equal(m.body_text, "");
	buf_free(&b);
}

static void test_many_headers(void **state)
{
	struct buf b = BUF_INIT;
	const int n = 300000;

	for (int i = 0; i < n; i++)
		buf_printf(&b, "X-H%d: =?utf-8?q?v=C3=A9?= %d\n", i % 7, i);
	buf_puts(&b, "Subject: late\n\nthe body\n");
	double t0 = now();
	parse_n(b.data, b.len, BIG, 0);
	double t1 = now();
	assert_int_equal(m.nheaders, MIME_MAX_HEADERS);
	assert_string_equal(m.headers[0].name, "X-H0");
	assert_string_equal(m.headers[0].value, "vé 0");
	assert_string_equal(m.headers[MIME_MAX_HEADERS - 1].value, "vé 9999");
	assert_string_equal(m.body_text, "the body\n");
	assert_true(t1 - t0 < 0.5);

	/* One header folded over many lines. */
	buf_reset(&b);
	buf_puts(&b, "X-Folded: start");
	for (int i = 0; i < 100000; i++)
		buf_puts(&b, "\n =?utf-8?q?x?=");
	buf_puts(&b, "\n\n");
	t0 = now();
	parse_n(b.data, b.len, BIG, 0);
	t1 = now();
	assert_int_equal(strlen(mime_header_first(&m, "X-Folded")), 6 + 100000);
	assert_true(t1 - t0 < 0.5);

	/* Many "=?" that never make a word: still linear. */
	buf_reset(&b);
	buf_puts(&b, "X-Q: ");
	for (int i = 0; i < 200000; i++)
		buf_puts(&b, "=?a?q?");
	buf_puts(&b, "\n\n");
	t0 = now();
	parse_n(b.data, b.len, BIG, 0);
	t1 = now();
	assert_int_equal(strlen(mime_header_first(&m, "X-Q")), 6 * 200000);
	assert_true(t1 - t0 < 0.5);
	buf_free(&b);
}

static void test_digest_and_args(void **state)
{
	parse("Content-Type: multipart/digest; boundary=d\n\n"
	    "--d\n\nSubject: one\n\ndigest one\n"
	    "--d\nContent-Type: text/plain\n\nplain two\n"
	    "--d--\n");
	assert_string_equal(m.body_text, "digest one\nplain two");

	struct mime_message x;
	assert_int_equal(mime_parse(NULL, 5, 10, 0, &x), -1);
	assert_null(x.body_text);
	assert_int_equal(mime_parse("a", 1, 10, 0, NULL), -1);
	assert_int_equal(mime_parse(NULL, 0, 10, 0, &x), 0);
	assert_string_equal(x.body_text, "");
	mime_message_free(&x);
	mime_message_free(&x);
}

static int teardown(void **state)
{
	mime_message_free(&m);
	return 0;
}

static void check_strip(const char *in, const char *want)
{
	struct buf out = BUF_INIT;
	int r = mime_strip_fields(in, strlen(in), "X-Spam-", "X-Spam-Prev-", &out);
	if (want == NULL) {
		assert_int_equal(r, 0);
		assert_int_equal(out.len, 0);
	} else {
		assert_int_equal(r, 1);
		assert_int_equal(out.len, strlen(want));
		assert_memory_equal(out.data, want, out.len);
	}
	buf_free(&out);
}

static void test_strip_fields(void **state)
{
	/* nothing to strip: untouched */
	check_strip("Subject: hi\nFrom: a@b\n\nX-Spam-Flag: YES\n", NULL);
	/* first, middle and last fields, continuation lines, any case; the
	 * body's look-alikes and X-Spam-Prev-* stay */
	check_strip("x-spam-flag: YES\nSubject: hi\nX-Spam-Status: Yes, score=99\n"
	    "\tautolearn=no\n  more\nX-Spam-Prev-Subject: old\nFrom: a@b\n"
	    "X-Spam-Level: ***\n\nX-Spam-Flag: YES\nbody\n",
	    "Subject: hi\nX-Spam-Prev-Subject: old\nFrom: a@b\n\nX-Spam-Flag: YES\nbody\n");
	/* CRLF line ends, a header section without a body */
	check_strip("A: 1\r\nX-Spam-Flag: YES\r\nB: 2\r\n",
	    "A: 1\r\nB: 2\r\n");
	check_strip("X-Spam-Flag: YES", "");
	/* not a field of that name: a longer name, no colon */
	check_strip("X-Spammer: 1\nX-Spam-Thing no colon\nX-Spam-: empty\n\n",
	    "X-Spammer: 1\nX-Spam-Thing no colon\n\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_message),
		cmocka_unit_test(test_folded_headers),
		cmocka_unit_test(test_rfc2047),
		cmocka_unit_test(test_header_controls),
		cmocka_unit_test(test_alternative),
		cmocka_unit_test(test_nested_mixed),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_malformed_boundaries),
		cmocka_unit_test(test_missing_final_boundary),
		cmocka_unit_test(test_body_charsets),
		cmocka_unit_test(test_no_colon_and_no_body),
		cmocka_unit_test(test_binary_junk),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_many_parts),
		cmocka_unit_test(test_strip_fields),
		cmocka_unit_test(test_many_headers),
		cmocka_unit_test(test_digest_and_args),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
