/*
 * alert.c - the alert command's child process (see alert.h).
 */
#include "mailmond/alert.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

pid_t alert_run(const char *cmd, const char *probe, const char *state, double delay)
{
	char delay_text[64];
	snprintf(delay_text, sizeof(delay_text), "%.3f", delay < 0 ? 0.0 : delay);
	/* "12.000" -> "12" */
	char *dot = strchr(delay_text, '.');
	if (dot != NULL) {
		char *end = delay_text + strlen(delay_text);
		while (end > dot + 1 && end[-1] == '0')
			*--end = '\0';
		if (end == dot + 1)
			*dot = '\0';
	}

	pid_t pid = fork();
	if (pid < 0) {
		log_warn("alert for probe %s (%s): fork: %s", probe, state, strerror(errno));
		return -1;
	}
	if (pid > 0) {
		setpgid(pid, pid);      /* (the child does it too: no race) */
		return pid;
	}

	/* a process group of its own, so that all it started can be killed */
	setpgid(0, 0);

	int devnull = open("/dev/null", O_RDONLY);
	if (devnull < 0 || dup2(devnull, STDIN_FILENO) < 0)
		_exit(126);
	close_range(3, ~0U, 0);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	if (setenv("PROBE", probe, 1) < 0 || setenv("STATE", state, 1) < 0 ||
	    setenv("DELAY", delay_text, 1) < 0)
		_exit(126);
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	_exit(127);
}
