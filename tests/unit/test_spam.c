/*
 * test_spam.c - the embedded SpamAssassin engine (src/spam), for real.
 *
 * SpamAssassin is loaded once in this process, as the spawner does.  Each
 * case forks a "worker" that drops to nobody (65534) when we are root, gets
 * a fresh home owned by it, calls spam_engine_user and runs its checks; it
 * records what it saw in shared memory and the parent asserts.  Skipped
 * (exit 77) only when SpamAssassin is not installed.  Prints the measured
 * load, user-switch and per-check times and the memory figures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/privsep.h"
#include "spam/spam.h"

#define TEST_UID 65534
#define TEST_GID 65534
#define MAX_CHECKS 24
#define MANY 20

static const char gtube_msg[] =
	"Received: from mx.example.net (mx.example.net [192.0.2.1])\n"
	"\tby mail.example.org with ESMTP id 4AbC; Mon, 1 Jan 2024 10:00:00 +0000\n"
	"From: Spammer <spammer@example.net>\n"
	"To: Bob <bob@example.org>\n"
	"Subject: buy now\n"
	"Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
	"Message-ID: <gtube-1@example.net>\n"
	"\n"
	"This is the GTUBE, the Generic Test for Unsolicited Bulk Email.\n"
	"\n"
	"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n";

static const char ham_msg[] =
	"Received: from mx.example.net (mx.example.net [192.0.2.1])\n"
	"\tby mail.example.org with ESMTP id 4AbD; Mon, 1 Jan 2024 10:05:00 +0000\n"
	"From: Alice <alice@example.net>\n"
	"To: Bob <bob@example.org>\n"
	"Subject: lunch tomorrow\n"
	"Date: Mon, 1 Jan 2024 10:05:00 +0000\n"
	"Message-ID: <lunch-20240101@example.net>\n"
	"\n"
	"Hi Bob,\n"
	"\n"
	"shall we meet for lunch tomorrow at noon, at the usual place?\n"
	"I can bring the notes from the meeting.\n"
	"\n"
	"Alice\n";

static unsigned long load_ms;
static int bad_load_rc;
static char bad_load_err[512];

/* LeakSanitizer (asan builds): Perl, and libraries that Perl modules load,
 * keep a few allocations past perl_destruct. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libperl.so\nleak:libcrypto.so\n";
}

struct verdict_rec {
	int rc, is_spam, timed_out, has_flag, status_yes, status_no, lf_end;
	double score, required;
	unsigned ms;
	char tests[512];
	char err[200];
};

/* What a child saw; in shared memory. */
struct outcome {
	int done;                       /* the child reached its end */
	char err[512];                  /* its first failure */
	unsigned long fork_ms;          /* fork to the child running */
	unsigned long user_ms;
	unsigned long shutdown_ms;
	int n;
	struct verdict_rec v[MAX_CHECKS];
	long rss_kb, shared_kb;
	int journal_after_learn, toks, seen, journal, evil_files;
	long nspam, nham;
};

struct home {
	char dir[PATH_MAX];
};

/* Every directory made, removed again at the end even when a case failed. */
static char made[32][PATH_MAX];
static int n_made;

static struct outcome *out;

#define FAIL_IF(cond, ...) do { \
		if (cond) { snprintf(out->err, sizeof(out->err), __VA_ARGS__); return; } \
	} while (0)

static unsigned long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long)ts.tv_sec * 1000 + (unsigned long)ts.tv_nsec / 1000000;
}

