/*
 * test_qfile.c - the queue file: write/commit/read round trips, refusal of
 * uncommitted, truncated and corrupt files, state records (the delay
 * warning's 'W' and the finished 'Z' too, results recorded in one call, the
 * room reserved for them), queue ids, the
 * queue directory, and disk-full handling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "queue/qfile.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

struct fixture {
	char dir[64];
};

/* ---- helpers ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/test_qfile.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	char q[PATH_MAX];
	snprintf(q, sizeof(q), "%s/q", f->dir);
	if (queue_dirs_create(q, (uid_t)-1, (gid_t)-1) < 0)
		return -1;
	strcat(f->dir, "/q");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	f->dir[strlen(f->dir) - 2] = '\0';      /* strip "/q" */
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static char *path_of(const char *dir, const char *sub, const char *name)
{
	static char p[4][PATH_MAX];
	static int i;
	i = (i + 1) % 4;
	int n = snprintf(p[i], PATH_MAX, "%s/%s/%s", dir, sub, name);
	assert_true(n > 0 && n < PATH_MAX);
	return p[i];
}

static int count_entries(const char *dir, const char *sub)
{
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "ls -A '%s/%s' | wc -l", dir, sub);
	FILE *p = popen(cmd, "r");
	int n = -1;
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

static unsigned char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	unsigned char *p = malloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, p, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

static void spew(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static const char *const three_rcpts[] = {
	"alice@example.test", "bob+tag@example.test", "carol@example.test",
};

/* Write and commit a message in chunks of `chunk` bytes; qid out. */
static void commit_msg(const char *dir, const char *sender, const char *const *rcpts,
    size_t n, int eightbit, const unsigned char *msg, size_t len, size_t chunk,
    char qid[QID_MAX])
{
	struct qwriter *w = qwriter_open(dir, "mx.client.test", "192.0.2.1", "LMTP",
	    sender, rcpts, n, eightbit);
	assert_non_null(w);
	strcpy(qid, qwriter_qid(w));
	assert_true(qid_valid(qid));
	for (size_t off = 0; off < len; off += chunk) {
		size_t k = len - off < chunk ? len - off : chunk;
		assert_int_equal(qwriter_write(w, msg + off, k), 0);
	}
	assert_int_equal(qwriter_size(w), len);
	assert_int_equal(qwriter_commit(w), 0);
	/* committed in place: marked, still in incoming/ */
	struct stat st;
	assert_int_equal(stat(path_of(dir, "incoming", qid), &st), 0);
	assert_int_equal(st.st_mode & 07777, QFILE_MODE_COMMITTED);
	assert_true(qfile_mode_committed(st.st_mode));
	/* take it as the qmgr does */
	assert_int_equal(queue_move(dir, qid, "incoming", "active"), 0);
}

static int read_path(const char *path, struct qfile *q)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	int r = qfile_read(fd, q);
	int saved = errno;
	close(fd);
	errno = saved;
	return r;
}

static int read_bytes(const char *dir, const void *p, size_t len, struct qfile *q)
{
	char *tmp = path_of(dir, "corrupt", "scratch");
	spew(tmp, p, len);
	return read_path(tmp, q);
}

static uint32_t get32(const unsigned char *p);
static void put32(unsigned char *p, uint32_t v);
static size_t find_record(const unsigned char *p, size_t len, char type);

/* ---- round trips ---- */

static void roundtrip(const char *dir, const unsigned char *msg, size_t len, size_t chunk)
{
	char qid[QID_MAX];
	struct qfile q;
	struct timeval now;

	gettimeofday(&now, NULL);
	commit_msg(dir, "", three_rcpts, 3, 1, msg, len, chunk, qid);
	assert_int_equal(count_entries(dir, "incoming"), 0);

	const char *path = path_of(dir, "active", qid);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);

	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(lseek(fd, 3, SEEK_SET), 3);    /* offset is not used */
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 3);
	assert_string_equal(q.qid, qid);
	assert_true(q.arrival_sec >= now.tv_sec - 1 && q.arrival_sec <= now.tv_sec + 5);
	assert_true(q.arrival_usec >= 0 && q.arrival_usec < 1000000);
	assert_string_equal(q.helo, "mx.client.test");
	assert_string_equal(q.client_addr, "192.0.2.1");
	assert_string_equal(q.protocol, "LMTP");
	assert_string_equal(q.sender, "");
	assert_int_equal(q.eightbit, 1);
	assert_int_equal(q.nrcpt, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(q.rcpt[i].address, three_rcpts[i]);
		assert_int_equal(q.rcpt[i].state, RCPT_PENDING);
		assert_int_equal(q.rcpt[i].attempts, 0);
		assert_null(q.rcpt[i].last_error);
	}
	assert_int_equal(q.msg_size, len);
	assert_int_equal(q.end_offset, st.st_size);
	assert_int_equal((uint64_t)q.msg_offset + len + 5, (uint64_t)st.st_size);
	unsigned char *back = malloc(len + 1);
	assert_int_equal(pread(fd, back, len, q.msg_offset), (ssize_t)len);
	assert_memory_equal(back, msg, len);
	free(back);
	qfile_free(&q);
	close(fd);
}

static void test_roundtrip_sizes(void **state)
{
	struct fixture *f = *state;
	size_t big = 1024 * 1024;
	unsigned char *msg = malloc(big);
	for (size_t i = 0; i < big; i++)
		msg[i] = (unsigned char)(i % 251 == 0 ? 0 : i * 7);     /* with NULs */

	roundtrip(f->dir, msg, 0, 1);
	roundtrip(f->dir, (const unsigned char *)"x", 1, 1);
	roundtrip(f->dir, msg, 4096, 80);
	roundtrip(f->dir, msg, big, 1000);      /* many small writes */
	roundtrip(f->dir, msg, big, big);       /* one big write */
	roundtrip(f->dir, msg, big, 65531);     /* awkward sizes around the buffer */
	free(msg);
	assert_int_equal(count_entries(f->dir, "active"), 6);
}

