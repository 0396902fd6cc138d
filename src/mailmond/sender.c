/*
 * sender.c - the child process that sends one probe (see sender.h).
 */
#include "mailmond/sender.h"
#include "mailmond/probe_send.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define REASON_FD 3

static _Noreturn void child_main(const struct mm_config *c, const struct mm_probe_conf *pr,
    const struct probe_id *id, int reason_w)
{
	struct buf msg = BUF_INIT;
	char err[1000];
	sigset_t none;

	/* only the reason pipe (and stdio) stays: not the listener, not the
	 * inotify descriptor, not libevent's */
	if (reason_w != REASON_FD) {
		if (dup2(reason_w, REASON_FD) < 0)
			_exit(3);
	}
	close_range(REASON_FD + 1, ~0U, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);      /* a closed connection is EPIPE */
	signal(SIGALRM, SIG_DFL);      /* the timeout ends us */

	struct itimerval t = { .it_value = {
		.tv_sec = (time_t)(c->timeout_usec / 1000000),
		.tv_usec = (suseconds_t)(c->timeout_usec % 1000000) } };
	setitimer(ITIMER_REAL, &t, NULL);

	probe_msg_build(&msg, id, c->from, pr->to, c->helo);
	if (probe_send(pr, c->helo, c->from, &msg, err, sizeof(err)) == 0)
		_exit(0);
	(void)write_all(REASON_FD, err, strlen(err));
	_exit(1);
}

pid_t sender_start(const struct mm_config *c, const struct mm_probe_conf *pr,
    const struct probe_id *id, int *reason_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		log_warn("probe %s: pipe: %s", pr->name, strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_warn("probe %s: fork: %s", pr->name, strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		child_main(c, pr, id, p[1]);
	}
	close(p[1]);
	*reason_fd = p[0];
	return pid;
}

int sender_result(int status, int reason_fd, const struct mm_config *c, char *why,
    size_t whylen)
{
	char text[1000];
	ssize_t n = read(reason_fd, text, sizeof(text) - 1);
	close(reason_fd);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
		snprintf(why, whylen, "no answer within %.3gs",
		    (double)c->timeout_usec / 1e6);
	} else if (n > 0) {
		text[n] = '\0';
		snprintf(why, whylen, "%s", text);
	} else if (WIFSIGNALED(status)) {
		snprintf(why, whylen, "sender killed by signal %d", WTERMSIG(status));
	} else {
		snprintf(why, whylen, "sender exited with status %d", WEXITSTATUS(status));
	}
	return -1;
}
