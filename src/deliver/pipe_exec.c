/*
 * pipe_exec.c - the child side of pipe delivery: the environment a command
 * gets, the clean process state it starts in, and the printable summary of
 * what it wrote.  See pipe_private.h.
 *
 * Security: the command runs with nothing inherited from the worker but
 * its uid/gid (not the saved mail spool group of a root-mode worker):
 * no descriptors beyond 0-2, no environment beyond the listed
 * variables, no ignored or blocked signals, a private umask.  Values taken
 * from the envelope keep their bytes except control characters, so a
 * command that quotes "$SENDER" sees the address as it came.
 */
#include "deliver/pipe_private.h"
#include "lib/privsep.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PIPE_SHELL "/bin/sh"
#define PIPE_PATH "/usr/local/bin:/usr/bin:/bin"
#define PIPE_EX_TEMPFAIL 75

static char *env_var(const char *name, const char *value)
{
	char *v = xasprintf("%s=%s", name, value ? value : "");
	for (char *p = v + strlen(name) + 1; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return v;
}

void pipe_env_build(const struct delivery_msg *m, struct pipe_env *e)
{
	const struct passwd *pw = NULL;
	int n = 0;

	if (m->user == NULL || m->home == NULL)
		pw = getpwuid(geteuid());
	if (m->user != NULL)
		e->user = xstrdup(m->user);
	else if (pw != NULL)
		e->user = xstrdup(pw->pw_name);
	else
		e->user = xasprintf("%lu", (unsigned long)geteuid());
	if (m->home != NULL)
		e->home = xstrdup(m->home);
	else
		e->home = xstrdup(pw != NULL && pw->pw_dir[0] == '/' ? pw->pw_dir : "/");

	e->vars[n++] = env_var("SENDER", m->sender);
	e->vars[n++] = env_var("RECIPIENT", m->recipient);
	e->vars[n++] = env_var("EXTENSION", m->extension);
	e->vars[n++] = env_var("USER", e->user);
	e->vars[n++] = env_var("LOGNAME", e->user);
	e->vars[n++] = env_var("HOME", e->home);
	e->vars[n++] = env_var("SHELL", PIPE_SHELL);
	e->vars[n++] = env_var("PATH", PIPE_PATH);
	e->vars[n] = NULL;
}

void pipe_env_free(struct pipe_env *e)
{
	for (int i = 0; e->vars[i] != NULL; i++)
		free(e->vars[i]);
	e->vars[0] = NULL;
	free(e->user);
	free(e->home);
	e->user = e->home = NULL;
}

/* Only async-signal-safe calls from here on: we are between fork and exec. */
static void child_say(const char *what, int err)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "mailprocd: %s: %s\n", what, strerror(err));
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static void child_close_from(int lowfd)
{
	if (close_range((unsigned)lowfd, ~0U, 0) == 0)
		return;
	long max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = lowfd; fd < max; fd++)
		close(fd);
}

/* glibc refuses sigaction() on the signals it reserves for its threads
 * (32 and 33).  An ignored one would stay ignored across exec, so reset it
 * with the system call itself (the kernel's struct: handler, flags,
 * restorer, mask). */
static void reset_reserved_signal(int sig)
{
	struct {
		void *handler;
		unsigned long flags;
		void *restorer;
		unsigned long mask;
	} k = { 0 };

	k.handler = (void *)SIG_DFL;
	(void)syscall(SYS_rt_sigaction, sig, &k, NULL, sizeof(k.mask));
}

_Noreturn void pipe_exec_child(int in_fd, int out_fd, const char *command,
    const struct pipe_env *e)
{
	struct sigaction dfl;
	sigset_t none;

	setpgid(0, 0);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		if (sigaction(sig, &dfl, NULL) < 0 && sig != SIGKILL && sig != SIGSTOP)
			reset_reserved_signal(sig);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	/* move both ends above 2 first: either may be 0, 1 or 2 */
	int in = fcntl(in_fd, F_DUPFD, 3);
	int out = fcntl(out_fd, F_DUPFD, 3);
	if (in < 0 || out < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
	    dup2(out, STDERR_FILENO) < 0)
		_exit(PIPE_EX_TEMPFAIL);
	child_close_from(3);
	/* the mail spool group a root-mode worker keeps as its saved gid is
	 * for the worker's own lock files, never for a command */
	if (privsep_drop_saved_gid() < 0) {
		child_say("drop the saved group", errno);
		_exit(PIPE_EX_TEMPFAIL);
	}
	umask(077);
	if (chdir(e->home) < 0 && chdir("/") < 0)
		child_say("chdir /", errno);

	char *const argv[] = { (char *)"sh", (char *)"-c", (char *)command, NULL };
	execve(PIPE_SHELL, argv, e->vars);
	child_say("exec " PIPE_SHELL, errno);
	_exit(PIPE_EX_TEMPFAIL);
}

void pipe_printable(const char *p, size_t len, char *out, size_t outlen)
{
	size_t o = 0;
	int space = 0;

	if (outlen == 0)
		return;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c <= 0x20 || c == 0x7f) {
			space = o > 0;
			continue;
		}
		if (o + space + 1 > outlen - 1) {
			if (outlen - 1 >= 3) {
				if (o > outlen - 1 - 3)
					o = outlen - 1 - 3;
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (space)
			out[o++] = ' ';
		space = 0;
		out[o++] = c < 0x80 ? (char)c : '?';
	}
	out[o] = '\0';
}
