/*
 * test_deliver.c - maildir and mbox delivery, path expansion, safe open
 * and the errno mapping, each in a fresh temporary "home".
 *
 * Failures are injected without relying on permission denial (CI may run
 * as root): RLIMIT_FSIZE for a write that fails half way, a queue file
 * shorter than announced, locks held by us or by a child process.  Cases
 * that need root (a symlink owned by another user, a file owned by another
 * user, a tiny tmpfs for ENOSPC) are skipped otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <grp.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <regex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deliver/deliver.h"
#include "lib/buf.h"
#include "lib/safe_open.h"

#define QPREFIX "QUEUE-ENVELOPE-RECORDS\nsender=x\nrcpt=y\n"
#define QSUFFIX "TRAILING-RECORDS-NOT-PART-OF-THE-MESSAGE\n"
#define QOFFSET_SENTINEL 7
#define SENDER "alice@example.test"
#define RCPT "bob@example.test"
#define PREFIX "Return-Path: <" SENDER ">\nDelivered-To: " RCPT "\n"

static const char simple_msg[] =
	"Received: from client by mx; Mon, 1 Jan 2024 00:00:00 +0000\n"
	"From: Alice <" SENDER ">\n"
	"Subject: hello\n"
	"\n"
	"Hello Bob.\n";

struct fixture {
	char home[128];
	char path[1024];
	int qfd;
	struct delivery_msg m;
	int mounted;
	char mountpoint[PATH_MAX];
};

/* ---------- helpers ---------- */

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(p);
}

static void make_queue(struct fixture *fx, const char *msg, size_t len)
{
	char qpath[PATH_MAX];
	snprintf(qpath, sizeof(qpath), "%s/queuefile", fx->home);
	if (fx->qfd >= 0)
		close(fx->qfd);
	int fd = open(qpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, QPREFIX, strlen(QPREFIX)), (ssize_t)strlen(QPREFIX));
	if (len > 0)
		assert_int_equal(write(fd, msg, len), (ssize_t)len);
	assert_int_equal(write(fd, QSUFFIX, strlen(QSUFFIX)), (ssize_t)strlen(QSUFFIX));
	assert_int_equal(close(fd), 0);
	fx->qfd = open(qpath, O_RDONLY);
	assert_true(fx->qfd >= 0);
	assert_int_equal(unlink(qpath), 0);
	assert_int_equal(lseek(fx->qfd, QOFFSET_SENTINEL, SEEK_SET), QOFFSET_SENTINEL);
	fx->m.qfd = fx->qfd;
	fx->m.msg_offset = (off_t)strlen(QPREFIX);
	fx->m.msg_size = len;
}

static void assert_qfd_offset_untouched(struct fixture *fx)
{
	assert_int_equal(lseek(fx->qfd, 0, SEEK_CUR), QOFFSET_SENTINEL);
}

static const char *in_home(struct fixture *fx, const char *rel)
{
	snprintf(fx->path, sizeof(fx->path), "%s/%s", fx->home, rel);
	return fx->path;
}

/* link(2) within home (in_home's buffer holds one path at a time) */
static int link_in_home(struct fixture *fx, const char *from, const char *to)
{
	char a[1024];
	snprintf(a, sizeof(a), "%s", in_home(fx, from));
	return link(a, in_home(fx, to));
}

static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char *p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	assert_int_equal(read(fd, p, (size_t)st.st_size), st.st_size);
	p[st.st_size] = '\0';
	close(fd);
	if (len)
		*len = (size_t)st.st_size;
	return p;
}

/* Number of entries in dir (without . and ..); the last one's name. */
static int count_entries(const char *dir, char *name, size_t namelen)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		n++;
		if (name)
			snprintf(name, namelen, "%s", e->d_name);
	}
	closedir(d);
	return n;
}

static int count_sub(struct fixture *fx, const char *maildir, const char *sub, char *name,
    size_t namelen)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/%s/%s", fx->home, maildir, sub);
	return count_entries(p, name, namelen);
}

