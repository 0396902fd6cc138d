/*
 * test_maildir_batch.c - the commit of a batch of maildir deliveries:
 * every file fsynced and linked into new/, ONE fsync per new/ directory
 * for the batch, and a new/ whose fsync fails takes its links back and
 * reports each of its deliveries as a temporary failure, a discarded
 * batch leaves nothing in tmp/ or new/ (fsync is wrapped
 * with the linker's --wrap to count the calls and to fail directories'
 * on demand; it still runs otherwise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "deliver/deliver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int __real_fsync(int fd);
int __wrap_fsync(int fd);

static int file_fsyncs, dir_fsyncs, fail_dirs;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int __wrap_fsync(int fd)
{
	struct stat st;
	int is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
	pthread_mutex_lock(&lock);
	if (is_dir)
		dir_fsyncs++;
	else
		file_fsyncs++;
	pthread_mutex_unlock(&lock);
	if (is_dir && fail_dirs) {
		errno = EIO;
		return -1;
	}
	return __real_fsync(fd);
}

static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

struct failure {
	size_t slot;
	int instr;
	struct delivery_result r;
};
static struct failure failures[16];
static int nfailures;

static void on_failed(size_t slot, int instr, const struct delivery_result *r, void *arg)
{
	if (nfailures < 16)
		failures[nfailures++] = (struct failure){ slot, instr, *r };
}

/* The message the tests deliver: base/msg, open in m->qfd. */
static struct delivery_msg test_message(const char *base)
{
	char msgpath[300];
	snprintf(msgpath, sizeof(msgpath), "%s/msg", base);
	int qfd = open(msgpath, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_true(qfd >= 0);
	assert_int_equal(write(qfd, "Subject: x\n\nbody\n", 17), 17);
	return (struct delivery_msg){ .qfd = qfd, .msg_offset = 0, .msg_size = 17,
	    .sender = "s@x", .recipient = "r@x", .home = base };
}

/* deliver n messages into base/Maildir and base/Other (every third), committed as one batch */
static void deliver_batch(const char *base, int n)
{
	char md[256], other[256];
	snprintf(md, sizeof(md), "%s/Maildir", base);
	snprintf(other, sizeof(other), "%s/Other", base);
	struct delivery_msg m = test_message(base);
	file_fsyncs = dir_fsyncs = nfailures = 0;
	maildir_batch_open();
	for (int i = 0; i < n; i++) {
		struct delivery_result r = { 0 };
		maildir_batch_tag((size_t)i, i % 2 ? 3 : -1);
		deliver_maildir(&m, i % 3 == 2 ? other : md, &r);
		assert_int_equal(r.status, DELIVERY_OK);
	}
	assert_int_equal(maildir_batch_pending(), n);
	assert_int_equal(file_fsyncs + dir_fsyncs, 0);  /* nothing durable yet */
	maildir_batch_commit(on_failed, NULL);
	assert_int_equal(maildir_batch_pending(), 0);
	close(m.qfd);
}

static void test_commit_one_dir_fsync_each(void **state)
{
	char base[] = "/tmp/test_maildir_batch.XXXXXX", path[300];
	assert_non_null(mkdtemp(base));
	fail_dirs = 0;
	deliver_batch(base, 6);
	assert_int_equal(nfailures, 0);
	assert_int_equal(file_fsyncs, 6);
	assert_int_equal(dir_fsyncs, 2);        /* Maildir/new and Other/new */
	snprintf(path, sizeof(path), "%s/Maildir/new", base);
	assert_int_equal(entries(path), 4);
	snprintf(path, sizeof(path), "%s/Other/new", base);
	assert_int_equal(entries(path), 2);
	snprintf(path, sizeof(path), "%s/Maildir/tmp", base);
	assert_int_equal(entries(path), 0);
	char cmd[320];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	assert_int_equal(system(cmd), 0);
}

static void test_dir_fsync_failure_takes_back(void **state)
{
	char base[] = "/tmp/test_maildir_batch.XXXXXX", path[300];
	assert_non_null(mkdtemp(base));
	fail_dirs = 1;
	deliver_batch(base, 4);
	fail_dirs = 0;
	assert_int_equal(nfailures, 4);
	for (int i = 0; i < nfailures; i++) {
		assert_int_equal(failures[i].r.status, DELIVERY_TEMPFAIL);
		assert_int_equal(failures[i].instr, failures[i].slot % 2 ? 3 : -1);
		assert_non_null(strstr(failures[i].r.text, "fsync new/"));
	}
	snprintf(path, sizeof(path), "%s/Maildir/new", base);
	assert_int_equal(entries(path), 0);
	snprintf(path, sizeof(path), "%s/Other/new", base);
	assert_int_equal(entries(path), 0);
	char cmd[320];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	assert_int_equal(system(cmd), 0);
}

/* A worker whose qmgr is gone takes its batch back: nothing in new/,
 * nothing left in tmp/, nothing fsynced; the batch takes more after. */
static void test_discard_takes_back(void **state)
{
	char base[] = "/tmp/test_maildir_batch.XXXXXX", path[300], md[300];
	assert_non_null(mkdtemp(base));
	snprintf(md, sizeof(md), "%s/Maildir", base);
	struct delivery_msg m = test_message(base);
	fail_dirs = 0;
	file_fsyncs = dir_fsyncs = nfailures = 0;
	maildir_batch_open();
	for (int i = 0; i < 3; i++) {
		struct delivery_result r = { 0 };
		maildir_batch_tag((size_t)i, -1);
		deliver_maildir(&m, md, &r);
		assert_int_equal(r.status, DELIVERY_OK);
	}
	maildir_batch_discard();
	assert_int_equal(maildir_batch_pending(), 0);
	assert_int_equal(file_fsyncs + dir_fsyncs, 0);
	snprintf(path, sizeof(path), "%s/Maildir/tmp", base);
	assert_int_equal(entries(path), 0);
	snprintf(path, sizeof(path), "%s/Maildir/new", base);
	assert_int_equal(entries(path), 0);
	maildir_batch_commit(on_failed, NULL);  /* an empty batch: nothing to do */
	assert_int_equal(nfailures, 0);
	assert_int_equal(dir_fsyncs, 0);
	close(m.qfd);
	char cmd[320];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commit_one_dir_fsync_each),
		cmocka_unit_test(test_dir_fsync_failure_takes_back),
		cmocka_unit_test(test_discard_takes_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
