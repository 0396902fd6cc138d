/*
 * sync_reader.c - reading one user's ~/.mailprocd/policy as that user.
 *
 * Runs in a child of the sync's root side, which has closed nothing yet:
 * the first thing is to keep only stderr (for the log) and the result
 * pipe (stdin and stdout: /dev/null, not root's terminal), then to
 * become the file's owner for good (never uid 0 nor one below
 * minimum_uid).  The file is opened O_NOFOLLOW|O_NONBLOCK (a symlink, a
 * FIFO or a device yields nothing), must be a regular file of that uid
 * and at most USER_POLICY_MAX_FILE bytes.  The errors go to
 * ~/.mailprocd/policy.errors (a temporary file renamed over it, written as
 * the user), which is removed when the file is fine.
 */
#include "policy/sync.h"
#include "policy/user_policy.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/privsep.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESULT_FD 3

static void errors_add(void *arg, int line, const char *msg)
{
	struct buf *b = arg;
	if (line > 0)
		buf_printf(b, "policy:%d: %s\n", line, msg);
	else
		buf_printf(b, "policy: %s\n", msg);
}

/* Write (or remove, when errors is empty) ~/.mailprocd/policy.errors. */
static void write_errors(const char *home, const struct buf *errors)
{
	char *dir = xasprintf("%s/.mailprocd", home);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		goto out;
	if (errors->len == 0) {
		if (unlinkat(dfd, "policy.errors", 0) < 0 && errno != ENOENT)
			log_warn("policy sync: %s/policy.errors: %s", dir, strerror(errno));
		goto out;
	}
	char tmpname[64];
	snprintf(tmpname, sizeof(tmpname), ".policy.errors.%ld", (long)getpid());
	unlinkat(dfd, tmpname, 0);
	int fd = openat(dfd, tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		goto out;
	if (write_all(fd, errors->data, errors->len) < 0 || close(fd) < 0 ||
	    renameat(dfd, tmpname, dfd, "policy.errors") < 0) {
		log_warn("policy sync: %s/policy.errors: %s", dir, strerror(errno));
		unlinkat(dfd, tmpname, 0);
	}
out:
	if (dfd >= 0)
		close(dfd);
	free(dir);
}

static _Noreturn void send_result(char status, const struct buf *blob)
{
	if (write_all(RESULT_FD, &status, 1) < 0 ||
	    (blob != NULL && blob->len > 0 && write_all(RESULT_FD, blob->data, blob->len) < 0))
		_exit(1);
	_exit(0);
}

/* Read the whole file (at most max + 1 bytes, to see that it is too big). */
static int read_bounded(int fd, struct buf *out, size_t max)
{
	char chunk[8192];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		buf_append(out, chunk, (size_t)n);
		if (out->len > max)
			return 0;
	}
}

void polsync_reader_run(int out_fd, const char *account, uid_t uid, gid_t gid,
    const char *home, int root_mode, uint64_t minimum_uid)
{
	struct buf errors = BUF_INIT, text = BUF_INIT, blob = BUF_INIT;
	char err[256], path[4200];
	struct stat st;
	uid_t owner = root_mode ? uid : geteuid();

	/* nothing of the root side's: the databases, the writer's socket */
	if (dup2(out_fd, RESULT_FD) < 0)
		_exit(1);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0)
		_exit(1);
	close_range(RESULT_FD + 1, ~0u, 0);
	signal(SIGPIPE, SIG_DFL);
	if (root_mode) {
		if (uid == 0 || uid < minimum_uid || gid == 0)
			_exit(1);
		if (privsep_become(uid, gid, account, err, sizeof(err)) < 0) {
			log_warn("policy sync: %s: %s", account, err);
			_exit(1);
		}
	}
	alarm(POLSYNC_READER_TIMEOUT);
	snprintf(path, sizeof(path), "%s/%s", home, POLICY_FILE);
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			send_result(POLSYNC_NOFILE, NULL);
		if (errno == ELOOP)
			errors_add(&errors, 0, "is a symbolic link: not read (write the file itself)");
		else
			errors_add(&errors, 0, strerror(errno));
		goto broken;
	}
	if (fstat(fd, &st) < 0) {
		errors_add(&errors, 0, strerror(errno));
		goto broken;
	}
	if (!S_ISREG(st.st_mode)) {
		errors_add(&errors, 0, "not a regular file: not read");
		goto broken;
	}
	if (st.st_uid != owner) {
		snprintf(err, sizeof(err), "owned by uid %lu, not by %s (uid %lu): not read",
		    (unsigned long)st.st_uid, account, (unsigned long)owner);
		errors_add(&errors, 0, err);
		goto broken;
	}
	if (st.st_size > USER_POLICY_MAX_FILE) {
		errors_add(&errors, 0, "file larger than 65536 bytes: not read");
		goto broken;
	}
	if (read_bounded(fd, &text, USER_POLICY_MAX_FILE) < 0) {
		errors_add(&errors, 0, strerror(errno));
		goto broken;
	}
	struct user_policy *p = NULL;
	if (user_policy_parse(text.data ? text.data : "", text.len, &p, errors_add, &errors) != 0)
		goto broken;
	user_policy_encode(p, &blob);
	write_errors(home, &errors);
	send_result(POLSYNC_GOOD, &blob);
broken:
	write_errors(home, &errors);
	send_result(POLSYNC_BROKEN, NULL);
}
