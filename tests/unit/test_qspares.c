/*
 * test_qspares.c - spare queue files (src/queue/qspares.c) and a commit
 * into one (qwriter_open_spare): spares are made only while mail comes
 * fast, offered as made with the ticket that the batch's fsync of
 * incoming/ then carries, kept in the order of queue ids, removed when
 * too old, after a failed fsync and at the end; a message committed into
 * one needs no fsync of incoming/ of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "queue/qfile.h"
#include "queue/qspares.h"
#include "lib/fsync_group.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
	char top[64];
	char dir[96];                   /* the queue */
	char incoming[128];
	struct fsync_group g;
	struct qspares *s;
};

/* What the fake fsync of incoming/ saw. */
static struct fixture *cur;
static int syncs;
static int sync_fails;
static int files_at_sync;
static int probe_at_sync;      /* take a spare during the fsync */
static int taken_at_sync;       /* its descriptor */
static char probe_qid[QID_MAX];
static uint64_t probe_ticket;
static uint64_t gen_at_sync;    /* the fsync under way */
static uint64_t tk;             /* tickets the tests do not look at */
static uint64_t clock_ms;

static uint64_t fake_clock(void)
{
	return clock_ms;
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static int fake_sync(int fd)
{
	syncs++;
	files_at_sync = count_files(cur->incoming);
	gen_at_sync = cur->g.started;
	/* a spare is offered as soon as it is made, before this fsync ends */
	if (probe_at_sync)
		taken_at_sync = qspares_take(cur->s, probe_qid, &probe_ticket);
	if (sync_fails) {
		errno = EIO;
		return -1;
	}
	return fsync(fd);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	strcpy(f->top, "/tmp/test_qspares.XXXXXX");
	if (mkdtemp(f->top) == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/q", f->top);
	snprintf(f->incoming, sizeof(f->incoming), "%s/incoming", f->dir);
	if (queue_dirs_create(f->dir, (uid_t)-1, (gid_t)-1) < 0)
		return -1;
	int fd = open(f->incoming, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -1;
	fsync_group_init(&f->g, fd, fake_sync);
	f->s = qspares_new(f->dir, &f->g);
	if (f->s == NULL)
		return -1;
	qspares_set_clock(f->s, fake_clock);
	cur = f;
	syncs = sync_fails = files_at_sync = probe_at_sync = 0;
	taken_at_sync = -2;
	clock_ms = 100000;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	qspares_free(f->s);
	fsync_group_close(&f->g);
	nftw(f->top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* n takes, none of which finds a spare. */
static void take_missing(struct fixture *f, int n)
{
	char qid[QID_MAX];
	for (int i = 0; i < n; i++)
		assert_int_equal(qspares_take(f->s, qid, &tk), -1);
}

static void test_none_while_mail_is_slow(void **state)
{
	struct fixture *f = *state;
	take_missing(f, 7);             /* 7 a second: 7 / 4 < 2 */
	qspares_refill(f->s);
	assert_int_equal(syncs, 0);
	assert_int_equal(count_files(f->incoming), 0);
}

static void test_offered_as_made_and_carried_by_the_batch_fsync(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX], prev[QID_MAX];
	struct qspares_counts c;

	take_missing(f, 40);            /* 40 a second: a quarter second is 10 */
	probe_at_sync = 1;
	qspares_refill(f->s);
	assert_int_equal(syncs, 1);
	assert_int_equal(files_at_sync, 10);    /* the fsync came after every creation */
	/* one taken while that fsync ran: the fsync started after its ticket,
	 * so it carries its name, and a commit into it waits for it */
	assert_true(taken_at_sync >= 0);
	assert_true(probe_ticket < gen_at_sync);
	close(taken_at_sync);
	qspares_counts(f->s, &c);
	assert_int_equal(c.made, 10);
	assert_int_equal(c.ready, 9);
	/* enough ready: another refill makes none */
	qspares_refill(f->s);
	assert_int_equal(syncs, 1);
	snprintf(prev, sizeof(prev), "%s", probe_qid);
	for (int i = 0; i < 9; i++) {
		int fd = qspares_take(f->s, qid, &tk);
		assert_true(fd >= 0);
		assert_true(qid_valid(qid));
		assert_true(strcmp(prev, qid) < 0);     /* oldest first */
		snprintf(prev, sizeof(prev), "%s", qid);
		assert_true(tk < gen_at_sync);
		struct stat st;
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_size, 0);
		assert_int_equal(st.st_mode & 07777, QFILE_MODE_WRITING);
		assert_false(qfile_mode_committed(st.st_mode));
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", f->incoming, qid);
		struct stat named;
		assert_int_equal(stat(path, &named), 0);
		assert_int_equal(named.st_ino, st.st_ino);
		assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_WRONLY);
		close(fd);
	}
	assert_int_equal(qspares_take(f->s, qid, &tk), -1);
	qspares_counts(f->s, &c);
	assert_int_equal(c.used, 10);
}

static void test_refill_when_half_is_used(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];

	take_missing(f, 40);
	qspares_refill(f->s);           /* 10 */
	for (int i = 0; i < 4; i++)
		close(qspares_take(f->s, qid, &tk));
	qspares_refill(f->s);           /* 6 left of 10 wanted (44 takes): none */
	assert_int_equal(syncs, 1);
	close(qspares_take(f->s, qid, &tk));
	qspares_refill(f->s);           /* 5 left, 11 wanted: 6 more */
	assert_int_equal(syncs, 2);
	struct qspares_counts c;
	qspares_counts(f->s, &c);
	assert_int_equal(c.made, 16);
	assert_int_equal(c.ready, 11);
}

static void test_at_most_the_cap(void **state)
{
	struct fixture *f = *state;
	struct qspares_counts c;

	take_missing(f, 4000);
	qspares_refill(f->s);
	qspares_counts(f->s, &c);
	assert_int_equal(c.made, QSPARES_MAX);
	assert_int_equal(count_files(f->incoming), QSPARES_MAX);
}

static void test_rate_is_forgotten(void **state)
{
	struct fixture *f = *state;
	take_missing(f, 40);
	clock_ms += 2500;               /* two quiet seconds */
	qspares_refill(f->s);
	assert_int_equal(syncs, 0);
	/* the second before counts */
	take_missing(f, 40);
	clock_ms += 1000;
	qspares_refill(f->s);
	assert_int_equal(syncs, 1);
}

static void test_too_old_is_removed(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	struct qspares_counts c;

	take_missing(f, 40);
	qspares_refill(f->s);
	clock_ms += QSPARES_MAX_AGE_MS;         /* just usable */
	int fd = qspares_take(f->s, qid, &tk);
	assert_true(fd >= 0);
	close(fd);
	clock_ms += 1;                          /* the other 9 are too old */
	assert_int_equal(qspares_take(f->s, qid, &tk), -1);
	qspares_counts(f->s, &c);
	assert_int_equal(c.unused, 9);
	assert_int_equal(c.ready, 0);
	assert_int_equal(count_files(f->incoming), 1);  /* the one taken */
}

/* A message that found no spare got a fresh id: spares made before it
 * would sort before it, and new mail waiting on disk is served in id
 * order.  They are removed instead; later spares are used. */
static void test_not_below_an_earlier_message(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX], fresh[QID_MAX], first[QID_MAX];
	struct qspares_counts c;

	take_missing(f, 40);
	qspares_refill(f->s);
	qspares_note_id(f->s, "0");             /* older than them all: no matter */
	int fd = qspares_take(f->s, first, &tk);
	assert_true(fd >= 0);
	close(fd);
	qid_generate(fresh);
	qspares_note_id(f->s, fresh);
	assert_int_equal(qspares_take(f->s, qid, &tk), -1);
	qspares_counts(f->s, &c);
	assert_int_equal(c.unused, 9);
	assert_int_equal(count_files(f->incoming), 1);
	/* the next batch comes after it */
	take_missing(f, 2);
	qspares_refill(f->s);
	fd = qspares_take(f->s, qid, &tk);
	assert_true(fd >= 0);
	close(fd);
	assert_true(strcmp(qid, fresh) > 0);
	/* an id noted that is not the greatest changes nothing */
	qspares_note_id(f->s, first);
	fd = qspares_take(f->s, qid, &tk);
	assert_true(fd >= 0);
	close(fd);
}

