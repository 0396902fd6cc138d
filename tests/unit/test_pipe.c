/*
 * test_pipe.c - pipe delivery with real /bin/sh commands.
 *
 * deliver_pipe refuses to run as root, and these tests usually run as
 * root: each case runs deliver_pipe in a forked "runner" that drops to
 * nobody (65534) first when it is root, captures its log (stderr) in a
 * file and sends its result back through a pipe.  The parent asserts.
 * The runner also starts from a hostile state (SIGTERM blocked, SIGINT
 * ignored, a stray descriptor open) that the command must not inherit.
 * (dash clears its signal mask itself at start-up, so the SigBlk check
 * passes with dash either way; the SigIgn and descriptor checks do not.)
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
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deliver/deliver.h"
#include "lib/log.h"

#define TEST_UID 65534
#define TEST_GID 65534
#define QPREFIX "QUEUE-RECORDS\n"
#define QSUFFIX "TRAILER\n"
#define SENDER "alice@example.test"
#define RCPT "bob+box@example.test"
#define PREFIX "Return-Path: <" SENDER ">\nDelivered-To: " RCPT "\n"
#define STRAY_FD 57

static const char simple_msg[] =
	"From: Alice <" SENDER ">\n"
	"Subject: hello\n"
	"\n"
	"Hello Bob.\n";

struct fixture {
	char home[128];
	char path[PATH_MAX];
	char cmd[4096];
	struct delivery_msg m;
	const char *msg;
	size_t msg_len;
	uint64_t size_claim;    /* msg_size to announce, 0: msg_len */
	unsigned timeout;
	int ignore_sigchld;     /* runner sets SIGCHLD to SIG_IGN first */
	int other_child;        /* runner has another exited child around */
};

/* What the runner sends back. */
struct report {
	struct delivery_result r;
	long long elapsed_ms;
	int other_child_kept;   /* the other child was still ours to reap, status 7 */
	int dispositions_kept;  /* SIGPIPE and SIGCHLD as before the call */
};

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	if (fx == NULL)
		return -1;
	snprintf(fx->home, sizeof(fx->home), "/tmp/test_pipe.XXXXXX");
	if (mkdtemp(fx->home) == NULL)
		return -1;
	if (geteuid() == 0 && chown(fx->home, TEST_UID, TEST_GID) < 0)
		return -1;
	fx->m.sender = SENDER;
	fx->m.recipient = RCPT;
	fx->m.home = fx->home;
	fx->m.user = "tester";
	fx->m.extension = "box";
	fx->msg = simple_msg;
	fx->msg_len = strlen(simple_msg);
	fx->timeout = 20;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	nftw(fx->home, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static const char *in_home(struct fixture *fx, const char *rel)
{
	snprintf(fx->path, sizeof(fx->path), "%s/%s", fx->home, rel);
	return fx->path;
}

/* A whole file, NUL-terminated; NULL if it does not exist. */
static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char *p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
		assert_true(n > 0);
		got += (size_t)n;
	}
	p[got] = '\0';
	close(fd);
	if (len)
		*len = got;
	return p;
}

static char *slurp_home(struct fixture *fx, const char *rel)
{
	return slurp(in_home(fx, rel), NULL);
}

