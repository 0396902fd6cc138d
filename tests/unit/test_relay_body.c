/*
 * test_relay_body.c - the relay's message streamer: LF -> CRLF, dot-
 * stuffing (also across chunk boundaries), the end-of-data sequence for
 * messages with and without a final line end and for an empty message,
 * pread at an offset without moving the shared file offset, and a file
 * shorter than announced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay/send_body.h"

/* Reference conversion of a whole message, written independently. */
static char *expected(const char *msg, size_t n, size_t *outlen)
{
	char *out = malloc(2 * n + 8), *o = out;
	int bol = 1;

	for (size_t i = 0; i < n; i++) {
		if (bol && msg[i] == '.')
			*o++ = '.';
		if (msg[i] == '\n')
			*o++ = '\r';
		*o++ = msg[i];
		bol = msg[i] == '\n';
	}
	if (!bol)
		o += sprintf(o, "\r\n");
	o += sprintf(o, ".\r\n");
	*outlen = (size_t)(o - out);
	return out;
}

static void test_convert(void **state)
{
	const char in[] = "a\n.b\n..\n.\nend\n";
	char out[64];
	int bol = 1;
	size_t n = send_body_convert(in, strlen(in), &bol, out);
	const char want[] = "a\r\n..b\r\n...\r\n..\r\nend\r\n";

	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
	assert_int_equal(bol, 1);
	n = send_body_finish(bol, out);
	assert_int_equal(n, 3);
	assert_memory_equal(out, ".\r\n", 3);
	/* no final line end */
	bol = 1;
	n = send_body_convert("x\n.y", 4, &bol, out);
	assert_memory_equal(out, "x\r\n..y", n);
	assert_int_equal(bol, 0);
	n = send_body_finish(bol, out);
	assert_memory_equal(out, "\r\n.\r\n", n);
	/* CR is data, not a line end; a '.' after it is not at a line start */
	bol = 1;
	n = send_body_convert("a\r.b\n", 5, &bol, out);
	assert_memory_equal(out, "a\r.b\r\n", n);
}

static void test_convert_every_split(void **state)
{
	const char in[] = ".\n..\n\n.x\ny.\n.";
	size_t len = strlen(in), wantlen;
	char *want = expected(in, len, &wantlen);

	for (size_t a = 0; a <= len; a++) {
		for (size_t b = a; b <= len; b++) {
			char out[128];
			int bol = 1;
			size_t n = send_body_convert(in, a, &bol, out);
			n += send_body_convert(in + a, b - a, &bol, out + n);
			n += send_body_convert(in + b, len - b, &bol, out + n);
			n += send_body_finish(bol, out + n);
			assert_int_equal(n, wantlen);
			assert_memory_equal(out, want, n);
		}
	}
	free(want);
}

/* A file with junk before and after the message; stream it. */
static void stream_and_check(const char *msg, size_t n)
{
	char path[] = "/tmp/test_relay_body.XXXXXX";
	int fd = mkstemp(path);
	static char out[SEND_BODY_OUT_MAX];
	struct send_body b;
	size_t wantlen, got = 0;
	char *want = expected(msg, n, &wantlen);
	char *all = malloc(wantlen + 1);

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, "JUNK\n.", 6), 6);
	assert_int_equal(write(fd, msg, n), (ssize_t)n);
	assert_int_equal(write(fd, "\nTRAILER", 8), 8);
	assert_int_equal(lseek(fd, 3, SEEK_SET), 3);
	send_body_init(&b, fd, 6, n);
	for (;;) {
		ssize_t k = send_body_next(&b, out);
		assert_true(k >= 0);
		assert_true((size_t)k <= SEND_BODY_OUT_MAX);
		if (k == 0)
			break;
		assert_true(got + (size_t)k <= wantlen);
		memcpy(all + got, out, (size_t)k);
		got += (size_t)k;
	}
	assert_true(b.done);
	assert_int_equal(got, wantlen);
	assert_memory_equal(all, want, wantlen);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 3);    /* the shared offset is untouched */
	close(fd);
	free(all);
	free(want);
}

static void test_stream_file(void **state)
{
	size_t n = 3 * SEND_BODY_CHUNK + 123;
	char *msg = malloc(n);

	/* lines of varying length, some starting with '.', and a '.' right at
	 * each chunk boundary after a LF */
	for (size_t i = 0; i < n; i++)
		msg[i] = (char)('a' + i % 26);
	for (size_t i = 0; i < n; i += 1 + i % 97)
		msg[i] = '\n';
	for (size_t i = 1; i < n; i++)
		if (msg[i - 1] == '\n' && i % 3 == 0)
			msg[i] = '.';
	for (size_t k = 1; k <= 3; k++) {
		msg[k * SEND_BODY_CHUNK - 1] = '\n';
		msg[k * SEND_BODY_CHUNK] = '.';
	}
	stream_and_check(msg, n);               /* no final LF */
	msg[n - 1] = '\n';
	stream_and_check(msg, n);
	memset(msg, '\n', SEND_BODY_CHUNK + 1); /* worst case: all line ends */
	stream_and_check(msg, SEND_BODY_CHUNK + 1);
	memset(msg, '.', SEND_BODY_CHUNK);
	stream_and_check(msg, SEND_BODY_CHUNK);
	stream_and_check("", 0);
	stream_and_check(".", 1);
	free(msg);
}

static void test_short_file(void **state)
{
	char path[] = "/tmp/test_relay_body.XXXXXX";
	int fd = mkstemp(path);
	static char out[SEND_BODY_OUT_MAX];
	struct send_body b;

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, "hello\n", 6), 6);
	send_body_init(&b, fd, 0, 100);
	assert_int_equal(send_body_next(&b, out), 7);   /* what is there */
	assert_false(b.done);
	errno = 0;
	assert_int_equal(send_body_next(&b, out), -1);
	assert_int_equal(errno, EIO);
	assert_false(b.done);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_convert),
		cmocka_unit_test(test_convert_every_split),
		cmocka_unit_test(test_stream_file),
		cmocka_unit_test(test_short_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
