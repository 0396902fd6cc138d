/*
 * pipe.c - delivery to a command: `/bin/sh -c COMMAND` as the worker's
 * user, the Return-Path/Delivered-To prefix and the message on its stdin.
 *
 * One poll() loop feeds stdin, reads stdout+stderr (the first
 * PIPE_OUTPUT_KEEP bytes are kept for the failure text, the rest is read
 * and dropped, so a command that writes much before it reads never
 * deadlocks) and watches for the child's exit through a pidfd (or, on
 * kernels without one, a waitid tick).  The exit is noticed with WNOWAIT:
 * the zombie keeps the process group id from being reused until we have
 * signalled the group and reaped exactly our own child.
 *
 * Judgement: exit 0 delivered; 75 (EX_TEMPFAIL) temporary 4.3.0; any other
 * exit or a signal permanent 5.3.0.  Past the deadline the group gets
 * SIGTERM, then SIGKILL after PIPE_KILL_GRACE_MS: temporary 4.3.0.  A
 * queue file read error kills the group at once (the command must not take
 * a cut message for a whole one): temporary 4.3.0.  A command that stops
 * reading early is logged and still judged by its exit status.  After
 * deliver_pipe_stop() (the worker's SIGTERM at the end of the daemon's
 * stop grace time) a running command's group is killed the same way and
 * no new one starts: temporary 4.3.0.
 *
 * Security: never runs as root.  SIGPIPE is ignored (and a SIG_IGN'ed
 * SIGCHLD set to default, so the child can be waited for) only while the
 * command runs; the caller's dispositions come back afterwards.
 */
#include "deliver/deliver.h"
#include "deliver/msgcopy.h"
#include "deliver/pipe_private.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PIPE_DEFAULT_TIMEOUT 600
#define PIPE_KILL_GRACE_MS 2000
#define PIPE_OUTPUT_KEEP 1024
#define PIPE_CHUNK (64 * 1024)
#define PIPE_TICK_MS 50
#define PIPE_DRAIN_READS 16
#define PIPE_TEXT_MAX 320
#define PIPE_LOG_COMMAND_MAX 200
#define PIPE_EX_TEMPFAIL 75

static unsigned pipe_timeout = PIPE_DEFAULT_TIMEOUT;
static volatile sig_atomic_t pipe_stop;

void deliver_pipe_stop(void)
{
	pipe_stop = 1;
}

void deliver_set_pipe_timeout(unsigned seconds)
{
	pipe_timeout = seconds ? seconds : PIPE_DEFAULT_TIMEOUT;
}

struct pipe_run {
	const struct delivery_msg *m;
	pid_t pid;
	int pidfd;              /* -1: no pidfd, check with waitid every tick */
	int in_fd;              /* our end of its stdin; -1 once closed */
	int out_fd;             /* our end of its stdout/stderr; -1 at EOF */
	int exited;             /* a zombie now (seen with WNOWAIT), not reaped */
	int unread;             /* stdin went away before all was written */
	int read_err;           /* errno of a failed queue file read, or 0 */
	struct buf prefix;
	uint64_t total;         /* prefix + message */
	uint64_t queued;        /* bytes of that put into chunk so far */
	char *chunk;
	size_t chunk_pos, chunk_len;
	char output[PIPE_OUTPUT_KEEP];
	size_t output_len;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Refill chunk with the next part of prefix + message.  0 or -1 (errno). */
static int input_fill(struct pipe_run *p)
{
	uint64_t left = p->total - p->queued;
	size_t n = left > PIPE_CHUNK ? PIPE_CHUNK : (size_t)left;

	if (p->queued < p->prefix.len) {
		if (n > p->prefix.len - p->queued)
			n = p->prefix.len - (size_t)p->queued;
		memcpy(p->chunk, p->prefix.data + p->queued, n);
	} else {
		off_t off = p->m->msg_offset + (off_t)(p->queued - p->prefix.len);
		if (pread_all(p->m->qfd, p->chunk, n, off) < 0)
			return -1;
	}
	p->chunk_pos = 0;
	p->chunk_len = n;
	p->queued += n;
	return 0;
}

/* Write what the pipe takes; close stdin when all is written or the
 * command is gone. */
static void input_write(struct pipe_run *p)
{
	while (p->in_fd >= 0) {
		if (p->chunk_pos == p->chunk_len) {
			if (p->queued == p->total) {
				close_fd(&p->in_fd);
				return;
			}
			if (input_fill(p) < 0) {
				p->read_err = errno ? errno : EIO;
				return;
			}
		}
		ssize_t n = write(p->in_fd, p->chunk + p->chunk_pos, p->chunk_len - p->chunk_pos);
		if (n > 0) {
			p->chunk_pos += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return;
		} else {
			p->unread = 1;  /* EPIPE: it closed stdin or exited */
			close_fd(&p->in_fd);
		}
	}
}

/* Read what is there (at most max_reads reads); keep the start. */
static void output_read(struct pipe_run *p, int max_reads)
{
	char tmp[PIPE_CHUNK];

	while (p->out_fd >= 0 && max_reads-- > 0) {
		ssize_t n = read(p->out_fd, tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			close_fd(&p->out_fd);
			return;
		}
		size_t keep = sizeof(p->output) - p->output_len;
		if (keep > (size_t)n)
			keep = (size_t)n;
		memcpy(p->output + p->output_len, tmp, keep);
		p->output_len += keep;
	}
}

/* Has the child exited?  Leaves it a zombie. */
static int child_check(struct pipe_run *p)
{
	siginfo_t si;

	if (p->exited)
		return 1;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0) {
		if (si.si_pid == p->pid)
			p->exited = 1;
	} else if (errno == ECHILD) {
		p->exited = 1;  /* reaped behind our back: nothing left to wait for */
	}
	return p->exited;
}