static int open_queue(struct fixture *fx)
{
	char qpath[PATH_MAX];
	snprintf(qpath, sizeof(qpath), "%s.queue", fx->home);
	int fd = open(qpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(unlink(qpath), 0);
	assert_int_equal(write(fd, QPREFIX, strlen(QPREFIX)), (ssize_t)strlen(QPREFIX));
	size_t off = 0;
	while (off < fx->msg_len) {
		ssize_t n = write(fd, fx->msg + off, fx->msg_len - off);
		assert_true(n > 0);
		off += (size_t)n;
	}
	assert_int_equal(write(fd, QSUFFIX, strlen(QSUFFIX)), (ssize_t)strlen(QSUFFIX));
	fx->m.qfd = fd;
	fx->m.msg_offset = (off_t)strlen(QPREFIX);
	fx->m.msg_size = fx->size_claim ? fx->size_claim : fx->msg_len;
	return fd;
}

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sigchld_is(void (*want)(int))
{
	struct sigaction sa;
	sigaction(SIGCHLD, NULL, &sa);
	return sa.sa_handler == want;
}

static _Noreturn void runner(struct fixture *fx, int logfd, int repfd)
{
	struct report rep;
	struct sigaction sa;
	sigset_t block;
	pid_t other = -1;

	memset(&rep, 0, sizeof(rep));
	if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setgid(TEST_GID) < 0 ||
	    setuid(TEST_UID) < 0))
		_exit(90);
	/* a state the command must not inherit */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_DFL);
	if (dup2(logfd, STRAY_FD) < 0 || dup2(logfd, STDERR_FILENO) < 0)
		_exit(91);
	if (fx->ignore_sigchld)
		signal(SIGCHLD, SIG_IGN);
	if (fx->other_child) {
		other = fork();
		if (other == 0)
			_exit(7);
		siginfo_t si;
		waitid(P_PID, (id_t)other, &si, WEXITED | WNOWAIT);  /* now a zombie */
	}
	log_init("test_pipe", 1, 0);
	deliver_set_pipe_timeout(fx->timeout);

	long long t0 = mono_ms();
	deliver_pipe(&fx->m, fx->cmd, &rep.r);
	rep.elapsed_ms = mono_ms() - t0;

	sigaction(SIGPIPE, NULL, &sa);
	rep.dispositions_kept = sa.sa_handler == SIG_DFL &&
	    sigchld_is(fx->ignore_sigchld ? SIG_IGN : SIG_DFL);
	if (other > 0) {
		int st = 0;
		rep.other_child_kept = waitpid(other, &st, WNOHANG) == other && WIFEXITED(st) &&
		    WEXITSTATUS(st) == 7;
	}
	if (write(repfd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		_exit(92);
	_exit(0);
}

/* Run fx->cmd through deliver_pipe in a runner; *log gets its log. */
static void run(struct fixture *fx, struct report *rep, char **log)
{
	char logpath[PATH_MAX];
	int rp[2];

	snprintf(logpath, sizeof(logpath), "%s.log", fx->home);
	int logfd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0666);
	assert_true(logfd >= 0);
	int qfd = open_queue(fx);
	assert_int_equal(pipe(rp), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(rp[0]);
		runner(fx, logfd, rp[1]);
	}
	close(rp[1]);
	memset(rep, 0, sizeof(*rep));
	ssize_t n = read(rp[0], rep, sizeof(*rep));
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("runner failed: status 0x%x", st);
	assert_int_equal(n, (ssize_t)sizeof(*rep));
	close(rp[0]);
	close(qfd);
	close(logfd);
	*log = slurp(logpath, NULL);
	assert_non_null(*log);
	unlink(logpath);
	assert_true(rep->dispositions_kept);
}

static void expect(const struct report *rep, enum delivery_status st, const char *dsn,
    const char *text_start)
{
	if (rep->r.status != st || strcmp(rep->r.dsn, dsn) != 0 ||
	    strncmp(rep->r.text, text_start, strlen(text_start)) != 0)
		fail_msg("got %d %s \"%s\", want %d %s \"%s...\"", rep->r.status, rep->r.dsn,
		    rep->r.text, st, dsn, text_start);
}

/* Is any live (non-zombie) process left in process group pgid? */
static int group_alive(long pgid)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int alive = 0;

	assert_non_null(d);
	while (!alive && (e = readdir(d)) != NULL) {
		char p[300], line[1024];
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(p, sizeof(p), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(p, "r");
		if (f == NULL)
			continue;
		if (fgets(line, sizeof(line), f) != NULL) {
			const char *rp = strrchr(line, ')');
			char state;
			long ppid, pgrp;
			if (rp && sscanf(rp + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3 &&
			    pgrp == pgid && state != 'Z' && state != 'X')
				alive = 1;
		}
		fclose(f);
	}
	closedir(d);
	return alive;
}

static void expect_group_gone(long pgid)
{
	assert_true(pgid > 1);
	for (int i = 0; i < 100 && group_alive(pgid); i++)
		usleep(20 * 1000);
	assert_false(group_alive(pgid));
}

static long read_long(struct fixture *fx, const char *rel)
{
	char *s = slurp_home(fx, rel);
	assert_non_null(s);
	long v = strtol(s, NULL, 10);
	free(s);
	return v;
}

/* Does text (lines ending in LF) have this exact line? */
static int has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, line, n) == 0 && p[n] == '\n')
			return 1;
	return 0;
}

static char *make_big(size_t len)
{
	char *p = malloc(len);
	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (i % 64 == 63) ? '\n' : (char)('a' + i % 26);
	return p;
}

