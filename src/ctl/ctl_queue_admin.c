/*
 * ctl_queue_admin.c - `mailprocctl queue delete ID` and `queue flush`.
 *
 * delete unlinks the file from active/, deferred/ or corrupt/ (the qmgr
 * copes with a file vanishing).  flush sends SIGUSR1 to the master, whose
 * pid is in run_dir/mailprocd.pid; the master passes it to the qmgr, which
 * retries the deferred messages now.
 */
#include "conf/config.h"
#include "ctl/ctl.h"
#include "lib/fsutil.h"
#include "lib/parse_util.h"
#include "lib/xalloc.h"
#include "queue/qfile.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PID_FILE "mailprocd.pid"

int ctl_queue_delete(const struct config *cfg, char **args, int nargs)
{
	const char *qid = args[0];

	if (!qid_valid(qid) || strlen(qid) >= QID_MAX) {
		ctl_error("queue delete: bad queue id \"%s\"", qid);
		return CTL_ERROR;
	}
	for (int i = 0; i < CTL_QUEUE_NDIRS; i++) {
		char *path = xasprintf("%s/%s/%s", cfg->queue_dir, ctl_queue_dirs[i], qid);
		struct stat st;
		/* a file in incoming/ without the committed mark is still being
		 * received: it is not in the queue yet */
		if (strcmp(ctl_queue_dirs[i], "incoming") == 0 &&
		    lstat(path, &st) == 0 && !qfile_mode_committed(st.st_mode)) {
			free(path);
			continue;
		}
		int r = unlink(path);
		int saved = errno;
		free(path);
		if (r == 0) {
			printf("deleted %s from %s\n", qid, ctl_queue_dirs[i]);
			return CTL_OK;
		}
		if (saved != ENOENT) {
			ctl_error("queue delete: %s/%s/%s: %s", cfg->queue_dir,
			    ctl_queue_dirs[i], qid, strerror(saved));
			return CTL_ERROR;
		}
	}
	ctl_error("queue delete: %s: no such message", qid);
	return CTL_ERROR;
}

/* The master's pid from the pid file; 0 (reported) when unusable. */
static pid_t read_pid(const char *path)
{
	uint64_t pid;
	char *text = read_file(path, 64, NULL);
	if (text == NULL) {
		ctl_error("queue flush: %s: %s (is mailprocd running?)", path, strerror(errno));
		return 0;
	}
	text[strcspn(text, " \t\r\n")] = '\0';
	int ok = parse_uint(text, 0x7fffffff, &pid) == 0 && pid > 1;
	if (!ok)
		ctl_error("queue flush: %s: not a process id: \"%s\"", path, text);
	free(text);
	return ok ? (pid_t)pid : 0;
}

int ctl_queue_flush(const struct config *cfg, char **args, int nargs)
{
	char *path = xasprintf("%s/%s", cfg->run_dir, PID_FILE);
	pid_t pid = read_pid(path);
	free(path);
	if (pid == 0)
		return CTL_ERROR;
	if (kill(pid, SIGUSR1) < 0) {
		ctl_error("queue flush: cannot signal mailprocd (pid %ld): %s", (long)pid,
		    strerror(errno));
		return CTL_ERROR;
	}
	printf("flush requested from mailprocd (pid %ld)\n", (long)pid);
	return CTL_OK;
}