static long status_kb(const char *file, const char *key)
{
	char line[256];
	long total = 0;
	size_t klen = strlen(key);
	FILE *f = fopen(file, "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0)
			total += strtol(line + klen, NULL, 10);
	fclose(f);
	return total;
}

static void make_home(struct home *h, const char *user_prefs)
{
	snprintf(h->dir, sizeof(h->dir), "/tmp/test_spam.XXXXXX");
	assert_non_null(mkdtemp(h->dir));
	if (n_made < 32)
		snprintf(made[n_made++], PATH_MAX, "%s", h->dir);
	if (user_prefs != NULL) {
		char path[PATH_MAX + 64];
		snprintf(path, sizeof(path), "%s/.spamassassin", h->dir);
		assert_int_equal(mkdir(path, 0700), 0);
		snprintf(path, sizeof(path), "%s/.spamassassin/user_prefs", h->dir);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fputs(user_prefs, f);
		assert_int_equal(fclose(f), 0);
		if (geteuid() == 0) {
			assert_int_equal(chown(path, TEST_UID, TEST_GID), 0);
			snprintf(path, sizeof(path), "%s/.spamassassin", h->dir);
			assert_int_equal(chown(path, TEST_UID, TEST_GID), 0);
		}
	}
	if (geteuid() == 0)
		assert_int_equal(chown(h->dir, TEST_UID, TEST_GID), 0);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	remove(path);
	return 0;
}

static void remove_home(struct home *h)
{
	nftw(h->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

typedef void child_fn(const char *home, const void *arg);

/* Fork a worker for `home`: drop to nobody, switch SpamAssassin to it
 * (unless user is NULL), run fn.  Returns the outcome (valid until the
 * next call). */
static struct outcome *run_child(const char *user, const char *home, child_fn *fn, const void *arg)
{
	char err[256];

	memset(out, 0, sizeof(*out));
	fflush(NULL);
	unsigned long t_fork = now_ms();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		out->fork_ms = now_ms() - t_fork;
		if (geteuid() == 0 && privsep_become(TEST_UID, TEST_GID, NULL, err, sizeof(err)) < 0) {
			snprintf(out->err, sizeof(out->err), "privsep: %s", err);
			_exit(1);
		}
		unsigned long t0 = now_ms();
		if (user != NULL && spam_engine_user(user, home, err, sizeof(err)) < 0) {
			snprintf(out->err, sizeof(out->err), "spam_engine_user: %s", err);
			_exit(1);
		}
		out->user_ms = now_ms() - t0;
		fn(home, arg);
		out->rss_kb = status_kb("/proc/self/status", "VmRSS:");
		out->shared_kb = status_kb("/proc/self/smaps_rollup", "Shared_Clean:") +
		    status_kb("/proc/self/smaps_rollup", "Shared_Dirty:");
		t0 = now_ms();
		spam_engine_shutdown();
		out->shutdown_ms = now_ms() - t0;
		out->done = out->err[0] == '\0';
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (out->err[0])
		fail_msg("child: %s", out->err);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(out->done);
	return out;
}

/* One check in the child, recorded in out->v[out->n++]. */
static struct verdict_rec *check(const char *msg)
{
	struct spam_verdict v;
	struct verdict_rec *r = &out->v[out->n < MAX_CHECKS ? out->n++ : MAX_CHECKS - 1];

	r->rc = spam_engine_check(msg, strlen(msg), &v, r->err, sizeof(r->err));
	if (r->rc < 0)
		return r;
	r->is_spam = v.is_spam;
	r->score = v.score;
	r->required = v.required;
	r->timed_out = v.timed_out;
	r->ms = v.ms;
	snprintf(r->tests, sizeof(r->tests), "%s", v.tests);
	r->has_flag = strstr(v.headers, "X-Spam-Flag: YES\n") != NULL;
	r->status_yes = strstr(v.headers, "X-Spam-Status: Yes, score=") != NULL;
	r->status_no = strstr(v.headers, "X-Spam-Status: No, score=") != NULL;
	size_t hl = strlen(v.headers);
	r->lf_end = hl > 0 && v.headers[hl - 1] == '\n' && strchr(v.headers, '\r') == NULL;
	spam_verdict_free(&v);
	return r;
}

static void count_files(const char *home, const char *evil)
{
	char path[PATH_MAX + 64];
	struct stat st;

	snprintf(path, sizeof(path), "%s/.spamassassin/bayes_toks", home);
	out->toks = stat(path, &st) == 0 && st.st_size > 0;
	snprintf(path, sizeof(path), "%s/.spamassassin/bayes_seen", home);
	out->seen = stat(path, &st) == 0;
	snprintf(path, sizeof(path), "%s/.spamassassin/bayes_journal", home);
	out->journal = stat(path, &st) == 0;
	if (evil != NULL) {
		DIR *d = opendir(evil);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL)
			if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
				out->evil_files++;
		if (d)
			closedir(d);
	}
}

/* nspam/nham of the Bayes database, as sa-learn sees it. */
static void bayes_counts(const char *home)
{
	char cmd[PATH_MAX + 128], line[256];

	out->nspam = out->nham = -1;
	snprintf(cmd, sizeof(cmd), "sa-learn --dbpath '%s/.spamassassin' --dump magic 2>/dev/null", home);
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return;
	while (fgets(line, sizeof(line), p)) {
		long a, b, c, d;
		char what[64];
		if (sscanf(line, "%ld.%ld %ld %ld %*d non-token data: %63[a-z ]", &a, &b, &c, &d, what) == 5) {
			if (strcmp(what, "nspam") == 0)
				out->nspam = d;
			else if (strcmp(what, "nham") == 0)
				out->nham = d;
		}
	}
	pclose(p);
}

/* ---- the cases ---- */

static void child_one(const char *home, const void *arg)
{
	check(arg);
}

static void test_gtube_is_spam(void **state)
{
	struct home h;
	make_home(&h, NULL);
	struct outcome *o = run_child("nobody", h.dir, child_one, gtube_msg);
	struct verdict_rec *r = &o->v[0];
	assert_int_equal(r->rc, 0);
	assert_true(r->is_spam);
	assert_true(r->score >= 500);
	assert_true(r->required > 0 && r->required < 100);
	assert_non_null(strstr(r->tests, "GTUBE"));
	assert_true(r->has_flag);
	assert_true(r->status_yes);
	assert_true(r->lf_end);
	assert_false(r->timed_out);
	printf("# gtube: score %.1f required %.1f, %u ms, user switch %lu ms\n",
	    r->score, r->required, r->ms, o->user_ms);
	remove_home(&h);
}

static void test_ham_is_not_spam(void **state)
{
	struct home h;
	make_home(&h, NULL);
	struct outcome *o = run_child("nobody", h.dir, child_one, ham_msg);
	struct verdict_rec *r = &o->v[0];
	assert_int_equal(r->rc, 0);
	assert_false(r->is_spam);
	assert_true(r->score < r->required);
	assert_false(r->has_flag);
	assert_true(r->status_no);
	assert_true(r->lf_end);
	assert_null(strstr(r->tests, "GTUBE"));
	remove_home(&h);
}

/* GTUBE scores about 1000, so a required_score above that makes it ham. */
static void test_user_prefs_per_user(void **state)
{
	struct home lenient, other;
	make_home(&lenient, "# this user tolerates a lot\nrequired_score 2000\n");
	make_home(&other, NULL);

	struct outcome *o = run_child("lenient", lenient.dir, child_one, gtube_msg);
	assert_int_equal(o->v[0].rc, 0);
	assert_false(o->v[0].is_spam);
	assert_true(o->v[0].required == 2000);
	assert_false(o->v[0].has_flag);

	o = run_child("other", other.dir, child_one, gtube_msg);
	assert_int_equal(o->v[0].rc, 0);
	assert_true(o->v[0].is_spam);
	assert_true(o->v[0].required < 100);
	assert_true(o->v[0].has_flag);
	remove_home(&lenient);
	remove_home(&other);
}

static void child_learn(const char *home, const void *arg)
{
	char err[256];

	FAIL_IF(spam_engine_learn(gtube_msg, strlen(gtube_msg), 1, err, sizeof(err)) < 0,
	    "learn spam: %s", err);
	FAIL_IF(spam_engine_learn(ham_msg, strlen(ham_msg), 0, err, sizeof(err)) < 0,
	    "learn ham: %s", err);
	count_files(home, NULL);
	out->journal_after_learn = out->journal;
	FAIL_IF(spam_engine_sync(err, sizeof(err)) < 0, "sync: %s", err);
	count_files(home, arg);
	bayes_counts(home);
	check(gtube_msg);               /* a note of the user's prefs taking effect */
}

static void test_learn_and_sync(void **state)
{
	struct home h;
	make_home(&h, NULL);
	struct outcome *o = run_child("nobody", h.dir, child_learn, NULL);
	assert_true(o->journal_after_learn);    /* learning went to the journal */
	assert_true(o->toks);
	assert_true(o->seen);
	assert_false(o->journal);               /* and sync merged it */
	assert_int_equal(o->nspam, 1);
	assert_int_equal(o->nham, 1);
	remove_home(&h);
}

/* bayes_path is an admin option: a user's user_prefs cannot move the
 * Bayes files (into a directory the user could write, to prove it). */
static void test_admin_option_refused(void **state)
{
	struct home h, evil;
	char prefs[PATH_MAX + 64];

	make_home(&evil, NULL);
	snprintf(prefs, sizeof(prefs), "required_score 2000\nbayes_path %s/bayes\n", evil.dir);
	make_home(&h, prefs);
	struct outcome *o = run_child("nobody", h.dir, child_learn, evil.dir);
	assert_int_equal(o->evil_files, 0);
	assert_true(o->toks);
	assert_int_equal(o->nspam, 1);
	/* the file was read: its score option took effect */
	assert_int_equal(o->v[0].rc, 0);
	assert_true(o->v[0].required == 2000);
	assert_false(o->v[0].is_spam);
	remove_home(&h);
	remove_home(&evil);
}

static void child_many(const char *home, const void *arg)
{
	for (int i = 0; i < MANY; i++) {
		struct verdict_rec *r = check(i % 2 == 0 ? gtube_msg : ham_msg);
		FAIL_IF(r->rc < 0, "check %d: %s", i, r->err);
	}
}

static void test_many_checks_stay_warm(void **state)
{
	struct home h;
	make_home(&h, NULL);
	struct outcome *o = run_child("nobody", h.dir, child_many, NULL);
	assert_int_equal(o->n, MANY);
	unsigned long sum = 0, max = 0;
	for (int i = 0; i < MANY; i++) {
		assert_int_equal(o->v[i].rc, 0);
		assert_int_equal(o->v[i].is_spam, i % 2 == 0);
		assert_false(o->v[i].timed_out);
		if (i > 0) {
			sum += o->v[i].ms;
			if (o->v[i].ms > max)
				max = o->v[i].ms;
		}
	}
	unsigned long avg = sum / (MANY - 1);
	printf("# cold load %lu ms; fork %lu ms; user switch %lu ms; first check %u ms; "
	    "checks 2..%d avg %lu ms max %lu ms (%.1f msgs/s); shutdown %lu ms; "
	    "worker RSS %ld MB, shared with its parent %ld MB\n",
	    load_ms, o->fork_ms, o->user_ms, o->v[0].ms, MANY, avg, max,
	    avg ? 1000.0 / avg : 0.0, o->shutdown_ms, o->rss_kb / 1024, o->shared_kb / 1024);
	assert_true(avg * 4 < load_ms);
	assert_true(o->user_ms < load_ms);
	remove_home(&h);
}

/* A user may lower the time limit (never raise ours): with a limit that
 * has passed before the rules run, the verdict says it timed out (the
 * rules were skipped: GTUBE goes unnoticed). */
static void test_time_limit_reported(void **state)
{
	struct home h;
	make_home(&h, "time_limit 0.001\n");
	struct outcome *o = run_child("nobody", h.dir, child_one, gtube_msg);
	assert_int_equal(o->v[0].rc, 0);
	assert_true(o->v[0].timed_out);
	assert_null(strstr(o->v[0].tests, "GTUBE"));
	remove_home(&h);
}

/* A load that failed leaves no interpreter behind, and says why. */
static void test_bad_site_config(void **state)
{
	assert_int_equal(bad_load_rc, -1);
	assert_non_null(strstr(bad_load_err, "site config directory /nonexistent/site: "));
	assert_true(spam_engine_loaded());      /* and the next load worked */
}

/* A site config directory of our own: the stock .pre files (they load the
 * plugins) and a local.cf that changes the threshold.  The worker starts
 * its own interpreter for it, after destroying the inherited one. */
static void child_site_config(const char *home, const void *arg)
{
	struct spam_settings s = { .network_tests = 0, .timeout_s = 30, .site_config_dir = arg };
	char err[256];

	spam_engine_shutdown();
	FAIL_IF(spam_engine_loaded(), "still loaded after shutdown");
	FAIL_IF(spam_engine_load(&s, err, sizeof(err)) < 0, "load with %s: %s", (const char *)arg, err);
	FAIL_IF(spam_engine_user("nobody", home, err, sizeof(err)) < 0, "user: %s", err);
	check(gtube_msg);
}

static void test_site_config_dir(void **state)
{
	struct home h, site;
	char cmd[4 * PATH_MAX];

#if defined(__SANITIZE_ADDRESS__)
	/* AddressSanitizer's allocator makes a load take ~40 s; the reload
	 * path is covered by the plain build. */
	skip();
#endif
	make_home(&h, NULL);
	make_home(&site, NULL);
	snprintf(cmd, sizeof(cmd), "cp /etc/spamassassin/*.pre '%s'/ && "
	    "echo 'required_score 9.5' > '%s'/local.cf && chmod -R a+rX '%s'",
	    site.dir, site.dir, site.dir);
	if (system(cmd) != 0)
		skip();
	struct outcome *o = run_child(NULL, h.dir, child_site_config, site.dir);
	assert_int_equal(o->v[0].rc, 0);
	assert_true(o->v[0].required == 9.5);
	assert_true(o->v[0].is_spam);
	remove_home(&h);
	remove_home(&site);
}

static void on_term(int sig)
{
	(void)sig;
}

static void child_errors(const char *home, const void *arg)
{
	char err[256];
	struct spam_verdict v;
	struct sigaction sa, cur;

	FAIL_IF(spam_engine_user("someone-else", "/tmp", err, sizeof(err)) == 0,
	    "a second user was accepted");
	FAIL_IF(strstr(err, "one user") == NULL, "second user: %s", err);
	FAIL_IF(spam_engine_user("nobody", home, err, sizeof(err)) < 0,
	    "same user again: %s", err);
	FAIL_IF(spam_engine_check(NULL, 10, &v, err, sizeof(err)) == 0, "NULL message accepted");
	FAIL_IF(spam_engine_learn(NULL, 10, 1, err, sizeof(err)) == 0, "NULL message learned");
	/* odd input is scored, not a crash */
	static const char binary[] = "\0\xff\xfe\r\n\r\n\0\0garbage\x01\x02";
	FAIL_IF(spam_engine_check(binary, sizeof(binary) - 1, &v, err, sizeof(err)) < 0,
	    "binary message: %s", err);
	spam_verdict_free(&v);
	FAIL_IF(spam_engine_check("", 0, &v, err, sizeof(err)) < 0, "empty message: %s", err);
	FAIL_IF(v.headers == NULL || strstr(v.headers, "X-Spam-Status: ") == NULL,
	    "empty message: no X-Spam-Status");
	spam_verdict_free(&v);
	/* the caller's blocked SIGALRM (signalfd style) stays blocked */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGALRM);
	sigprocmask(SIG_BLOCK, &set, &old);
	struct verdict_rec *r = check(gtube_msg);
	FAIL_IF(r->rc < 0 || !r->is_spam, "check with SIGALRM blocked: %s", r->err);
	sigprocmask(SIG_SETMASK, NULL, &set);
	FAIL_IF(!sigismember(&set, SIGALRM), "SIGALRM was unblocked");
	/* the worker's own dispositions survive (Bayes sync localizes SIGTERM) */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	FAIL_IF(spam_engine_learn(gtube_msg, strlen(gtube_msg), 1, err, sizeof(err)) < 0,
	    "learn: %s", err);
	FAIL_IF(spam_engine_sync(err, sizeof(err)) < 0, "sync: %s", err);
	sigaction(SIGTERM, NULL, &cur);
	FAIL_IF(cur.sa_handler != on_term, "SIGTERM handler lost");
	sigaction(SIGPIPE, NULL, &cur);
	FAIL_IF(cur.sa_handler != SIG_IGN, "SIGPIPE no longer ignored");
	/* C code is not affected by Perl's locale */
	char num[32];
	snprintf(num, sizeof(num), "%.1f", 1.5);
	FAIL_IF(strcmp(num, "1.5") != 0, "locale changed: %s", num);
	FAIL_IF(uselocale((locale_t)0) != LC_GLOBAL_LOCALE, "thread locale changed");
}

static void test_errors(void **state)
{
	char err[256];
	struct spam_verdict v;
	struct spam_settings s = { 0, 10, NULL };

	/* in the spawner: loaded once, and no checks before a user is set */
	assert_true(spam_engine_loaded());
	assert_int_equal(spam_engine_load(&s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "already"));
	assert_int_equal(spam_engine_check(gtube_msg, strlen(gtube_msg), &v, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no user"));
	assert_int_equal(spam_engine_user("x", "relative/home", err, sizeof(err)), -1);
	assert_int_equal(spam_engine_user(NULL, "/tmp", err, sizeof(err)), -1);
	assert_int_equal(spam_engine_check(gtube_msg, strlen(gtube_msg), NULL, err, sizeof(err)), -1);

	struct home h;
	make_home(&h, NULL);
	struct outcome *o = run_child("nobody", h.dir, child_errors, NULL);
	assert_int_equal(o->n, 1);
	remove_home(&h);
}

int main(void)
{
	struct spam_settings s = { .network_tests = 0, .timeout_s = 30, .site_config_dir = NULL };
	char err[512];
	char before[128];

	log_init("test_spam", 1, 0);
	snprintf(before, sizeof(before), "%s", setlocale(LC_ALL, NULL));
	/* first a load that must fail (asserted in test_bad_site_config) */
	struct spam_settings bad = s;
	bad.site_config_dir = "/nonexistent/site";
	bad_load_rc = spam_engine_load(&bad, bad_load_err, sizeof(bad_load_err));
	unsigned long t0 = now_ms();
	if (spam_engine_load(&s, err, sizeof(err)) < 0) {
		if (strstr(err, "Can't locate Mail/SpamAssassin.pm") != NULL) {
			printf("SKIP test_spam: SpamAssassin is not installed "
			    "(apt-get install spamassassin): %s\n", err);
			return 77;
		}
		fprintf(stderr, "test_spam: loading SpamAssassin failed: %s\n", err);
		return 1;
	}
	load_ms = now_ms() - t0;
	printf("# cold load (perl_construct + Mail::SpamAssassin->new + compile_now): %lu ms, "
	    "RSS %ld MB\n", load_ms, status_kb("/proc/self/status", "VmRSS:") / 1024);
	if (strcmp(setlocale(LC_ALL, NULL), before) != 0 || uselocale((locale_t)0) != LC_GLOBAL_LOCALE) {
		fprintf(stderr, "test_spam: loading Perl changed the locale of our code\n");
		return 1;
	}
	out = mmap(NULL, sizeof(*out), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (out == MAP_FAILED) {
		perror("mmap");
		return 1;
	}

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gtube_is_spam),
		cmocka_unit_test(test_ham_is_not_spam),
		cmocka_unit_test(test_user_prefs_per_user),
		cmocka_unit_test(test_learn_and_sync),
		cmocka_unit_test(test_admin_option_refused),
		cmocka_unit_test(test_many_checks_stay_warm),
		cmocka_unit_test(test_time_limit_reported),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_bad_site_config),
		cmocka_unit_test(test_site_config_dir),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	spam_engine_shutdown();
	for (int i = 0; i < n_made; i++)
		nftw(made[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