static void test_roundtrip_7bit(void **state)
{
	struct fixture *f = *state;
	const char *rcpt[] = { "x@y.test" };
	char qid[QID_MAX];
	struct qfile q;

	commit_msg(f->dir, "sender@example.test", rcpt, 1, 0,
	    (const unsigned char *)"Subject: hi\n\nbody\n", 18, 4, qid);
	assert_int_equal(read_path(path_of(f->dir, "active", qid), &q), 0);
	assert_int_equal(q.eightbit, 0);
	assert_int_equal(q.outbound, 0);
	assert_string_equal(q.sender, "sender@example.test");
	assert_int_equal(q.nrcpt, 1);
	qfile_free(&q);

	/* an outbound message (a forward or a bounce for the relay) */
	commit_msg(f->dir, "", rcpt, 1, QW_OUTBOUND | QW_8BITMIME,
	    (const unsigned char *)"Subject: fwd\n\nbody\n", 19, 4, qid);
	assert_int_equal(read_path(path_of(f->dir, "active", qid), &q), 0);
	assert_int_equal(q.outbound, 1);
	assert_int_equal(q.eightbit, 1);
	assert_int_equal(q.msg_size, 19);
	qfile_free(&q);
}

static void test_open_refuses_bad_envelope(void **state)
{
	struct fixture *f = *state;
	const char *empty[] = { "" };

	assert_null(qwriter_open(f->dir, "h", "a", "SMTP", "", three_rcpts, 0, 0));
	assert_int_equal(errno, EINVAL);
	assert_null(qwriter_open(f->dir, "h", "a", "SMTP", "", empty, 1, 0));
	assert_int_equal(errno, EINVAL);
	assert_null(qwriter_open("/nonexistent/queue", "h", "a", "SMTP", "", three_rcpts, 1, 0));
	assert_int_equal(errno, ENOENT);
	assert_int_equal(count_entries(f->dir, "incoming"), 0);
}

static void test_abort(void **state)
{
	struct fixture *f = *state;
	struct qwriter *w = qwriter_open(f->dir, "h", "a", "SMTP", "s@x.test",
	    three_rcpts, 3, 0);
	assert_non_null(w);
	assert_int_equal(count_entries(f->dir, "incoming"), 1);
	char big[100000] = { 'a' };
	assert_int_equal(qwriter_write(w, big, sizeof(big)), 0);
	qwriter_abort(w);
	assert_int_equal(count_entries(f->dir, "incoming"), 0);
	assert_int_equal(count_entries(f->dir, "active"), 0);
	qwriter_abort(NULL);
}

static void test_uncommitted_refused(void **state)
{
	struct fixture *f = *state;
	struct qwriter *w = qwriter_open(f->dir, "h", "a", "SMTP", "s@x.test",
	    three_rcpts, 3, 0);
	assert_non_null(w);
	char big[100000];
	memset(big, 'b', sizeof(big));
	assert_int_equal(qwriter_write(w, big, sizeof(big)), 0);       /* flushed */
	struct qfile q;
	assert_int_equal(read_path(path_of(f->dir, "incoming", qwriter_qid(w)), &q), -1);
	assert_int_equal(errno, EBADMSG);
	qwriter_abort(w);
}

/* ---- state records ---- */