/* ---------- tests ---------- */

static void test_reads_all(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	snprintf(fx->cmd, sizeof(fx->cmd),
	    "cat > \"$HOME/out\" && env > \"$HOME/env\" && umask > \"$HOME/umask\" && "
	    "pwd > \"$HOME/pwd\" && ls -l /proc/$$/fd > \"$HOME/fds\" && "
	    "while read l; do case $l in SigBlk*|SigIgn*) echo \"$l\";; esac; done "
	    "< /proc/self/status > \"$HOME/sig\" && "
	    "echo $$ > \"$HOME/pid\" && cut -d' ' -f5 /proc/$$/stat > \"$HOME/pgrp\"");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_OK, "2.0.0", "delivered");
	assert_string_equal(log, "");

	char *out = slurp_home(fx, "out");
	assert_non_null(out);
	char want[1024];
	snprintf(want, sizeof(want), "%s%s", PREFIX, simple_msg);
	assert_string_equal(out, want);

	char *env = slurp_home(fx, "env");
	assert_non_null(env);
	char home_var[300];
	snprintf(home_var, sizeof(home_var), "HOME=%s", fx->home);
	const char *vars[] = { "SENDER=" SENDER, "RECIPIENT=" RCPT, "EXTENSION=box",
		"USER=tester", "LOGNAME=tester", home_var, "SHELL=/bin/sh",
		"PATH=/usr/local/bin:/usr/bin:/bin" };
	size_t nlines = 0;
	for (const char *p = env; *p; p++)
		nlines += *p == '\n';
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (!has_line(env, vars[i]))
			fail_msg("%s missing from the environment:\n%s", vars[i], env);
	/* dash adds PWD itself; nothing else may be there */
	assert_true(nlines <= sizeof(vars) / sizeof(vars[0]) + 1);

	char *um = slurp_home(fx, "umask");
	assert_string_equal(um, "0077\n");
	char *pwd = slurp_home(fx, "pwd");
	char want_pwd[300];
	snprintf(want_pwd, sizeof(want_pwd), "%s\n", fx->home);
	assert_string_equal(pwd, want_pwd);
	char *fds = slurp_home(fx, "fds");
	assert_null(strstr(fds, ".log"));      /* the runner's stray descriptor */
	assert_null(strstr(fds, " 57 ->"));
	assert_null(strstr(fds, ".queue"));
	char *sig = slurp_home(fx, "sig");
	assert_string_equal(sig, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
	assert_int_equal(read_long(fx, "pid"), read_long(fx, "pgrp"));
	free(out); free(env); free(um); free(pwd); free(fds); free(sig); free(log);
}

static void test_env_defaults_and_control_chars(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	fx->m.sender = "";
	fx->m.recipient = "bob\nX-Evil: 1@example.test";
	fx->m.user = NULL;
	fx->m.home = NULL;
	fx->m.extension = NULL;
	setenv("TEST_PIPE_LEAK", "1", 1);
	snprintf(fx->cmd, sizeof(fx->cmd), "env > %s/env; pwd > %s/pwd; cat > %s/out",
	    fx->home, fx->home, fx->home);
	run(fx, &rep, &log);
	unsetenv("TEST_PIPE_LEAK");
	expect(&rep, DELIVERY_OK, "2.0.0", "delivered");
	char *env = slurp_home(fx, "env");
	assert_non_null(env);
	assert_true(has_line(env, "SENDER="));
	assert_true(has_line(env, "RECIPIENT=bob?X-Evil: 1@example.test"));
	assert_true(has_line(env, "EXTENSION="));
	assert_null(strstr(env, "TEST_PIPE_LEAK"));
	/* the runner's passwd entry gives the name and home */
	struct passwd *pw = getpwuid(geteuid() == 0 ? TEST_UID : geteuid());
	assert_non_null(pw);
	char want[600];
	snprintf(want, sizeof(want), "USER=%s", pw->pw_name);
	assert_true(has_line(env, want));
	snprintf(want, sizeof(want), "LOGNAME=%s", pw->pw_name);
	assert_true(has_line(env, want));
	snprintf(want, sizeof(want), "HOME=%s", pw->pw_dir);
	assert_true(has_line(env, want));
	char *out = slurp_home(fx, "out");
	const char *want_out = "Return-Path: <>\nDelivered-To: bob?X-Evil: 1@example.test\n";
	assert_non_null(out);
	assert_true(strncmp(out, want_out, strlen(want_out)) == 0);
	free(env); free(out); free(log);
}