/* One poll round of at most wait_ms: feed stdin (when feeding), read
 * output, notice the exit. */
static void run_round(struct pipe_run *p, int feeding, int64_t wait_ms)
{
	struct pollfd fds[3];
	int nfds = 0, in_i = -1, out_i = -1;

	if (feeding && p->in_fd >= 0 && p->read_err == 0) {
		in_i = nfds;
		fds[nfds++] = (struct pollfd){ .fd = p->in_fd, .events = POLLOUT };
	}
	if (p->out_fd >= 0) {
		out_i = nfds;
		fds[nfds++] = (struct pollfd){ .fd = p->out_fd, .events = POLLIN };
	}
	if (p->pidfd >= 0)
		fds[nfds++] = (struct pollfd){ .fd = p->pidfd, .events = POLLIN };
	else if (wait_ms > PIPE_TICK_MS)
		wait_ms = PIPE_TICK_MS;
	if (wait_ms < 0)
		wait_ms = 0;
	int n = poll(fds, (nfds_t)nfds, (int)wait_ms);
	if (n > 0 && in_i >= 0 && fds[in_i].revents)
		input_write(p);
	if (n > 0 && out_i >= 0 && fds[out_i].revents)
		output_read(p, PIPE_DRAIN_READS);
	child_check(p);
}

/* Wait until the child exits or deadline (monotonic ms) passes. */
static void run_until(struct pipe_run *p, int feeding, int64_t deadline)
{
	while (!child_check(p) && p->read_err == 0 && !(feeding && pipe_stop)) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return;
		run_round(p, feeding, left);
	}
}

static void kill_group(struct pipe_run *p, int sig)
{
	if (kill(-p->pid, sig) < 0 && !p->exited)
		kill(p->pid, sig);
}

/* Kill the group and wait: SIGTERM and a grace (graceful), or SIGKILL. */
static void run_kill(struct pipe_run *p, int graceful)
{
	if (graceful) {
		kill_group(p, SIGTERM);
		run_until(p, 0, now_ms() + PIPE_KILL_GRACE_MS);
	}
	kill_group(p, SIGKILL);  /* the group leader is alive or a zombie: no reuse */
}