static void test_expire_on_the_timer(void **state)
{
	struct fixture *f = *state;

	take_missing(f, 40);
	qspares_refill(f->s);
	assert_int_equal(qspares_expire(f->s), 10);     /* all young */
	clock_ms += QSPARES_MAX_AGE_MS + 1;
	assert_int_equal(qspares_expire(f->s), 0);
	assert_int_equal(count_files(f->incoming), 0);
}

static const char *const one_rcpt[] = { "alice@example.test" };

/* The batch's fsync fails: the spares not taken are removed, and a message
 * in one taken meanwhile is not acknowledged (its commit fails, by its
 * ticket, and removes it). */
static void test_failed_fsync_fails_the_batch(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];

	sync_fails = 1;
	probe_at_sync = 1;
	take_missing(f, 40);
	qspares_refill(f->s);
	assert_int_equal(syncs, 1);
	assert_true(taken_at_sync >= 0);
	assert_int_equal(qspares_take(f->s, qid, &tk), -1);
	assert_int_equal(count_files(f->incoming), 1);  /* the one taken */
	struct qwriter *w = qwriter_open_spare(f->dir, probe_qid, taken_at_sync, &f->g,
	    probe_ticket, "h", "a", "SMTP", "", one_rcpt, 1, 0);
	assert_non_null(w);
	assert_int_equal(qwriter_write(w, "x\n", 2), 0);
	assert_int_equal(qwriter_commit(w), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(count_files(f->incoming), 0);
}