static void test_missing_home_runs_in_root(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log, nohome[200];

	snprintf(nohome, sizeof(nohome), "%s/no/such/home", fx->home);
	fx->m.home = nohome;
	snprintf(fx->cmd, sizeof(fx->cmd), "pwd > %s/pwd; echo \"$HOME\" > %s/home",
	    fx->home, fx->home);
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_OK, "2.0.0", "delivered");
	char *pwd = slurp_home(fx, "pwd"), *home = slurp_home(fx, "home");
	assert_string_equal(pwd, "/\n");
	assert_non_null(home);
	assert_int_equal(strncmp(home, nohome, strlen(nohome)), 0);
	free(pwd); free(home); free(log);
}

static void test_not_reading_all(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	char *big = make_big(1024 * 1024);
	fx->msg = big;
	fx->msg_len = 1024 * 1024;
	snprintf(fx->cmd, sizeof(fx->cmd), "exit 0");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_OK, "2.0.0", "delivered");
	if (strstr(log, "pipe: user=tester command=exit 0 exited without reading all of its input") == NULL)
		fail_msg("no warning in the log: \"%s\"", log);
	free(log);

	/* reads a little, closes stdin, then fails: still judged by the exit */
	snprintf(fx->cmd, sizeof(fx->cmd), "head -c 10 >/dev/null; exec <&-; sleep 0.2; exit 3");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_PERMFAIL, "5.3.0", "command exited 3");
	assert_non_null(strstr(log, "exited without reading all of its input"));
	free(log);
	free(big);
}

static void test_reads_all_no_warning_for_large(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	char *big = make_big(3 * 1024 * 1024 + 17);
	fx->msg = big;
	fx->msg_len = 3 * 1024 * 1024 + 17;
	snprintf(fx->cmd, sizeof(fx->cmd), "cat > \"$HOME/out\"");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_OK, "2.0.0", "delivered");
	assert_string_equal(log, "");
	size_t len;
	char *out = slurp(in_home(fx, "out"), &len);
	assert_int_equal(len, strlen(PREFIX) + fx->msg_len);
	assert_memory_equal(out + strlen(PREFIX), big, fx->msg_len);
	free(out); free(big); free(log);
}

static void test_exit_tempfail(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	snprintf(fx->cmd, sizeof(fx->cmd), "cat >/dev/null; echo try later; exit 75");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_TEMPFAIL, "4.3.0", "command exited 75: try later");
	free(log);
}

static void test_exit_tempfail_with_sigchld_ignored(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	fx->ignore_sigchld = 1;
	snprintf(fx->cmd, sizeof(fx->cmd), "exit 75");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_TEMPFAIL, "4.3.0", "command exited 75");
	free(log);
}

static void test_exit_permfail_with_output(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	snprintf(fx->cmd, sizeof(fx->cmd),
	    "cat >/dev/null; echo 'mailbox full' >&2; printf 'line two\\r\\n\\tInjected: x\\001 \\303\\251\\n'; exit 1");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_PERMFAIL, "5.3.0", "");
	assert_string_equal(rep.r.text, "command exited 1: mailbox full line two Injected: x ??");
	free(log);
}

static void test_killed_by_signal(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	snprintf(fx->cmd, sizeof(fx->cmd), "echo about to die; kill -USR1 $$; sleep 5");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_PERMFAIL, "5.3.0", "command killed by signal 10 (SIGUSR1): about to die");
	free(log);
}

static void test_timeout_kills_group(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	fx->timeout = 1;
	snprintf(fx->cmd, sizeof(fx->cmd),
	    "echo $$ > \"$HOME/pid\"; sleep 100 & echo $! > \"$HOME/bg\"; sleep 100");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_TEMPFAIL, "4.3.0", "command timed out after 1s");
	assert_true(rep.elapsed_ms >= 900 && rep.elapsed_ms < 2500);
	long pid = read_long(fx, "pid"), bg = read_long(fx, "bg");
	assert_true(bg > 1 && bg != pid);
	expect_group_gone(pid);
	free(log);
}

static void test_timeout_term_ignored(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	fx->timeout = 1;
	snprintf(fx->cmd, sizeof(fx->cmd),
	    "trap '' TERM; echo $$ > \"$HOME/pid\"; sleep 100 & sleep 100");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_TEMPFAIL, "4.3.0", "command timed out after 1s");
	/* SIGTERM ignored: SIGKILL after the grace */
	assert_true(rep.elapsed_ms >= 2500 && rep.elapsed_ms < 5000);
	expect_group_gone(read_long(fx, "pid"));
	free(log);
}