static off_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static int exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	if (fx == NULL)
		return -1;
	snprintf(fx->home, sizeof(fx->home), "/tmp/test_deliver.XXXXXX");
	if (mkdtemp(fx->home) == NULL)
		return -1;
	fx->qfd = -1;
	fx->m.sender = SENDER;
	fx->m.recipient = RCPT;
	fx->m.home = fx->home;
	deliver_set_lock_timeout_ms(30000);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	if (fx->mounted)
		umount2(fx->mountpoint, MNT_DETACH);
	if (fx->qfd >= 0)
		close(fx->qfd);
	nftw(fx->home, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static void deliver_simple_maildir(struct fixture *fx, const char *rel, struct delivery_result *r)
{
	make_queue(fx, simple_msg, strlen(simple_msg));
	deliver_maildir(&fx->m, in_home(fx, rel), r);
}

/* ---------- path expansion ---------- */

static void expect_path(const char *tmpl, const char *home, const char *want)
{
	char out[PATH_MAX], err[256] = "";
	int rc = deliver_expand_path(tmpl, home, out, sizeof(out), err, sizeof(err));
	if (rc != 0)
		fail_msg("%s: %s", tmpl, err);
	assert_string_equal(out, want);
}

static void expect_refused(const char *tmpl, const char *home, const char *why)
{
	char out[PATH_MAX], err[256] = "";
	assert_int_equal(deliver_expand_path(tmpl, home, out, sizeof(out), err, sizeof(err)), -1);
	if (strstr(err, why) == NULL)
		fail_msg("%s: reason \"%s\" does not mention \"%s\"", tmpl, err, why);
}

static void test_expand_path(void **state)
{
	(void)state;
	expect_path("~", "/home/u", "/home/u");
	expect_path("~/", "/home/u", "/home/u/");
	expect_path("~/Maildir/", "/home/u", "/home/u/Maildir/");
	expect_path("~/Maildir/.Junk/", "/home/u/", "/home/u/Maildir/.Junk/");
	expect_path("~//x/./y", "/home//u/", "/home/u/x/y");
	expect_path("~/mbox", "/", "/mbox");
	expect_path("/var/mail/bob", "/home/u", "/var/mail/bob");
	expect_path("/var/mail/bob", NULL, "/var/mail/bob");
	expect_path("/", "/home/u", "/");

	expect_refused("~bob/Maildir/", "/home/u", "~user");
	expect_refused("Maildir/", "/home/u", "relative");
	expect_refused("./Maildir/", "/home/u", "relative");
	expect_refused("", "/home/u", "empty");
	expect_refused("~/../v/Maildir", "/home/u", "..");
	expect_refused("~/a/../b", "/home/u", "..");
	expect_refused("~/a/..", "/home/u", "..");
	expect_refused("/var/mail/../../etc/passwd", "/home/u", "..");
	expect_refused("~/x", "home/u", "home");
	expect_refused("~/x", NULL, "home");

	char small[8], err[64];
	assert_int_equal(deliver_expand_path("~/Maildir/", "/home/u", small, sizeof(small),
	    err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too long"));
}

/* ---------- errno mapping ---------- */

static void expect_errno(int e, enum delivery_status st, const char *dsn)
{
	struct delivery_result r;
	memset(&r, 0, sizeof(r));
	deliver_errno_result(&r, e, "write", "/m/box");
	assert_int_equal(r.status, st);
	assert_string_equal(r.dsn, dsn);
}

static void test_errno_result(void **state)
{
	(void)state;
	expect_errno(ENOSPC, DELIVERY_TEMPFAIL, "4.3.1");
	expect_errno(EDQUOT, DELIVERY_TEMPFAIL, "4.2.2");
	expect_errno(EIO, DELIVERY_TEMPFAIL, "4.3.0");
	expect_errno(EAGAIN, DELIVERY_TEMPFAIL, "4.3.0");
	expect_errno(EROFS, DELIVERY_TEMPFAIL, "4.3.0");
	expect_errno(ENOENT, DELIVERY_TEMPFAIL, "4.3.0");
	expect_errno(EPROTO, DELIVERY_TEMPFAIL, "4.3.0");
	expect_errno(EACCES, DELIVERY_TEMPFAIL, "4.2.0");      /* a mode to fix */
	expect_errno(EPERM, DELIVERY_PERMFAIL, "5.2.0");
	expect_errno(ELOOP, DELIVERY_PERMFAIL, "5.2.0");
	expect_errno(EFBIG, DELIVERY_PERMFAIL, "5.2.0");
	expect_errno(EMLINK, DELIVERY_PERMFAIL, "5.2.0");

	struct delivery_result r;
	deliver_errno_result(&r, ENOSPC, "write", "/m/box");
	assert_string_equal(r.text, "write /m/box: No space left on device");
	deliver_errno_result(&r, EIO, "read queue file", NULL);
	assert_string_equal(r.text, "read queue file: Input/output error");
}

/* ---------- maildir ---------- */

static void check_maildir_name(const char *name, off_t size)
{
	regex_t re;
	regmatch_t mt[2];
	assert_int_equal(regcomp(&re, "^[0-9]+\\.M[0-9]+P[0-9]+Q[0-9]+\\.[^/:]+,S=([0-9]+)$",
	    REG_EXTENDED), 0);
	int rc = regexec(&re, name, 2, mt, 0);
	regfree(&re);
	if (rc != 0)
		fail_msg("bad maildir name %s", name);
	assert_int_equal(strtoll(name + mt[1].rm_so, NULL, 10), size);
}

static void test_maildir_basic(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	char name[NAME_MAX + 1], p[PATH_MAX * 2];
	struct stat st;

	deliver_simple_maildir(fx, "Maildir/", &r);
	if (r.status != DELIVERY_OK)
		fail_msg("%s %s", r.dsn, r.text);
	assert_string_equal(r.dsn, "2.0.0");
	assert_int_equal(count_sub(fx, "Maildir", "tmp", NULL, 0), 0);
	assert_int_equal(count_sub(fx, "Maildir", "cur", NULL, 0), 0);
	assert_int_equal(count_sub(fx, "Maildir", "new", name, sizeof(name)), 1);
	snprintf(p, sizeof(p), "%s/Maildir/new/%s", fx->home, name);
	size_t len;
	char *got = slurp(p, &len);
	assert_string_equal(got, PREFIX "Received: from client by mx; Mon, 1 Jan 2024 00:00:00 +0000\n"
	    "From: Alice <" SENDER ">\nSubject: hello\n\nHello Bob.\n");
	free(got);
	check_maildir_name(name, (off_t)len);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(stat(in_home(fx, "Maildir/new"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_false(exists(in_home(fx, "Maildir/maildirfolder")));
	assert_qfd_offset_untouched(fx);
}

static void test_maildir_null_sender_distinct_names(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	char n1[NAME_MAX + 1], n2[NAME_MAX + 1], p[PATH_MAX * 2];

	fx->m.sender = "";
	deliver_simple_maildir(fx, "Maildir", &r);
	assert_int_equal(r.status, DELIVERY_OK);
	assert_int_equal(count_sub(fx, "Maildir", "new", n1, sizeof(n1)), 1);
	deliver_simple_maildir(fx, "Maildir", &r);
	assert_int_equal(r.status, DELIVERY_OK);
	assert_int_equal(count_sub(fx, "Maildir", "new", NULL, 0), 2);
	DIR *d = opendir(in_home(fx, "Maildir/new"));
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && strcmp(e->d_name, n1) != 0)
			snprintf(n2, sizeof(n2), "%s", e->d_name);
	closedir(d);
	assert_string_not_equal(n1, n2);
	snprintf(p, sizeof(p), "%s/Maildir/new/%s", fx->home, n2);
	char *got = slurp(p, NULL);
	assert_memory_equal(got, "Return-Path: <>\nDelivered-To: " RCPT "\nReceived:", 48);
	free(got);
}

static void test_maildir_folder_on_demand(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	struct stat st;

	deliver_simple_maildir(fx, "Maildir/.Junk/", &r);
	if (r.status != DELIVERY_OK)
		fail_msg("%s %s", r.dsn, r.text);
	assert_int_equal(stat(in_home(fx, "Maildir/.Junk/maildirfolder"), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(count_sub(fx, "Maildir/.Junk", "new", NULL, 0), 1);
	assert_int_equal(count_sub(fx, "Maildir/.Junk", "tmp", NULL, 0), 0);
	assert_true(exists(in_home(fx, "Maildir/.Junk/cur")));
	assert_int_equal(stat(in_home(fx, "Maildir"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_maildir_not_beyond_home(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	char home[256];

	snprintf(home, sizeof(home), "%s/absent-home", fx->home);
	fx->m.home = home;
	deliver_simple_maildir(fx, "absent-home/Maildir/", &r);
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_false(exists(home));
}

/* An absolute maildir outside the home (/srv/vmail/DOMAIN/USER/Maildir/)
 * is made with its missing parents, as the account; the home's own
 * ancestors never are. */
static void test_maildir_created_outside_home(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	char home[256];
	struct stat st;

	snprintf(home, sizeof(home), "%s/h", fx->home);
	assert_int_equal(mkdir(home, 0700), 0);
	fx->m.home = home;
	deliver_simple_maildir(fx, "srv/vmail/example.test/alice/Maildir/", &r);
	if (r.status != DELIVERY_OK)
		fail_msg("%s %s", r.dsn, r.text);
	assert_int_equal(count_sub(fx, "srv/vmail/example.test/alice/Maildir", "new", NULL, 0), 1);
	assert_int_equal(stat(in_home(fx, "srv/vmail/example.test"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	snprintf(home, sizeof(home), "%s/absent/home", fx->home);
	deliver_simple_maildir(fx, "absent/home/Maildir/", &r);
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_false(exists(in_home(fx, "absent")));
}

static void test_maildir_dotdot_refused(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	deliver_simple_maildir(fx, "x/../Maildir/", &r);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_string_equal(r.dsn, "5.2.0");
	assert_non_null(strstr(r.text, ".."));
	assert_false(exists(in_home(fx, "x")));
}

static void test_maildir_own_symlink_followed(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	assert_int_equal(mkdir(in_home(fx, "real"), 0700), 0);
	assert_int_equal(symlink("real", in_home(fx, "Maildir")), 0);
	deliver_simple_maildir(fx, "Maildir/.Work/", &r);
	if (r.status != DELIVERY_OK)
		fail_msg("%s %s", r.dsn, r.text);
	assert_int_equal(count_sub(fx, "real/.Work", "new", NULL, 0), 1);
}

static void test_maildir_dangling_symlink_not_created(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	assert_int_equal(symlink("elsewhere/x", in_home(fx, "Maildir")), 0);
	deliver_simple_maildir(fx, "Maildir/", &r);
	assert_int_not_equal(r.status, DELIVERY_OK);
	assert_false(exists(in_home(fx, "elsewhere")));
}

static void test_foreign_symlink_refused(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	if (geteuid() != 0) {
		fprintf(stderr, "skipped: a symlink owned by another user needs root to make\n");
		skip();
	}
	assert_int_equal(mkdir(in_home(fx, "real"), 0700), 0);
	assert_int_equal(symlink("real", in_home(fx, "Maildir")), 0);
	assert_int_equal(lchown(in_home(fx, "Maildir"), 65534, 65534), 0);
	deliver_simple_maildir(fx, "Maildir/", &r);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_string_equal(r.dsn, "5.2.0");
	assert_non_null(strstr(r.text, "unsafe path"));
	assert_false(exists(in_home(fx, "real/new")));

	deliver_mbox(&fx->m, in_home(fx, "Maildir/mbox"), &r);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_non_null(strstr(r.text, "unsafe path"));
	assert_false(exists(in_home(fx, "real/mbox")));
}

static void set_fsize_limit(rlim_t limit, struct rlimit *old)
{
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, old), 0);
	rl = *old;
	rl.rlim_cur = limit;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static char *big_message(size_t size)
{
	char *msg = malloc(size + 1);
	assert_non_null(msg);
	size_t n = (size_t)snprintf(msg, size, "Received: by test\nSubject: big\n\n");
	for (size_t i = n; i < size; i++)
		msg[i] = (i % 61 == 60) ? '\n' : (char)('a' + i % 26);
	msg[size - 1] = '\n';
	msg[size] = '\0';
	return msg;
}

static void test_maildir_large_exact(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	char name[NAME_MAX + 1], p[PATH_MAX * 2];
	size_t size = 300 * 1024 + 17, len;
	char *msg = big_message(size);

	make_queue(fx, msg, size);
	deliver_maildir(&fx->m, in_home(fx, "Maildir"), &r);
	assert_int_equal(r.status, DELIVERY_OK);
	assert_int_equal(count_sub(fx, "Maildir", "new", name, sizeof(name)), 1);
	snprintf(p, sizeof(p), "%s/Maildir/new/%s", fx->home, name);
	char *got = slurp(p, &len);
	assert_int_equal(len, strlen(PREFIX) + size);
	assert_memory_equal(got, PREFIX, strlen(PREFIX));
	assert_memory_equal(got + strlen(PREFIX), msg, size);
	check_maildir_name(name, (off_t)len);
	assert_qfd_offset_untouched(fx);
	free(got);
	free(msg);
}

static void test_maildir_write_failure_cleans_tmp(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	struct rlimit old;
	size_t size = 200 * 1024;
	char *msg = big_message(size);

	make_queue(fx, msg, size);
	set_fsize_limit(4096, &old);
	deliver_maildir(&fx->m, in_home(fx, "Maildir"), &r);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_string_equal(r.dsn, "5.2.0");
	assert_non_null(strstr(r.text, "File too large"));
	assert_int_equal(count_sub(fx, "Maildir", "tmp", NULL, 0), 0);
	assert_int_equal(count_sub(fx, "Maildir", "new", NULL, 0), 0);
	free(msg);
}

static void test_maildir_short_queue_file(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	make_queue(fx, simple_msg, strlen(simple_msg));
	fx->m.msg_size = 1 << 20;       /* more than the file holds */
	deliver_maildir(&fx->m, in_home(fx, "Maildir"), &r);
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_string_equal(r.dsn, "4.3.0");
	assert_non_null(strstr(r.text, "queue file"));
	assert_int_equal(count_sub(fx, "Maildir", "tmp", NULL, 0), 0);
	assert_int_equal(count_sub(fx, "Maildir", "new", NULL, 0), 0);
}

/* ---------- mbox ---------- */

static const char quote_msg[] =
	"Received: by mx\n"
	"Subject: quoting\n"
	"\n"
	"From the start\n"
	">From once quoted\n"
	">>From twice quoted\n"
	"Fromage is cheese\n"
	"From\n"
	" From indented\n"
	">>> not a from line\n"
	">Fro\n"
	"last line without newline";

static const char quote_want[] =
	PREFIX
	"Received: by mx\n"
	"Subject: quoting\n"
	"\n"
	">From the start\n"
	">>From once quoted\n"
	">>>From twice quoted\n"
	"Fromage is cheese\n"
	"From\n"
	" From indented\n"
	">>> not a from line\n"
	">Fro\n"
	"last line without newline\n"
	"\n";

static void check_from_line(const char *line, const char *sender)
{
	char pattern[256];
	regex_t re;
	snprintf(pattern, sizeof(pattern), "^From %s (Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
	    "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3][0-9] "
	    "[0-2][0-9]:[0-5][0-9]:[0-6][0-9] [0-9]{4}\n", sender);
	assert_int_equal(regcomp(&re, pattern, REG_EXTENDED), 0);
	int rc = regexec(&re, line, 0, NULL, 0);
	regfree(&re);
	if (rc != 0)
		fail_msg("bad From_ line: %.80s", line);
}

static void test_mbox_new_file_quoting(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	struct stat st;
	char lock[PATH_MAX + 8];

	make_queue(fx, quote_msg, strlen(quote_msg));
	deliver_mbox(&fx->m, in_home(fx, "mail/inbox"), &r);
	if (r.status != DELIVERY_OK)
		fail_msg("%s %s", r.dsn, r.text);
	assert_string_equal(r.dsn, "2.0.0");
	char *got = slurp(in_home(fx, "mail/inbox"), NULL);
	check_from_line(got, SENDER);
	assert_string_equal(strchr(got, '\n') + 1, quote_want);
	free(got);
	assert_int_equal(stat(in_home(fx, "mail/inbox"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(lock, sizeof(lock), "%s.lock", in_home(fx, "mail/inbox"));
	assert_false(exists(lock));
	assert_qfd_offset_untouched(fx);
}

static void test_mbox_second_append_keeps_first(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	size_t len1, len2;

	make_queue(fx, simple_msg, strlen(simple_msg));
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_OK);
	char *first = slurp(in_home(fx, "mbox"), &len1);

	fx->m.sender = "";
	make_queue(fx, quote_msg, strlen(quote_msg));
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_OK);
	char *both = slurp(in_home(fx, "mbox"), &len2);
	assert_true(len2 > len1);
	assert_memory_equal(both, first, len1);
	check_from_line(both + len1, "MAILER-DAEMON");
	char *second = strchr(both + len1, '\n') + 1;
	assert_memory_equal(second, "Return-Path: <>\nDelivered-To: " RCPT "\n", 46);
	assert_string_equal(both + len2 - 3, "e\n\n");
	free(first);
	free(both);
}

/* A reference mboxrd quoting, line by line, for the streaming one. */
static void quote_reference(const char *msg, size_t len, struct buf *out)
{
	const char *p = msg, *end = msg + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		size_t gt = strspn(p, ">");
		if (gt < n && (size_t)(end - p) >= gt + 5 && memcmp(p + gt, "From ", 5) == 0)
			buf_putc(out, '>');
		buf_append(out, p, n);
		p += n;
	}
	if (len == 0 || msg[len - 1] != '\n')
		buf_putc(out, '\n');
	buf_putc(out, '\n');
}

/* Put text at exactly position pos of msg, preceded by a newline. */
static void place_line(char *msg, size_t pos, const char *text)
{
	msg[pos - 1] = '\n';
	memcpy(msg + pos, text, strlen(text));
}

static void test_mbox_quoting_across_chunks(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	size_t size = 400 * 1024, len;
	char *msg = big_message(size);
	struct buf want = BUF_INIT;

	/* the copy reads 128 KiB at a time: split "From " and ">>>" runs */
	place_line(msg, 131072 - 2, "From split\n");
	place_line(msg, 2 * 131072 - 3, ">>>From split\n");
	place_line(msg, 3 * 131072 - 1, ">>>>>>Fro split\n");
	place_line(msg, 1000, "From early\n");
	make_queue(fx, msg, size);
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_OK);
	char *got = slurp(in_home(fx, "mbox"), &len);
	buf_puts(&want, PREFIX);
	quote_reference(msg, size, &want);
	char *body = strchr(got, '\n') + 1;
	assert_int_equal(len - (size_t)(body - got), want.len);
	assert_memory_equal(body, want.data, want.len);
	assert_non_null(strstr(body, "\n>From split\n"));
	assert_non_null(strstr(body, "\n>>>>From split\n"));
	assert_non_null(strstr(body, "\n>>>>>>Fro split\n"));
	buf_free(&want);
	free(got);
	free(msg);
}

static void test_mbox_failure_truncates(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	struct rlimit old;
	size_t len1, len2, size = 200 * 1024;
	char *msg = big_message(size);

	make_queue(fx, simple_msg, strlen(simple_msg));
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_OK);
	char *before = slurp(in_home(fx, "mbox"), &len1);

	make_queue(fx, msg, size);
	set_fsize_limit((rlim_t)len1 + 70000, &old);     /* fails after a partial write */
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_string_equal(r.dsn, "5.2.0");
	assert_non_null(strstr(r.text, "File too large"));
	char *after = slurp(in_home(fx, "mbox"), &len2);
	assert_int_equal(len2, len1);
	assert_memory_equal(after, before, len1);

	/* a queue file shorter than announced: temporary, also rolled back */
	make_queue(fx, simple_msg, strlen(simple_msg));
	fx->m.msg_size = 1 << 20;
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_string_equal(r.dsn, "4.3.0");
	assert_int_equal(file_size(in_home(fx, "mbox")), (off_t)len1);
	free(before);
	free(after);
	free(msg);
}

static void test_mbox_refuses_symlink(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	make_queue(fx, simple_msg, strlen(simple_msg));
	int fd = open(in_home(fx, "target"), O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(symlink("target", in_home(fx, "mbox")), 0);
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_string_equal(r.dsn, "5.2.0");
	assert_non_null(strstr(r.text, "symbolic link"));
	assert_int_equal(file_size(in_home(fx, "target")), 0);

	/* a dangling one must not create its target either */
	assert_int_equal(symlink("created-by-us", in_home(fx, "mbox2")), 0);
	deliver_mbox(&fx->m, in_home(fx, "mbox2"), &r);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_false(exists(in_home(fx, "created-by-us")));
}

static void test_mbox_refuses_hard_link(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	make_queue(fx, simple_msg, strlen(simple_msg));
	int fd = open(in_home(fx, "target"), O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(link_in_home(fx, "target", "mbox"), 0);
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_string_equal(r.dsn, "5.2.0");
	assert_non_null(strstr(r.text, "hard links"));
	assert_int_equal(file_size(in_home(fx, "target")), 0);
}

static void test_mbox_refuses_directory_and_fifo(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	make_queue(fx, simple_msg, strlen(simple_msg));
	assert_int_equal(mkdir(in_home(fx, "dir"), 0700), 0);
	deliver_mbox(&fx->m, in_home(fx, "dir"), &r);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_int_equal(mkfifo(in_home(fx, "fifo"), 0600), 0);
	deliver_mbox(&fx->m, in_home(fx, "fifo"), &r);     /* must not block */
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_non_null(strstr(r.text, "not a regular file"));
	deliver_mbox(&fx->m, in_home(fx, "dir/"), &r);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
}

static void test_mbox_refuses_foreign_owner(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	if (geteuid() != 0) {
		fprintf(stderr, "skipped: a file owned by another user needs root to make\n");
		skip();
	}
	make_queue(fx, simple_msg, strlen(simple_msg));
	int fd = open(in_home(fx, "mbox"), O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(chown(in_home(fx, "mbox"), 65534, 65534), 0);
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_PERMFAIL);
	assert_non_null(strstr(r.text, "owned by uid 65534"));
	assert_int_equal(file_size(in_home(fx, "mbox")), 0);
}

static void make_lock_file(struct fixture *fx, time_t age)
{
	char lock[PATH_MAX + 8];
	snprintf(lock, sizeof(lock), "%s.lock", in_home(fx, "mbox"));
	int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	struct timespec ts[2] = { { time(NULL) - age, 0 }, { time(NULL) - age, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, lock, ts, 0), 0);
}

static void test_mbox_dotlock_busy_and_stale(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	char lock[PATH_MAX + 8];

	make_queue(fx, simple_msg, strlen(simple_msg));
	snprintf(lock, sizeof(lock), "%s.lock", in_home(fx, "mbox"));
	make_lock_file(fx, 10);
	deliver_set_lock_timeout_ms(300);
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_string_equal(r.dsn, "4.2.1");
	assert_non_null(strstr(r.text, "mailbox locked"));
	assert_true(exists(lock));              /* not ours: left alone */
	assert_false(exists(in_home(fx, "mbox")));

	assert_int_equal(unlink(lock), 0);
	make_lock_file(fx, 600);                /* older than five minutes */
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_OK);
	assert_false(exists(lock));
}

/* Run deliver_mbox(path) in a child that is uid/gid 65534 (nobody), as a
 * root-mode worker would be; the child's result comes back through a
 * pipe.  -1 (skip) when we are not root. */
static int mbox_as_nobody(struct fixture *fx, const char *path, struct delivery_result *r)
{
	int p[2];

	if (geteuid() != 0)
		return -1;
	assert_int_equal(chmod(fx->home, 0711), 0);
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct delivery_result cr;
		close(p[0]);
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			_exit(1);
		deliver_mbox(&fx->m, path, &cr);
		_exit(write(p[1], &cr, sizeof(cr)) == (ssize_t)sizeof(cr) ? 0 : 1);
	}
	close(p[1]);
	assert_int_equal(read(p[0], r, sizeof(*r)), (ssize_t)sizeof(*r));
	close(p[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return 0;
}

/* A directory where the account may not make a lock file, holding an mbox
 * it may write: delivered with the fcntl lock alone, and said so (the
 * dotlock was once skipped without a word). */
static void test_mbox_no_lock_file_said(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	make_queue(fx, simple_msg, strlen(simple_msg));
	assert_int_equal(mkdir(in_home(fx, "ro"), 0755), 0);
	int fd = open(in_home(fx, "ro/mbox"), O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(chown(in_home(fx, "ro/mbox"), 65534, 65534), 0);
	if (mbox_as_nobody(fx, in_home(fx, "ro/mbox"), &r) < 0) {
		fprintf(stderr, "skipped: needs root to run as another user\n");
		skip();
	}
	if (r.status != DELIVERY_OK)
		fail_msg("%s %s", r.dsn, r.text);
	assert_non_null(strstr(r.text, "fcntl lock only"));
	assert_true(file_size(in_home(fx, "ro/mbox")) > 0);

	/* a missing mbox there cannot be made: temporary, not a bounce */
	assert_int_equal(mbox_as_nobody(fx, in_home(fx, "ro/other"), &r), 0);
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_string_equal(r.dsn, "4.2.0");
	assert_false(exists(in_home(fx, "ro/other")));
}

/* A stale lock file we may not remove (another user's, in a sticky
 * directory): the mailbox stays locked, a temporary 4.2.1. */
static void test_mbox_stale_lock_not_removable(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	char lock[PATH_MAX + 8];

	make_queue(fx, simple_msg, strlen(simple_msg));
	assert_int_equal(mkdir(in_home(fx, "sticky"), 0777), 0);
	assert_int_equal(chmod(in_home(fx, "sticky"), 01777), 0);
	snprintf(lock, sizeof(lock), "%s", in_home(fx, "sticky/mbox.lock"));
	int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	struct timespec ts[2] = { { time(NULL) - 600, 0 }, { time(NULL) - 600, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, lock, ts, 0), 0);
	if (mbox_as_nobody(fx, in_home(fx, "sticky/mbox"), &r) < 0) {
		fprintf(stderr, "skipped: needs root to run as another user\n");
		skip();
	}
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_string_equal(r.dsn, "4.2.1");
	assert_non_null(strstr(r.text, "stale lock file"));
	assert_true(exists(lock));
	assert_false(exists(in_home(fx, "sticky/mbox")));
}

static void test_mbox_fcntl_lock_busy(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	int ready[2], done[2];
	char c;

	make_queue(fx, simple_msg, strlen(simple_msg));
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_OK);
	off_t size = file_size(in_home(fx, "mbox"));
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(done), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int fd = open(in_home(fx, "mbox"), O_RDWR);
		if (fd < 0 || fcntl(fd, F_SETLK, &fl) < 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1 || read(done[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	assert_int_equal(read(ready[0], &c, 1), 1);
	deliver_set_lock_timeout_ms(300);
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(write(done[1], "x", 1), 1);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_string_equal(r.dsn, "4.2.1");
	assert_int_equal(file_size(in_home(fx, "mbox")), size);
	char lock[PATH_MAX + 8];
	snprintf(lock, sizeof(lock), "%s.lock", in_home(fx, "mbox"));
	assert_false(exists(lock));             /* our dotlock was released */
	for (int i = 0; i < 2; i++) {
		close(ready[i]);
		close(done[i]);
	}
	deliver_mbox(&fx->m, in_home(fx, "mbox"), &r);
	assert_int_equal(r.status, DELIVERY_OK);
	assert_true(file_size(in_home(fx, "mbox")) > size);
}

/* ---------- safe_open directly ---------- */

static void test_safe_open(void **state)
{
	struct fixture *fx = *state;
	struct stat st;
	char err[256];

	mode_t old_umask = umask(022);
	int fd = safe_open_append(in_home(fx, "f"), O_WRONLY | O_APPEND, 0640, &st, err, sizeof(err));
	umask(old_umask);
	assert_true(fd >= 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(write(fd, "ab", 2), 2);
	close(fd);
	fd = safe_open_append(in_home(fx, "f"), O_WRONLY | O_APPEND, 0600, &st, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(st.st_size, 2);
	assert_int_equal(write(fd, "c", 1), 1);
	close(fd);
	assert_int_equal(file_size(in_home(fx, "f")), 3);

	assert_int_equal(symlink("f", in_home(fx, "l")), 0);
	assert_int_equal(safe_open_append(in_home(fx, "l"), O_WRONLY, 0600, &st, err, sizeof(err)), -1);
	assert_int_equal(errno, ELOOP);
	assert_int_equal(link_in_home(fx, "f", "h"), 0);
	assert_int_equal(safe_open_append(in_home(fx, "h"), O_WRONLY, 0600, &st, err, sizeof(err)), -1);
	assert_int_equal(errno, EMLINK);
	assert_string_equal(err, "has 2 hard links");
}

/* ---------- ENOSPC on a tiny tmpfs (root only) ---------- */

static void test_enospc_tmpfs(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;
	size_t size = 256 * 1024;
	char *msg;

	if (geteuid() != 0) {
		fprintf(stderr, "skipped: mounting a tiny tmpfs needs root\n");
		skip();
	}
	/* a private mount namespace: the mount vanishes with this process */
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		fprintf(stderr, "skipped: no mount namespace here: %s\n", strerror(errno));
		skip();
	}
	snprintf(fx->mountpoint, sizeof(fx->mountpoint), "%s", in_home(fx, "small"));
	assert_int_equal(mkdir(fx->mountpoint, 0700), 0);
	if (mount("tmpfs", fx->mountpoint, "tmpfs", 0, "size=64k,mode=0700") < 0) {
		fprintf(stderr, "skipped: cannot mount tmpfs: %s\n", strerror(errno));
		skip();
	}
	fx->mounted = 1;
	msg = big_message(size);
	make_queue(fx, msg, size);
	deliver_maildir(&fx->m, in_home(fx, "small/Maildir"), &r);
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_string_equal(r.dsn, "4.3.1");
	assert_int_equal(count_sub(fx, "small/Maildir", "tmp", NULL, 0), 0);
	assert_int_equal(count_sub(fx, "small/Maildir", "new", NULL, 0), 0);

	make_queue(fx, simple_msg, strlen(simple_msg));
	deliver_mbox(&fx->m, in_home(fx, "small/mbox"), &r);
	assert_int_equal(r.status, DELIVERY_OK);
	off_t before = file_size(in_home(fx, "small/mbox"));
	make_queue(fx, msg, size);
	deliver_mbox(&fx->m, in_home(fx, "small/mbox"), &r);
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_string_equal(r.dsn, "4.3.1");
	assert_int_equal(file_size(in_home(fx, "small/mbox")), before);
	free(msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expand_path),
		cmocka_unit_test(test_errno_result),
		cmocka_unit_test_setup_teardown(test_maildir_basic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_null_sender_distinct_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_folder_on_demand, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_not_beyond_home, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_created_outside_home, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_dotdot_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_own_symlink_followed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_dangling_symlink_not_created, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_symlink_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_large_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_write_failure_cleans_tmp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_short_queue_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_new_file_quoting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_second_append_keeps_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_quoting_across_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_failure_truncates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_refuses_symlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_refuses_hard_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_refuses_directory_and_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_refuses_foreign_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_dotlock_busy_and_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_fcntl_lock_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_no_lock_file_said, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mbox_stale_lock_not_removable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_safe_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_tmpfs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
