/*
 * test_ipc.c - the typed message format: round trips, descriptor passing,
 * and strict rejection of short, long or malformed payloads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/ipc.h"

static struct ipc_msg out, in;

static void test_round_trip(void **state)
{
	int sv[2];
	const char *s;
	const void *blob;
	size_t len;
	uint32_t a;
	uint64_t b;
	int64_t c;

	assert_int_equal(ipc_socketpair(sv), 0);
	ipc_init(&out, 42);
	ipc_add_u32(&out, 7);
	ipc_add_u64(&out, UINT64_MAX);
	ipc_add_i64(&out, -5);
	ipc_add_str(&out, "hello");
	ipc_add_str(&out, NULL);
	ipc_add_blob(&out, "\0\1\2", 3);
	assert_int_equal(ipc_send(sv[0], &out), 0);
	assert_int_equal(ipc_recv(sv[1], &in), 1);
	assert_int_equal(in.type, 42);
	assert_int_equal(in.fd, -1);
	assert_int_equal(ipc_get_u32(&in, &a), 0);
	assert_int_equal(a, 7);
	assert_int_equal(ipc_get_u64(&in, &b), 0);
	assert_true(b == UINT64_MAX);
	assert_int_equal(ipc_get_i64(&in, &c), 0);
	assert_true(c == -5);
	assert_int_equal(ipc_get_str(&in, &s), 0);
	assert_string_equal(s, "hello");
	assert_int_equal(ipc_get_str(&in, &s), 0);
	assert_string_equal(s, "");
	assert_int_equal(ipc_get_blob(&in, &blob, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(blob, "\0\1\2", 3);
	assert_int_equal(ipc_end(&in), 0);
	close(sv[0]);
	assert_int_equal(ipc_recv(sv[1], &in), 0);     /* end of file */
	close(sv[1]);
}

static void test_fd_passing(void **state)
{
	int sv[2], pipefd[2];
	char c = 0;

	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(pipe(pipefd), 0);
	ipc_init(&out, 1);
	ipc_set_fd(&out, pipefd[0]);
	assert_int_equal(ipc_send(sv[0], &out), 0);
	close(pipefd[0]);
	assert_int_equal(ipc_recv(sv[1], &in), 1);
	assert_true(in.fd >= 0);
	assert_int_equal(write(pipefd[1], "x", 1), 1);
	assert_int_equal(read(in.fd, &c, 1), 1);
	assert_int_equal(c, 'x');
	assert_true(fcntl(in.fd, F_GETFD) & FD_CLOEXEC);
	close(in.fd);
	close(pipefd[1]);
	close(sv[0]);
	close(sv[1]);
}

static void test_strict_reads(void **state)
{
	int sv[2];
	uint32_t a;
	uint64_t b;
	const char *s;

	assert_int_equal(ipc_socketpair(sv), 0);
	/* reading past the end fails and sticks */
	ipc_init(&out, 3);
	ipc_add_u32(&out, 1);
	assert_int_equal(ipc_send(sv[0], &out), 0);
	assert_int_equal(ipc_recv(sv[1], &in), 1);
	assert_int_equal(ipc_get_u64(&in, &b), -1);
	assert_int_equal(ipc_get_u32(&in, &a), -1);
	assert_int_equal(ipc_end(&in), -1);

	/* leftover bytes are an error */
	ipc_init(&out, 3);
	ipc_add_u32(&out, 1);
	ipc_add_u32(&out, 2);
	assert_int_equal(ipc_send(sv[0], &out), 0);
	assert_int_equal(ipc_recv(sv[1], &in), 1);
	assert_int_equal(ipc_get_u32(&in, &a), 0);
	assert_int_equal(ipc_end(&in), -1);

	/* a string without its NUL, or with one inside, is refused */
	ipc_init(&out, 3);
	ipc_add_blob(&out, "abc", 3);
	assert_int_equal(ipc_send(sv[0], &out), 0);
	assert_int_equal(ipc_recv(sv[1], &in), 1);
	assert_int_equal(ipc_get_str(&in, &s), -1);
	ipc_init(&out, 3);
	ipc_add_blob(&out, "a\0b", 4);
	assert_int_equal(ipc_send(sv[0], &out), 0);
	assert_int_equal(ipc_recv(sv[1], &in), 1);
	assert_int_equal(ipc_get_str(&in, &s), -1);

	/* a blob length beyond the payload is refused */
	ipc_init(&out, 3);
	ipc_add_u32(&out, 1000);
	ipc_add_u32(&out, 0);
	assert_int_equal(ipc_send(sv[0], &out), 0);
	assert_int_equal(ipc_recv(sv[1], &in), 1);
	assert_int_equal(ipc_get_str(&in, &s), -1);

	/* a raw datagram whose header lies about its length */
	uint32_t bad[3] = { 5, 100, 0 };
	assert_int_equal(send(sv[0], bad, sizeof(bad), 0), (ssize_t)sizeof(bad));
	assert_int_equal(ipc_recv(sv[1], &in), -1);
	assert_int_equal(errno, EBADMSG);
	/* too short for a header */
	assert_int_equal(send(sv[0], bad, 3, 0), 3);
	assert_int_equal(ipc_recv(sv[1], &in), -1);
	assert_int_equal(errno, EBADMSG);
	close(sv[0]);
	close(sv[1]);
}

static void test_overflow(void **state)
{
	static char big[IPC_MAX_PAYLOAD];
	int sv[2];

	assert_int_equal(ipc_socketpair(sv), 0);
	ipc_init(&out, 1);
	ipc_add_blob(&out, big, sizeof(big));   /* + 4 length bytes: too much */
	assert_int_equal(ipc_send(sv[0], &out), -1);
	assert_int_equal(errno, EMSGSIZE);
	ipc_init(&out, 1);
	ipc_add_blob(&out, big, sizeof(big) - 4);       /* exactly full */
	assert_int_equal(ipc_send(sv[0], &out), 0);
	assert_int_equal(ipc_recv(sv[1], &in), 1);
	assert_int_equal(in.len, IPC_MAX_PAYLOAD);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_fd_passing),
		cmocka_unit_test(test_strict_reads),
		cmocka_unit_test(test_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