static void test_timeout_with_pipes_closed(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	fx->timeout = 1;
	snprintf(fx->cmd, sizeof(fx->cmd),
	    "echo $$ > \"$HOME/pid\"; exec </dev/null >/dev/null 2>&1; sleep 100");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_TEMPFAIL, "4.3.0", "command timed out after 1s");
	expect_group_gone(read_long(fx, "pid"));
	free(log);
}

static void test_background_holding_output(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	/* the command is done; a background job still holds stdout */
	snprintf(fx->cmd, sizeof(fx->cmd),
	    "cat >/dev/null; echo $$ > \"$HOME/pid\"; sleep 3 & exit 0");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_OK, "2.0.0", "delivered");
	assert_true(rep.elapsed_ms < 2000);
	kill(-(pid_t)read_long(fx, "pid"), SIGKILL);
	free(log);
}

static void test_huge_output_before_reading(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	char *big = make_big(1024 * 1024);
	fx->msg = big;
	fx->msg_len = 1024 * 1024;
	snprintf(fx->cmd, sizeof(fx->cmd),
	    "head -c 4000000 /dev/zero | tr '\\0' x; cat > \"$HOME/out\"");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_OK, "2.0.0", "delivered");
	size_t len;
	char *out = slurp(in_home(fx, "out"), &len);
	assert_int_equal(len, strlen(PREFIX) + fx->msg_len);
	assert_memory_equal(out + strlen(PREFIX), big, fx->msg_len);
	free(out); free(log);

	snprintf(fx->cmd, sizeof(fx->cmd), "head -c 200000 /dev/zero | tr '\\0' y; exit 2");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_PERMFAIL, "5.3.0", "command exited 2: yyyyyyyy");
	assert_true(strlen(rep.r.text) < 400);
	assert_string_equal(rep.r.text + strlen(rep.r.text) - 4, "y...");
	free(log);
	free(big);
}

static void test_queue_read_error(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	fx->size_claim = 5 * 1024 * 1024;     /* the file is much shorter */
	snprintf(fx->cmd, sizeof(fx->cmd), "cat > \"$HOME/out\"; echo done > \"$HOME/done\"");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_TEMPFAIL, "4.3.0", "read queue file");
	usleep(100 * 1000);
	assert_null(slurp_home(fx, "done"));    /* killed, not given EOF */
	free(log);
}

static void test_reaps_only_own_child(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	fx->other_child = 1;
	snprintf(fx->cmd, sizeof(fx->cmd), "cat >/dev/null; exit 4");
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_PERMFAIL, "5.3.0", "command exited 4");
	assert_true(rep.other_child_kept);
	free(log);
}

static void test_empty_command(void **state)
{
	struct fixture *fx = *state;
	struct report rep;
	char *log;

	fx->cmd[0] = '\0';
	run(fx, &rep, &log);
	expect(&rep, DELIVERY_PERMFAIL, "5.3.5", "empty");
	free(log);
}

static void test_refuses_root(void **state)
{
	struct fixture *fx = *state;
	struct delivery_result r;

	if (geteuid() != 0) {
		print_message("not root: skipped\n");
		skip();
	}
	int qfd = open_queue(fx);
	snprintf(fx->cmd, sizeof(fx->cmd), "touch %s/ran", fx->home);
	memset(&r, 0, sizeof(r));
	deliver_pipe(&fx->m, fx->cmd, &r);
	close(qfd);
	assert_int_equal(r.status, DELIVERY_TEMPFAIL);
	assert_string_equal(r.dsn, "4.3.0");
	assert_non_null(strstr(r.text, "root"));
	assert_null(slurp_home(fx, "ran"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reads_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_defaults_and_control_chars, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_home_runs_in_root, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_reading_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reads_all_no_warning_for_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_tempfail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_tempfail_with_sigchld_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_permfail_with_output, setup, teardown),
		cmocka_unit_test_setup_teardown(test_killed_by_signal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_kills_group, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_term_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_with_pipes_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_background_holding_output, setup, teardown),
		cmocka_unit_test_setup_teardown(test_huge_output_before_reading, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_read_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reaps_only_own_child, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_command, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_root, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