static int run_reap(struct pipe_run *p)
{
	int status = 0;

	while (waitpid(p->pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return status;
}

static const char *signal_name(int sig)
{
	const char *s = sigabbrev_np(sig);
	return s ? s : "unknown";
}

static void judge(struct pipe_run *p, int status, struct delivery_result *r)
{
	char out[PIPE_TEXT_MAX];
	char sep[3] = ": ";

	pipe_printable(p->output, p->output_len, out, sizeof(out));
	if (out[0] == '\0')
		sep[0] = '\0';
	if (status == -1) {
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0", "lost the command's exit status%s%s",
		    sep, out);
	} else if (WIFSIGNALED(status)) {
		deliver_result_set(r, DELIVERY_PERMFAIL, "5.3.0", "command killed by signal %d (SIG%s)%s%s",
		    WTERMSIG(status), signal_name(WTERMSIG(status)), sep, out);
	} else if (WEXITSTATUS(status) == 0) {
		deliver_result_set(r, DELIVERY_OK, "2.0.0", "delivered to command");
	} else {
		int temp = WEXITSTATUS(status) == PIPE_EX_TEMPFAIL;
		deliver_result_set(r, temp ? DELIVERY_TEMPFAIL : DELIVERY_PERMFAIL,
		    temp ? "4.3.0" : "5.3.0", "command exited %d%s%s", WEXITSTATUS(status), sep, out);
	}
}

static void warn_unread(const struct pipe_env *env, const char *command)
{
	char shown[PIPE_LOG_COMMAND_MAX];
	pipe_printable(command, strlen(command), shown, sizeof(shown));
	log_warn("pipe: user=%s command=%s exited without reading all of its input",
	    env->user, shown);
}

/* Start the child with pipes for stdin and stdout+stderr.  0 or -1 with r. */
static int run_start(struct pipe_run *p, const char *command, const struct pipe_env *env,
    struct delivery_result *r)
{
	int in[2], out[2];

	if (pipe2(in, O_CLOEXEC) < 0) {
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0", "pipe: %s", strerror(errno));
		return -1;
	}
	if (pipe2(out, O_CLOEXEC) < 0) {
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0", "pipe: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		return -1;
	}
	p->pid = fork();
	if (p->pid == 0)
		pipe_exec_child(in[0], out[1], command, env);
	int saved = errno;
	close(in[0]);
	close(out[1]);
	if (p->pid < 0) {
		close(in[1]);
		close(out[0]);
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0", "fork: %s", strerror(saved));
		return -1;
	}
	setpgid(p->pid, p->pid);        /* also done by the child: no race with kill */
	p->in_fd = in[1];
	p->out_fd = out[0];
	fcntl(p->in_fd, F_SETFL, fcntl(p->in_fd, F_GETFL) | O_NONBLOCK);
	fcntl(p->out_fd, F_SETFL, fcntl(p->out_fd, F_GETFL) | O_NONBLOCK);
	p->pidfd = pidfd_open(p->pid, 0);
	return 0;
}

static void run_command(struct pipe_run *p, const char *command, const struct pipe_env *env,
    struct delivery_result *r)
{
	int64_t deadline = now_ms() + (int64_t)pipe_timeout * 1000;

	if (pipe_stop) {
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0", "mail system stopping");
		return;
	}
	if (run_start(p, command, env, r) < 0)
		return;
	input_write(p);
	run_until(p, 1, deadline);
	if (p->read_err) {
		run_kill(p, 0);
		run_reap(p);
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0", "read queue file: %s",
		    strerror(p->read_err));
	} else if (!p->exited && pipe_stop) {
		run_kill(p, 1);
		run_reap(p);
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0",
		    "mail system stopping: command stopped");
	} else if (!p->exited) {
		run_kill(p, 1);
		run_reap(p);
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0", "command timed out after %us",
		    pipe_timeout);
	} else {
		/* its output is in the pipe already; a background process that
		 * still holds the pipe is not waited for */
		output_read(p, PIPE_DRAIN_READS);
		if (p->in_fd >= 0 && (p->queued < p->total || p->chunk_pos < p->chunk_len))
			p->unread = 1;
		if (p->unread)
			warn_unread(env, command);
		judge(p, run_reap(p), r);
	}
	close_fd(&p->in_fd);
	close_fd(&p->out_fd);
	close_fd(&p->pidfd);
}

void deliver_pipe(const struct delivery_msg *m, const char *command, struct delivery_result *r)
{
	struct pipe_run p;
	struct pipe_env env;
	struct sigaction ign, dfl, old_pipe, old_chld;

	if (geteuid() == 0) {
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0",
		    "refusing to run a pipe command as root");
		return;
	}
	if (command == NULL || command[0] == '\0') {
		deliver_result_set(r, DELIVERY_PERMFAIL, "5.3.5", "empty pipe command");
		return;
	}
	memset(&p, 0, sizeof(p));
	p.m = m;
	p.pid = -1;
	p.pidfd = p.in_fd = p.out_fd = -1;
	msgcopy_prefix(m, &p.prefix);
	p.total = p.prefix.len + m->msg_size;
	p.chunk = xmalloc(PIPE_CHUNK);
	memset(&env, 0, sizeof(env));
	pipe_env_build(m, &env);

	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &ign, &old_pipe);
	sigaction(SIGCHLD, NULL, &old_chld);
	if (old_chld.sa_handler == SIG_IGN || (old_chld.sa_flags & SA_NOCLDWAIT)) {
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGCHLD, &dfl, NULL);
	}

	run_command(&p, command, &env, r);

	sigaction(SIGCHLD, &old_chld, NULL);
	sigaction(SIGPIPE, &old_pipe, NULL);
	pipe_env_free(&env);
	buf_free(&p.prefix);
	free(p.chunk);
}