/* A spare that cannot be made (no descriptor left here; a full disk
 * alike) stops the refill, and none is tried for a second. */
static void test_failure_pauses_refills(void **state)
{
	struct fixture *f = *state;
	struct qspares_counts c;
	struct rlimit old, none;

	take_missing(f, 40);
	int lowest = dup(0);
	assert_true(lowest >= 0);
	close(lowest);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	none = old;
	none.rlim_cur = (rlim_t)lowest;         /* every new descriptor fails */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0);
	qspares_refill(f->s);
	qspares_refill(f->s);                   /* paused: not tried */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	qspares_counts(f->s, &c);
	assert_int_equal(c.failures, 1);
	assert_int_equal(c.made, 0);
	assert_int_equal(syncs, 0);
	qspares_refill(f->s);                   /* still paused, though it would work */
	qspares_counts(f->s, &c);
	assert_int_equal(c.made, 0);
	clock_ms += 1000;
	take_missing(f, 40);                    /* a new second: the rate again */
	qspares_refill(f->s);
	qspares_counts(f->s, &c);
	assert_int_equal(c.made, 10);
	assert_int_equal(c.failures, 1);
}

static void test_free_removes_the_rest(void **state)
{
	struct fixture *f = *state;
	take_missing(f, 40);
	qspares_refill(f->s);
	assert_int_equal(count_files(f->incoming), 10);
	qspares_free(f->s);
	f->s = NULL;
	assert_int_equal(count_files(f->incoming), 0);
}

static void test_commit_into_a_spare(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX], path[PATH_MAX];

	take_missing(f, 40);
	qspares_refill(f->s);
	int before = syncs;
	int fd = qspares_take(f->s, qid, &tk);
	assert_true(fd >= 0);
	struct qwriter *w = qwriter_open_spare(f->dir, qid, fd, &f->g, tk, "client.test",
	    "[192.0.2.1]", "ESMTP", "bob@example.test", one_rcpt, 1, 0);
	assert_non_null(w);
	assert_string_equal(qwriter_qid(w), qid);
	/* the refill's fsync carried its name: the commit makes no other
	 * (a fresh file's, made now, would need one) */
	assert_int_equal(qwriter_write(w, "Subject: x\n\nbody\n", 17), 0);
	assert_int_equal(qwriter_commit(w), 0);
	assert_int_equal(syncs, before);
	snprintf(path, sizeof(path), "%s/%s", f->incoming, qid);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(qfile_mode_committed(st.st_mode));
	int rfd = open(path, O_RDONLY);
	assert_true(rfd >= 0);
	struct qfile q;
	assert_int_equal(qfile_read(rfd, &q), 0);
	assert_string_equal(q.qid, qid);
	assert_string_equal(q.sender, "bob@example.test");
	assert_int_equal(q.nrcpt, 1);
	assert_int_equal(q.msg_size, 17);
	qfile_free(&q);
	close(rfd);
}

static void test_refused_envelope_removes_the_spare(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX], path[PATH_MAX];

	take_missing(f, 40);
	qspares_refill(f->s);
	int fd = qspares_take(f->s, qid, &tk);
	assert_true(fd >= 0);
	assert_null(qwriter_open_spare(f->dir, qid, fd, &f->g, tk, "h", "a", "SMTP",
	    "bob@example.test", one_rcpt, 0, 0));   /* no recipient */
	assert_int_equal(errno, EINVAL);
	snprintf(path, sizeof(path), "%s/%s", f->incoming, qid);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(fcntl(fd, F_GETFD), -1);       /* closed */
	/* the aborted writer removes its spare too */
	fd = qspares_take(f->s, qid, &tk);
	struct qwriter *w = qwriter_open_spare(f->dir, qid, fd, &f->g, tk, "h", "a", "SMTP", "",
	    one_rcpt, 1, 0);
	assert_non_null(w);
	qwriter_abort(w);
	snprintf(path, sizeof(path), "%s/%s", f->incoming, qid);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(count_files(f->incoming), 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_none_while_mail_is_slow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offered_as_made_and_carried_by_the_batch_fsync,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_refill_when_half_is_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_at_most_the_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rate_is_forgotten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_old_is_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_below_an_earlier_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_on_the_timer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_fsync_fails_the_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_pauses_refills, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_removes_the_rest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_into_a_spare, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_envelope_removes_the_spare, setup,
		    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