static void test_state_records(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	const char *rcpts[] = { "a@x.test", "b@x.test", "c@x.test", "d@x.test" };
	commit_msg(f->dir, "s@x.test", rcpts, 4, 0, (const unsigned char *)"m\n", 2, 2, qid);

	int fd = open(path_of(f->dir, "active", qid), O_RDWR | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(qfile_append_done(fd, 0, RCPT_SENT, "250 2.0.0 delivered to maildir"), 0);
	assert_int_equal(qfile_append_done(fd, 1, RCPT_BOUNCED, "550 5.1.1 no such\r\nuser"), 0);
	assert_int_equal(qfile_append_deferred(fd, 2, 1700000000, "451 4.3.0 try later"), 0);
	assert_int_equal(qfile_append_deferred(fd, 2, 1700000600, "421 4.4.2 timeout"), 0);
	assert_int_equal(qfile_append_done(fd, 3, RCPT_EXPIRED, NULL), 0);
	assert_int_equal(qfile_append_done(fd, 3, RCPT_PENDING, "x"), -1);
	assert_int_equal(errno, EINVAL);

	struct qfile q;
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(q.rcpt[0].state, RCPT_SENT);
	assert_string_equal(q.rcpt[0].last_error, "250 2.0.0 delivered to maildir");
	assert_int_equal(q.rcpt[1].state, RCPT_BOUNCED);
	assert_string_equal(q.rcpt[1].last_error, "550 5.1.1 no such user");
	assert_int_equal(q.rcpt[2].state, RCPT_PENDING);
	assert_int_equal(q.rcpt[2].attempts, 2);
	assert_int_equal(q.rcpt[2].last_attempt, 1700000600);
	assert_string_equal(q.rcpt[2].last_error, "421 4.4.2 timeout");
	assert_int_equal(q.rcpt[3].state, RCPT_EXPIRED);
	assert_string_equal(q.rcpt[3].last_error, "");
	assert_int_equal(q.end_offset, lseek(fd, 0, SEEK_END));
	qfile_free(&q);

	/* a long detail is capped, without cutting a UTF-8 character */
	char detail[3000];
	memset(detail, 'x', sizeof(detail));
	memcpy(detail + QFILE_MAX_DETAIL - 1, "\xc3\xa9", 2);
	detail[sizeof(detail) - 1] = '\0';
	assert_int_equal(qfile_append_deferred(fd, 0, 5, detail), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(strlen(q.rcpt[0].last_error), QFILE_MAX_DETAIL - 1);
	assert_int_equal(q.rcpt[0].attempts, 1);
	assert_int_equal(q.rcpt[0].state, RCPT_SENT);
	qfile_free(&q);

	assert_string_equal(rcpt_state_name(RCPT_SENT), "sent");
	assert_string_equal(rcpt_state_name(RCPT_PENDING), "pending");
	close(fd);
}

static void test_torn_state_record(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	commit_msg(f->dir, "s@x.test", three_rcpts, 3, 0, (const unsigned char *)"m\n", 2, 2, qid);
	const char *path = path_of(f->dir, "active", qid);
	int fd = open(path, O_RDWR | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(qfile_append_done(fd, 0, RCPT_SENT, "ok"), 0);
	off_t good = lseek(fd, 0, SEEK_END);
	assert_int_equal(qfile_append_done(fd, 1, RCPT_SENT, "ok too"), 0);
	off_t full = lseek(fd, 0, SEEK_END);

	struct qfile q;
	for (off_t cut = full - 1; cut > good; cut--) {   /* shrinking only */
		assert_int_equal(ftruncate(fd, cut), 0);
		assert_int_equal(qfile_read(fd, &q), 0);
		assert_int_equal(q.rcpt[0].state, RCPT_SENT);
		assert_int_equal(q.rcpt[1].state, RCPT_PENDING);
		assert_int_equal(q.end_offset, good);
		qfile_free(&q);
	}
	/* repair cuts the torn record off so that appends are readable again */
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(qfile_repair_tail(fd, &q), 0);
	assert_int_equal(lseek(fd, 0, SEEK_END), good);
	assert_int_equal(qfile_repair_tail(fd, &q), 0);
	qfile_free(&q);
	assert_int_equal(qfile_append_done(fd, 2, RCPT_BOUNCED, "no"), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(q.rcpt[2].state, RCPT_BOUNCED);
	qfile_free(&q);

	/* a tail of NULs (crash before the data reached the disk) is torn too */
	off_t end = lseek(fd, 0, SEEK_END);
	char zeros[700] = { 0 };
	assert_int_equal(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(q.end_offset, end);
	qfile_free(&q);
	close(fd);
}

/* ---- the delay warning record ('W') ---- */

/* Commit a small message to three recipients; its file in active/, open
 * for appending. */
static int committed_for_append(const char *dir, char qid[QID_MAX])
{
	commit_msg(dir, "s@x.test", three_rcpts, 3, 0, (const unsigned char *)"m\n", 2, 2, qid);
	int fd = open(path_of(dir, "active", qid), O_RDWR | O_APPEND);
	assert_true(fd >= 0);
	return fd;
}

/* The first record of this type in active/qid has this payload. */
static void expect_first_payload(const char *dir, const char *qid, char type,
    const char *payload)
{
	size_t len, plen = strlen(payload);
	unsigned char *all = slurp(path_of(dir, "active", qid), &len);
	size_t at = find_record(all, len, type);

	assert_int_equal(get32(all + at + 1), plen);
	assert_memory_equal(all + at + 5, payload, plen);
	free(all);
}

static void test_warned_record(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	struct qfile q;
	int fd = committed_for_append(f->dir, qid);

	/* none yet */
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(q.warned, 0);
	qfile_free(&q);

	/* between per-recipient records, which it leaves alone */
	assert_int_equal(qfile_append_deferred(fd, 0, 1700000000, "451 4.3.0 later"), 0);
	assert_int_equal(qfile_append_warned(fd, 1700000123), 0);
	assert_int_equal(qfile_append_done(fd, 1, RCPT_SENT, "ok"), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(q.warned, 1700000123);
	assert_int_equal(q.rcpt[0].state, RCPT_PENDING);
	assert_int_equal(q.rcpt[0].attempts, 1);
	assert_string_equal(q.rcpt[0].last_error, "451 4.3.0 later");
	assert_int_equal(q.rcpt[1].state, RCPT_SENT);
	assert_int_equal(q.rcpt[2].state, RCPT_PENDING);
	assert_int_equal(q.end_offset, lseek(fd, 0, SEEK_END));
	qfile_free(&q);

	/* the payload is the bare number */
	expect_first_payload(f->dir, qid, 'W', "1700000123");

	/* a second one (not written by the qmgr) counts from then on */
	assert_int_equal(qfile_append_warned(fd, 1700000999), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(q.warned, 1700000999);
	qfile_free(&q);

	/* a time that is no time is refused, nothing written */
	off_t end = lseek(fd, 0, SEEK_END);
	assert_int_equal(qfile_append_warned(fd, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(qfile_append_warned(fd, -5), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(lseek(fd, 0, SEEK_END), end);
	close(fd);
}

/* ---- the finished record ('Z') and recording results in one call ---- */

static void test_finished_record(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	struct qfile q;
	int fd = committed_for_append(f->dir, qid);

	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(q.finished, 0);
	qfile_free(&q);

	assert_int_equal(qfile_append_done(fd, 0, RCPT_SENT, "250 ok"), 0);
	assert_int_equal(qfile_append_finished(fd, 1700000456), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(q.finished, 1700000456);
	assert_int_equal(q.warned, 0);          /* a message state of its own */
	assert_int_equal(q.rcpt[0].state, RCPT_SENT);
	assert_int_equal(q.end_offset, lseek(fd, 0, SEEK_END));
	qfile_free(&q);
	expect_first_payload(f->dir, qid, 'Z', "1700000456");

	off_t end = lseek(fd, 0, SEEK_END);
	assert_int_equal(qfile_append_finished(fd, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(lseek(fd, 0, SEEK_END), end);
	close(fd);
}

static void test_append_states(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	struct qfile q, back;
	int fd = committed_for_append(f->dir, qid);

	assert_int_equal(qfile_read(fd, &q), 0);
	/* 0 sent, 1 deferred after instructions 2 and 5 delivered, 2 bounced */
	q.rcpt[0].state = RCPT_SENT;
	q.rcpt[0].last_error = strdup("2.0.0 delivered");
	q.rcpt[1].last_attempt = 1700000100;
	q.rcpt[1].last_error = strdup("4.2.2 mailbox full");
	q.rcpt[1].done = strdup("2,5");
	q.rcpt[1].done_version = 0x1234;
	q.rcpt[2].state = RCPT_BOUNCED;
	q.rcpt[2].last_error = strdup("5.0.0 no");
	const size_t all[] = { 0, 1, 2 };
	assert_int_equal(qfile_append_states(fd, &q, all, 3), 0);

	assert_int_equal(qfile_read(fd, &back), 0);
	assert_int_equal(back.rcpt[0].state, RCPT_SENT);
	assert_string_equal(back.rcpt[0].last_error, "2.0.0 delivered");
	assert_int_equal(back.rcpt[1].state, RCPT_PENDING);
	assert_int_equal(back.rcpt[1].attempts, 1);
	assert_int_equal(back.rcpt[1].last_attempt, 1700000100);
	assert_string_equal(back.rcpt[1].last_error, "4.2.2 mailbox full");
	assert_string_equal(back.rcpt[1].done, "2,5");
	assert_int_equal(back.rcpt[1].done_version, 0x1234);
	assert_int_equal(back.rcpt[2].state, RCPT_BOUNCED);
	assert_int_equal(back.end_offset, lseek(fd, 0, SEEK_END));
	qfile_free(&back);

	/* the 'P' goes before its 'F' */
	size_t len;
	unsigned char *bytes = slurp(path_of(f->dir, "active", qid), &len);
	assert_true(find_record(bytes, len, 'P') < find_record(bytes, len, 'F'));
	free(bytes);

	/* all or nothing: a bad index after a good one writes neither */
	off_t end = lseek(fd, 0, SEEK_END);
	const size_t bad[] = { 0, 7 };
	assert_int_equal(qfile_append_states(fd, &q, bad, 2), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(lseek(fd, 0, SEEK_END), end);
	qfile_free(&q);
	close(fd);
}

/* A writer with a given queue id: created once, EEXIST the second time
 * (a forward queued again), EINVAL for an id that is no id. */
static void test_open_with_id(void **state)
{
	struct fixture *f = *state;
	struct qwriter *w = qwriter_open_id(f->dir, "0ABCF3", "h", "a", "forward", "s@x.test",
	    three_rcpts, 3, QW_OUTBOUND);
	assert_non_null(w);
	assert_string_equal(qwriter_qid(w), "0ABCF3");
	assert_int_equal(qwriter_write(w, "m\n", 2), 0);
	assert_int_equal(qwriter_commit(w), 0);
	int fd = open(path_of(f->dir, "incoming", "0ABCF3"), O_RDONLY);
	assert_true(fd >= 0);
	struct qfile q;
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_string_equal(q.qid, "0ABCF3");
	assert_int_equal(q.outbound, 1);
	qfile_free(&q);
	close(fd);

	errno = 0;
	assert_null(qwriter_open_id(f->dir, "0ABCF3", "h", "a", "forward", "s@x.test",
	    three_rcpts, 3, QW_OUTBOUND));
	assert_int_equal(errno, EEXIST);
	assert_null(qwriter_open_id(f->dir, "../x", "h", "a", "forward", "s@x.test",
	    three_rcpts, 3, QW_OUTBOUND));
	assert_int_equal(errno, EINVAL);
}

/* A committed file has QFILE_STATE_RESERVE bytes allocated past its end,
 * for its state records on a full disk (where the file system can). */
static void test_state_reserve(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	struct stat st;
	int fd = committed_for_append(f->dir, qid);

	assert_int_equal(fstat(fd, &st), 0);
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, st.st_size, 1) < 0 && errno == EOPNOTSUPP) {
		close(fd);
		skip();
	}
	assert_true((off_t)st.st_blocks * 512 >= st.st_size + QFILE_STATE_RESERVE);
	close(fd);
}

/* Read a committed file followed by one record of this type and payload
 * (as read_bytes). */
static int read_with_record(const char *dir, const unsigned char *committed, size_t clen,
    char type, const char *payload, size_t plen, struct qfile *q)
{
	unsigned char *c = malloc(clen + 5 + plen);

	memcpy(c, committed, clen);
	c[clen] = (unsigned char)type;
	put32(c + clen + 1, (uint32_t)plen);
	memcpy(c + clen + 5, payload, plen);
	int r = read_bytes(dir, c, clen + 5 + plen, q);
	free(c);
	return r;
}

/* A record of this type and payload after the committed part: refused
 * with EBADMSG (returns 0) when !ok, else read into q (returns 1). */
static int record_read(const char *dir, const unsigned char *committed, size_t clen,
    char type, const char *payload, int ok, struct qfile *q)
{
	int r = read_with_record(dir, committed, clen, type, payload, strlen(payload), q);

	if (!ok) {
		if (r == 0) {
			qfile_free(q);
			fail_msg("'%c' payload \"%s\" accepted", type, payload);
		}
		assert_int_equal(errno, EBADMSG);
		return 0;
	}
	if (r != 0)
		fail_msg("'%c' payload \"%s\" refused", type, payload);
	return 1;
}

/* The bytes of a committed file with three recipients. */
static unsigned char *committed_bytes(const char *dir, size_t *clen)
{
	char qid[QID_MAX];

	close(committed_for_append(dir, qid));
	return slurp(path_of(dir, "active", qid), clen);
}

/* The payload refused (want < 0) or read as warned == want. */
static void expect_warned_payload(const char *dir, const unsigned char *committed,
    size_t clen, const char *payload, int64_t want)
{
	struct qfile q;

	if (!record_read(dir, committed, clen, 'W', payload, want >= 0, &q))
		return;
	assert_int_equal(q.warned, want);
	qfile_free(&q);
}

static void test_warned_malformed(void **state)
{
	struct fixture *f = *state;
	size_t clen;
	unsigned char *committed = committed_bytes(f->dir, &clen);
	static const char *const bad_payloads[] = {
		"", "0", "00", "x", "12x", " 12", "12 ", "-12", "+12", "1.5", "12 detail",
		"99999999999999999999",                 /* past INT64_MAX */
	};

	expect_warned_payload(f->dir, committed, clen, "1700000123", 1700000123);
	expect_warned_payload(f->dir, committed, clen, "9223372036854775807", INT64_MAX);
	for (size_t i = 0; i < sizeof(bad_payloads) / sizeof(bad_payloads[0]); i++)
		expect_warned_payload(f->dir, committed, clen, bad_payloads[i], -1);
	free(committed);
}

/* The last record of fd (from good to the end) cut anywhere inside: read as
 * if it was never written (check(q) holds, end_offset is good); then the
 * tail is repaired, leaving the file at good. */
static void cut_inside_last(int fd, off_t good, void (*check)(const struct qfile *q))
{
	struct qfile q;
	off_t full = lseek(fd, 0, SEEK_END);

	for (off_t cut = full - 1; cut > good; cut--) {
		assert_int_equal(ftruncate(fd, cut), 0);
		assert_int_equal(qfile_read(fd, &q), 0);
		check(&q);
		assert_int_equal(q.end_offset, good);
		qfile_free(&q);
	}
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(qfile_repair_tail(fd, &q), 0);
	qfile_free(&q);
	assert_int_equal(lseek(fd, 0, SEEK_END), good);
}

static void check_not_warned(const struct qfile *q)
{
	assert_int_equal(q->warned, 0);
	assert_int_equal(q->rcpt[2].attempts, 1);
}

static void test_warned_torn(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	struct qfile q;
	int fd = committed_for_append(f->dir, qid);
	assert_int_equal(qfile_append_deferred(fd, 2, 1700000000, "451 4.3.0 later"), 0);
	off_t good = lseek(fd, 0, SEEK_END);
	assert_int_equal(qfile_append_warned(fd, 1700000123), 0);
	cut_inside_last(fd, good, check_not_warned);

	/* repaired, it can be written again and read back */
	assert_int_equal(qfile_append_warned(fd, 1700000456), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_int_equal(q.warned, 1700000456);
	assert_int_equal(q.end_offset, lseek(fd, 0, SEEK_END));
	qfile_free(&q);
	close(fd);
}

/* ---- 'P': instructions of a deferred recipient already delivered ---- */

#define V1 0xabULL
#define V1_HEX "00000000000000ab"

static void check_done_before(const struct qfile *q)
{
	assert_string_equal(q->rcpt[2].done, "3");
}

static void test_part_done_record(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	struct qfile q;
	int fd = committed_for_append(f->dir, qid);

	/* round trip, next to the 'F' of the same attempt; none for the others */
	assert_int_equal(qfile_append_part_done(fd, 1, V1, "0,2"), 0);
	assert_int_equal(qfile_append_deferred(fd, 1, 1700000000, "451 4.3.0 pipe"), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_string_equal(q.rcpt[1].done, "0,2");
	assert_null(q.rcpt[0].done);
	assert_null(q.rcpt[2].done);
	assert_int_equal(q.rcpt[1].state, RCPT_PENDING);
	assert_int_equal(q.rcpt[1].attempts, 1);
	assert_int_equal(q.end_offset, lseek(fd, 0, SEEK_END));
	qfile_free(&q);

	/* the payload is "index version list" */
	expect_first_payload(f->dir, qid, 'P', "1 00000000000000ab 0,2");

	/* a second attempt: the lists add up (ascending, no repeats) */
	assert_int_equal(qfile_append_part_done(fd, 1, V1, "5,2,1"), 0);
	assert_int_equal(qfile_append_part_done(fd, 2, V1, "3"), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_string_equal(q.rcpt[1].done, "0,1,2,5");
	assert_string_equal(q.rcpt[2].done, "3");
	qfile_free(&q);

	/* bad lists are refused, nothing written */
	off_t end = lseek(fd, 0, SEEK_END);
	static const char *const bad_lists[] = { "", ",", "1,", ",1", "1,,2", "x", "1 2", "-1" };
	for (size_t i = 0; i < sizeof(bad_lists) / sizeof(bad_lists[0]); i++) {
		assert_int_equal(qfile_append_part_done(fd, 0, V1, bad_lists[i]), -1);
		assert_int_equal(errno, EINVAL);
	}
	assert_int_equal(qfile_append_part_done(fd, 0, V1, NULL), -1);
	assert_int_equal(lseek(fd, 0, SEEK_END), end);

	/* a torn one is ignored; repaired, the file takes another */
	assert_int_equal(qfile_append_part_done(fd, 2, V1, "0,4"), 0);
	cut_inside_last(fd, end, check_done_before);
	assert_int_equal(qfile_append_part_done(fd, 2, V1, "4"), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_string_equal(q.rcpt[2].done, "3,4");
	assert_int_equal(q.end_offset, lseek(fd, 0, SEEK_END));
	qfile_free(&q);
	close(fd);
}

static void test_part_done_other_version(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	struct qfile q;
	int fd = committed_for_append(f->dir, qid);

	/* the rules entry changed between attempts: its numbers replace the
	 * old ones instead of adding up; the same version again adds up */
	assert_int_equal(qfile_append_part_done(fd, 0, V1, "0,2"), 0);
	assert_int_equal(qfile_append_part_done(fd, 0, 0xfedcba9876543210ULL, "1"), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_string_equal(q.rcpt[0].done, "1");
	assert_true(q.rcpt[0].done_version == 0xfedcba9876543210ULL);
	qfile_free(&q);
	assert_int_equal(qfile_append_part_done(fd, 0, 0xfedcba9876543210ULL, "3"), 0);
	assert_int_equal(qfile_read(fd, &q), 0);
	assert_string_equal(q.rcpt[0].done, "1,3");
	qfile_free(&q);
	close(fd);

	/* versions are a hash of the entry's bytes */
	assert_true(qfile_rules_version("a", 1) != qfile_rules_version("b", 1));
	assert_true(qfile_rules_version("ab", 2) == qfile_rules_version("ab", 2));
}

static void test_done_union(void **state)
{
	char *done = NULL;

	(void)state;
	assert_int_equal(qfile_done_union(&done, "4,1"), 1);
	assert_string_equal(done, "1,4");
	assert_int_equal(qfile_done_union(&done, "4"), 0);
	assert_string_equal(done, "1,4");
	assert_int_equal(qfile_done_union(&done, "10,0,4"), 1);
	assert_string_equal(done, "0,1,4,10");
	assert_int_equal(qfile_done_union(&done, "1,x"), -1);
	assert_int_equal(errno, EINVAL);
	assert_string_equal(done, "0,1,4,10");
	assert_int_equal(qfile_done_union(&done, ""), -1);
	free(done);
}

static void test_part_done_malformed(void **state)
{
	static const char *const good[][2] = {
		{ "0 " V1_HEX " 7", "7" }, { "0 " V1_HEX " 3,1,3", "1,3" },
	};
	static const char *const bad_payloads[] = {
		"", "0", "0 ", "0 " V1_HEX, "0 " V1_HEX " ", "0 7",    /* no version */
		"0 00000000000000AB 1", "0 0000000000000ab 1", "0 00000000000000abc 1",
		" 0 " V1_HEX " 1", "0 " V1_HEX "  1", "0 " V1_HEX " 1,", "0 " V1_HEX " ,1",
		"0 " V1_HEX " 1,,2", "0 " V1_HEX " x", "0 " V1_HEX " 1 2", "0 " V1_HEX " -1",
		"0 " V1_HEX " +1", "3 " V1_HEX " 1",    /* recipient out of range */
		"x " V1_HEX " 1", "0 " V1_HEX " 1\n",
		"0 " V1_HEX " 1000000",                 /* past the instruction cap */
		"0 " V1_HEX " 99999999999999999999999",
	};
	struct fixture *f = *state;
	struct qfile q;
	size_t clen;
	unsigned char *committed = committed_bytes(f->dir, &clen);

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_true(record_read(f->dir, committed, clen, 'P', good[i][0], 1, &q));
		assert_string_equal(q.rcpt[0].done, good[i][1]);
		qfile_free(&q);
	}
	for (size_t i = 0; i < sizeof(bad_payloads) / sizeof(bad_payloads[0]); i++)
		record_read(f->dir, committed, clen, 'P', bad_payloads[i], 0, &q);
	/* a NUL inside the list */
	assert_int_equal(read_with_record(f->dir, committed, clen, 'P', "0 " V1_HEX " 1\0" "2", 22,
	    &q), -1);
	assert_int_equal(errno, EBADMSG);
	free(committed);
}

/* ---- corruption ---- */

/* Commit a small message with two state records; return its bytes and the
 * offset just past 'E'. */
static unsigned char *small_file(const char *dir, size_t *len, size_t *committed)
{
	char qid[QID_MAX];
	const char *rcpts[] = { "a@x.test", "b@x.test" };
	commit_msg(dir, "", rcpts, 2, 1, (const unsigned char *)"Hi\0there\n", 9, 3, qid);
	const char *path = path_of(dir, "active", qid);
	size_t before;
	free(slurp(path, &before));
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(qfile_append_deferred(fd, 0, 1234, "later"), 0);
	assert_int_equal(qfile_append_done(fd, 1, RCPT_SENT, "done"), 0);
	close(fd);
	*committed = before;
	return slurp(path, len);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_truncated_everywhere(void **state)
{
	struct fixture *f = *state;
	size_t len, committed;
	unsigned char *full = small_file(f->dir, &len, &committed);
	size_t first_end = committed + 5 + get32(full + committed + 1);
	struct qfile q;

	assert_true(full[committed] == 'F' && first_end < len);
	for (size_t cut = 0; cut <= len; cut++) {
		/* an exact-size heap copy: ASan catches any read past the end */
		unsigned char *copy = malloc(cut ? cut : 1);
		memcpy(copy, full, cut);
		int r = read_bytes(f->dir, copy, cut, &q);
		free(copy);
		if (cut < committed) {
			assert_int_equal(r, -1);
			assert_int_equal(errno, EBADMSG);
			continue;
		}
		assert_int_equal(r, 0);
		assert_int_equal(q.nrcpt, 2);
		assert_int_equal(q.msg_size, 9);
		assert_int_equal(q.rcpt[0].attempts, cut >= first_end ? 1 : 0);
		assert_int_equal(q.rcpt[1].state, cut == len ? RCPT_SENT : RCPT_PENDING);
		assert_int_equal(q.end_offset, cut == len ? len : cut >= first_end ?
		    first_end : committed);
		qfile_free(&q);
	}
	free(full);
}

/* Every single-byte change of a small file is refused or parsed sanely. */
static void test_byte_flips(void **state)
{
	struct fixture *f = *state;
	size_t len, committed;
	unsigned char *full = small_file(f->dir, &len, &committed);
	struct qfile q;
	static const unsigned char values[] = { 0x00, 0x01, 0x7f, 0x80, 0xff, 'E', 'R', ' ' };

	for (size_t i = 0; i < len; i++) {
		for (size_t v = 0; v < sizeof(values); v++) {
			unsigned char *copy = malloc(len);
			memcpy(copy, full, len);
			copy[i] = values[v];
			int r = read_bytes(f->dir, copy, len, &q);
			free(copy);
			if (r == 0) {
				assert_true(q.nrcpt >= 1 && q.nrcpt <= 3);       /* 'B' -> 'R' */
				assert_true((uint64_t)q.msg_offset + q.msg_size <= len);
				assert_true(q.end_offset <= (off_t)len);
				assert_true(qid_valid(q.qid));
				qfile_free(&q);
			} else {
				assert_int_equal(errno, EBADMSG);
			}
		}
	}
	free(full);
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* Offset of the first record of this type (walking the records). */
static size_t find_record(const unsigned char *p, size_t len, char type)
{
	size_t pos = 0;
	while (pos + 5 <= len) {
		if (p[pos] == (unsigned char)type)
			return pos;
		pos += 5 + ((size_t)p[pos + 1] << 24 | (size_t)p[pos + 2] << 16 |
		    (size_t)p[pos + 3] << 8 | p[pos + 4]);
	}
	fail_msg("record %c not found", type);
	return 0;
}

static void expect_bad(const char *dir, const unsigned char *p, size_t len)
{
	struct qfile q;
	assert_int_equal(read_bytes(dir, p, len, &q), -1);
	assert_int_equal(errno, EBADMSG);
}

static void test_corrupt_refused(void **state)
{
	struct fixture *f = *state;
	size_t len, committed;
	unsigned char *full = small_file(f->dir, &len, &committed);
	unsigned char *c = malloc(len + 64);
	size_t r = find_record(full, len, 'R');
	size_t m = find_record(full, len, 'M');
	size_t d = find_record(full + committed, len - committed, 'D') + committed;

	memcpy(c, full, len);
	put32(c + r + 1, 0xfffffff0);                   /* huge recipient length */
	expect_bad(f->dir, c, len);
	memcpy(c, full, len);
	put32(c + m + 1, (uint32_t)len);                /* message past the end */
	expect_bad(f->dir, c, len);
	memcpy(c, full, len);
	c[0] = 'X';                                     /* not 'V' first */
	expect_bad(f->dir, c, len);
	memcpy(c, full, len);
	c[8] = '2';                                     /* "MPQ2": unknown version */
	expect_bad(f->dir, c, len);
	memcpy(c, full, len);
	c[r] = 'Z';                                     /* unknown type before E */
	expect_bad(f->dir, c, len);
	memcpy(c, full, len);
	c[d] = 'Z';                                     /* unknown type after E */
	expect_bad(f->dir, c, len);
	memcpy(c, full, len);
	c[d + 5] = '7';                                 /* recipient index 7 of 2 */
	expect_bad(f->dir, c, len);
	memcpy(c, full, len);
	put32(c + d + 1, 100000);                       /* state length over the cap */
	expect_bad(f->dir, c, len);
	memcpy(c, full, len);
	memcpy(c + d + 7, "lost", 4);                   /* "1 sent" -> "1 lost" */
	expect_bad(f->dir, c, len);

	/* a duplicated 'I' record, a second 'M' */
	memcpy(c, full, len);
	size_t i = find_record(full, len, 'I');
	size_t ilen = 5 + full[i + 4];
	memmove(c + i + ilen, c + i, len - i);
	expect_bad(f->dir, c, len + ilen);
	/* a recipient after 'M' */
	memcpy(c, full, committed - 5);
	memcpy(c + committed - 5, full + r, 5 + full[r + 4]);
	memcpy(c + committed - 5 + 5 + full[r + 4], "E\0\0\0\0", 5);
	expect_bad(f->dir, c, committed + 5 + full[r + 4]);
	/* no recipients at all */
	size_t n = 0;
	for (size_t pos = 0; pos < committed; pos += 5 + get32(full + pos + 1)) {
		size_t rl = 5 + get32(full + pos + 1);
		if (full[pos] != 'R') {
			memcpy(c + n, full + pos, rl);
			n += rl;
		}
	}
	expect_bad(f->dir, c, n);
	free(c);
	free(full);

	/* not a regular file */
	struct qfile q;
	int fd = open(f->dir, O_RDONLY | O_DIRECTORY);
	assert_int_equal(qfile_read(fd, &q), -1);
	assert_int_equal(errno, EBADMSG);
	close(fd);
}

/* ---- queue ids ---- */

static int cmp_qid(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_qid_unique(void **state)
{
	enum { N = 100000 };
	char (*ids)[QID_MAX] = malloc(N * sizeof(*ids));
	for (int i = 0; i < N; i++) {
		qid_generate(ids[i]);
		assert_true(qid_valid(ids[i]));
		assert_int_equal(strlen(ids[i]), 20);
		if (i > 0)
			assert_true(strcmp(ids[i - 1], ids[i]) < 0);    /* sorted by time */
	}
	qsort(ids, N, sizeof(*ids), cmp_qid);
	for (int i = 1; i < N; i++)
		assert_true(strcmp(ids[i - 1], ids[i]) != 0);
	free(ids);

	/* another process makes different ids in the same microsecond */
	char mine[QID_MAX], theirs[QID_MAX];
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		qid_generate(theirs);
		_exit(write(pfd[1], theirs, QID_MAX) == QID_MAX ? 0 : 1);
	}
	qid_generate(mine);
	assert_int_equal(read(pfd[0], theirs, QID_MAX), QID_MAX);
	waitpid(pid, NULL, 0);
	close(pfd[0]);
	close(pfd[1]);
	assert_string_not_equal(mine, theirs);
	assert_memory_not_equal(mine + 11, theirs + 11, 5);     /* the pid part */
}

static void test_qid_valid(void **state)
{
	assert_true(qid_valid("0A1B2C"));
	assert_true(qid_valid("Z"));
	assert_false(qid_valid(""));
	assert_false(qid_valid(NULL));
	assert_false(qid_valid("../x"));
	assert_false(qid_valid("ABC/DEF"));
	assert_false(qid_valid("abc"));
	assert_false(qid_valid("ABC "));
	assert_false(qid_valid("ABC\n"));
	assert_true(qid_valid("0123456789012345678901234567890"));   /* 31 */
	assert_false(qid_valid("01234567890123456789012345678901"));  /* 32 */
	assert_false(qid_valid("0123456789012345678901234567890123456789"));
}

/* ---- the queue directory ---- */

static void test_dirs_create(void **state)
{
	struct fixture *f = *state;
	char d[PATH_MAX], link[PATH_MAX], file[PATH_MAX];
	struct stat st;

	snprintf(d, sizeof(d), "%s/new/sub/queue", f->dir);
	assert_int_equal(queue_dirs_create(d, (uid_t)-1, (gid_t)-1), 0);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(path_of(d, "deferred", ""), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(path_of(d, "corrupt", ""), &st), 0);

	/* an existing directory with a loose mode is fixed */
	assert_int_equal(chmod(d, 0755), 0);
	assert_int_equal(chmod(path_of(d, "active", ""), 0777), 0);
	assert_int_equal(queue_dirs_create(d, (uid_t)-1, (gid_t)-1), 0);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(path_of(d, "active", ""), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);

	/* ownership when root: chown to the given owner */
	if (geteuid() == 0) {
		assert_int_equal(queue_dirs_create(d, 65534, 65534), 0);
		assert_int_equal(stat(path_of(d, "incoming", ""), &st), 0);
		assert_int_equal(st.st_uid, 65534);
		assert_int_equal(st.st_gid, 65534);
	}

	/* a symlink or a file is refused */
	snprintf(link, sizeof(link), "%s/link", f->dir);
	assert_int_equal(symlink(d, link), 0);
	assert_int_equal(queue_dirs_create(link, (uid_t)-1, (gid_t)-1), -1);
	assert_int_equal(errno, ENOTDIR);
	snprintf(file, sizeof(file), "%s/file", f->dir);
	spew(file, "x", 1);
	assert_int_equal(queue_dirs_create(file, (uid_t)-1, (gid_t)-1), -1);
	assert_int_equal(errno, ENOTDIR);
}

static void test_purge_incoming(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	struct qwriter *w1 = qwriter_open(f->dir, "h", "a", "SMTP", "", three_rcpts, 1, 0);
	struct qwriter *w2 = qwriter_open(f->dir, "h", "a", "SMTP", "", three_rcpts, 1, 0);
	struct qwriter *w3 = qwriter_open(f->dir, "h", "a", "SMTP", "", three_rcpts, 1, 0);
	assert_non_null(w1);
	assert_non_null(w2);
	assert_non_null(w3);
	snprintf(qid, sizeof(qid), "%s", qwriter_qid(w3));
	assert_int_equal(qwriter_commit(w3), 0);        /* committed, not taken */
	assert_int_equal(mkdir(path_of(f->dir, "incoming", "subdir"), 0700), 0);
	assert_int_equal(queue_purge_incoming(f->dir), 2);
	/* the directory and the committed message stay */
	assert_int_equal(count_entries(f->dir, "incoming"), 2);
	struct qfile q;
	assert_int_equal(read_path(path_of(f->dir, "incoming", qid), &q), 0);
	qfile_free(&q);
	assert_int_equal(queue_purge_incoming(f->dir), 0);
	qwriter_abort(w1);
	qwriter_abort(w2);
	assert_int_equal(rmdir(path_of(f->dir, "incoming", "subdir")), 0);
}

static void test_move(void **state)
{
	struct fixture *f = *state;
	char qid[QID_MAX];
	struct qfile q;

	commit_msg(f->dir, "", three_rcpts, 1, 0, (const unsigned char *)"m", 1, 1, qid);
	assert_int_equal(queue_move(f->dir, qid, "active", "deferred"), 0);
	assert_int_equal(read_path(path_of(f->dir, "deferred", qid), &q), 0);
	qfile_free(&q);
	assert_int_equal(count_entries(f->dir, "active"), 0);
	assert_int_equal(queue_move(f->dir, qid, "active", "deferred"), -1);
	assert_int_equal(errno, ENOENT);
	/* an existing target is never replaced */
	spew(path_of(f->dir, "active", qid), "x", 1);
	assert_int_equal(queue_move(f->dir, qid, "deferred", "active"), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(queue_move(f->dir, qid, "deferred", "corrupt"), 0);
	assert_int_equal(queue_move(f->dir, "../x", "active", "deferred"), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(queue_move(f->dir, qid, "active", "../etc"), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(queue_move(f->dir, qid, "active", "incoming"), -1);
	assert_int_equal(errno, EINVAL);
}

/* ---- disk full ---- */

/* In a child: write 1 MB with a file size limit of 100 KB; the error must
 * surface as EFBIG and the incoming file must be gone. */
static int child_fsize(const char *dir)
{
	struct rlimit rl = { 100000, 100000 };
	static unsigned char chunk[4096];
	signal(SIGXFSZ, SIG_IGN);
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
		return 10;
	struct qwriter *w = qwriter_open(dir, "h", "a", "SMTP", "", three_rcpts, 3, 0);
	if (w == NULL)
		return 11;
	int r = 0;
	for (int i = 0; i < 256 && r == 0; i++)
		r = qwriter_write(w, chunk, sizeof(chunk));
	if (r == 0)
		return 12;
	if (errno != EFBIG)
		return 13;
	if (qwriter_commit(w) != -1 || errno != EFBIG)
		return 14;
	/* a message that only fails at commit: the final flush */
	w = qwriter_open(dir, "h", "a", "SMTP", "", three_rcpts, 3, 0);
	if (w == NULL)
		return 15;
	rl.rlim_cur = rl.rlim_max = 1000;
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0 || qwriter_write(w, chunk, 2000) < 0)
		return 16;
	if (qwriter_commit(w) != -1 || errno != EFBIG)
		return 17;
	return 0;
}

static void run_child(int (*fn)(const char *), const char *dir, int *status)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn(dir));
	assert_int_equal(waitpid(pid, status, 0), pid);
}

static void test_file_size_limit(void **state)
{
	struct fixture *f = *state;
	int status;
	run_child(child_fsize, f->dir, &status);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(count_entries(f->dir, "incoming"), 0);
	assert_int_equal(count_entries(f->dir, "active"), 0);
}

static void write_small(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd >= 0) {
		ssize_t n = write(fd, text, strlen(text));
		(void)n;
		close(fd);
	}
}

/* In a child with its own user and mount namespace: a 256 KB tmpfs as the
 * queue; writing 1 MB must fail with ENOSPC and leave nothing behind.
 * Exit 77 when namespaces are not available here. */
static int child_enospc(const char *dir)
{
	static unsigned char chunk[8192];
	char q[PATH_MAX];

	char uid_map[64], gid_map[64];
	snprintf(uid_map, sizeof(uid_map), "0 %d 1", (int)geteuid());
	snprintf(gid_map, sizeof(gid_map), "0 %d 1", (int)getegid());
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return 77;
	write_small("/proc/self/setgroups", "deny");
	write_small("/proc/self/uid_map", uid_map);
	write_small("/proc/self/gid_map", gid_map);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=256k") < 0)
		return 77;
	snprintf(q, sizeof(q), "%s/q", dir);
	if (queue_dirs_create(q, (uid_t)-1, (gid_t)-1) < 0) {
		perror("queue_dirs_create");
		return 20;
	}
	struct qwriter *w = qwriter_open(q, "h", "a", "SMTP", "", three_rcpts, 3, 0);
	if (w == NULL)
		return 21;
	int r = 0;
	for (int i = 0; i < 128 && r == 0; i++)
		r = qwriter_write(w, chunk, sizeof(chunk));
	if (r == 0)
		r = qwriter_commit(w);
	else if (errno != ENOSPC)
		return 22;
	else
		r = qwriter_commit(w);
	if (r != -1 || errno != ENOSPC)
		return 23;
	if (count_entries(q, "incoming") != 0 || count_entries(q, "active") != 0)
		return 24;
	/* once there is room again, the next message goes through */
	w = qwriter_open(q, "h", "a", "SMTP", "", three_rcpts, 3, 0);
	if (w == NULL || qwriter_write(w, chunk, 100) < 0 || qwriter_commit(w) < 0)
		return 25;
	return 0;
}

static void test_disk_full(void **state)
{
	struct fixture *f = *state;
	int status;
	run_child(child_enospc, f->dir, &status);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip_7bit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_refuses_bad_envelope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uncommitted_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_state_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_warned_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_warned_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_warned_torn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_part_done_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_part_done_other_version, setup, teardown),
		cmocka_unit_test(test_done_union),
		cmocka_unit_test_setup_teardown(test_part_done_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_everywhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_byte_flips, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_refused, setup, teardown),
		cmocka_unit_test(test_qid_unique),
		cmocka_unit_test(test_qid_valid),
		cmocka_unit_test_setup_teardown(test_dirs_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_purge_incoming, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_size_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_finished_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_states, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_reserve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_with_id, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
