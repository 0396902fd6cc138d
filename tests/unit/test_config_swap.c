/*
 * test_config_swap.c - a reload's configuration swap: parsing the text the
 * master hands over (config_load_fd), the settings that keep their running
 * values, the in-place swap, and MSG_CONFIG on a child's socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf/config.h"
#include "conf/config_swap.h"
#include "lib/ipc.h"
#include "lib/msgtypes.h"

static char errors[4096];

static void collect(const char *msg)
{
	strncat(errors, msg, sizeof(errors) - strlen(errors) - 2);
	strcat(errors, "\n");
}

static int text_fd(const char *text)
{
	int fd = memfd_create("test.conf", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	/* the offset is shared with other processes: it must not matter */
	assert_int_equal(lseek(fd, 5, SEEK_SET), 5);
	return fd;
}

static void load(struct config *c, const char *text)
{
	int fd = text_fd(text);
	errors[0] = '\0';
	config_defaults(c);
	assert_int_equal(config_load_fd(c, fd, "/etc/x.conf", collect), 0);
	close(fd);
}

static void test_load_fd(void **state)
{
	struct config c;
	load(&c, "listen smtp 127.0.0.1:25\nmax_message_size 2K\nstop_grace_time 5s\n");
	assert_int_equal(c.max_message_size, 2048);
	assert_int_equal(c.stop_grace_time, 5);
	assert_string_equal(c.path, "/etc/x.conf");
	config_free(&c);

	int fd = text_fd("listen smtp 127.0.0.1:25\n\nmax_sessions lots\n");
	errors[0] = '\0';
	config_defaults(&c);
	assert_int_equal(config_load_fd(&c, fd, "/etc/x.conf", collect), 1);
	assert_non_null(strstr(errors, "/etc/x.conf:3: max_sessions: bad number"));
	config_free(&c);
	close(fd);
}

static void test_keep_restart_settings(void **state)
{
	struct config running, fresh;
	load(&running, "listen smtp 127.0.0.1:25\nqueue_dir /q1\nmax_message_size 1M\n");
	load(&fresh, "listen smtp 127.0.0.1:26\nlisten lmtp unix:/x\nqueue_dir /q2\n"
	    "max_message_size 2K\nretry_schedule 1s 2s\ndelivery_nice 3\n");
	char *port = running.listen[0].port;
	assert_int_equal(config_keep_restart_settings(&fresh, &running, 0), 3);
	assert_int_equal(fresh.delivery_nice, 10);
	assert_int_equal(fresh.nlisten, 1);
	assert_ptr_equal(fresh.listen[0].port, port);
	assert_string_equal(fresh.queue_dir, "/q1");
	assert_int_equal(fresh.max_message_size, 2048);
	assert_int_equal(fresh.nretry, 2);
	assert_int_equal(running.nlisten, 0);
	assert_null(running.queue_dir);

	/* in place: a pointer to a listener stays valid and unchanged */
	const struct listen_spec *spec = &running.listen[0];
	config_swap(&running, &fresh);
	assert_ptr_equal(spec->port, port);
	assert_string_equal(spec->port, "25");
	assert_int_equal(running.max_message_size, 2048);
	assert_null(fresh.path);
	config_free(&running);

	/* nothing that needs a restart changed */
	load(&running, "listen smtp 127.0.0.1:25\n");
	load(&fresh, "listen smtp 127.0.0.1:25\nhostname other.test\n");
	assert_int_equal(config_keep_restart_settings(&fresh, &running, 0), 0);
	config_free(&running);
	config_free(&fresh);
}

static void send_config(int sock, uint64_t generation, const char *text)
{
	static struct ipc_msg m;
	int fd = text_fd(text);
	ipc_init(&m, MSG_CONFIG);
	ipc_add_u64(&m, generation);
	ipc_set_fd(&m, fd);
	assert_int_equal(ipc_send(sock, &m), 0);
	close(fd);
}

static void test_receive(void **state)
{
	int sv[2];
	struct config live;

	assert_int_equal(ipc_socketpair(sv), 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	load(&live, "listen smtp 127.0.0.1:25\nmax_message_size 1M\n");
	assert_int_equal(config_swap_receive(sv[1], &live), 0);

	send_config(sv[0], 1, "listen smtp 127.0.0.1:99\nmax_message_size 2K\nuser nobody\n");
	assert_int_equal(config_swap_receive(sv[1], &live), 1);
	assert_int_equal(live.generation, 1);
	assert_int_equal(live.max_message_size, 2048);
	assert_string_equal(live.listen[0].port, "25");    /* needs a restart */
	assert_null(live.user);

	/* a stale one (a child forked after that reload has it already) */
	send_config(sv[0], 1, "listen smtp 127.0.0.1:25\nmax_message_size 3K\n");
	assert_int_equal(config_swap_receive(sv[1], &live), 0);
	assert_int_equal(live.max_message_size, 2048);

	close(sv[0]);
	assert_int_equal(config_swap_receive(sv[1], &live), -1);
	close(sv[1]);
	config_free(&live);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_fd),
		cmocka_unit_test(test_keep_restart_settings),
		cmocka_unit_test(test_receive),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
