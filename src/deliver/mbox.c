/*
 * mbox.c - append delivery to an mbox file (mboxrd format).
 *
 * Locking, in this order, released in the reverse order: a dotlock
 * (PATH.lock made with O_EXCL, as liblockfile's dotlockfile and mutt make
 * it; one older than five minutes is stale and removed, liblockfile's
 * rule), then an fcntl write lock on the whole file.  Both are polled
 * until one shared deadline (mbox_lock_timeout, 30 s by default); running
 * out of time is a temporary 4.2.1 "mailbox locked".
 *
 * In a mail spool such as Debian's /var/mail (root:mail, 2775) the account
 * cannot write the directory: the lock file, and the mbox when it is
 * missing, are then made with the spool group (spool_group.c), as procmail
 * and Postfix do, and the mbox is still the account's (mode 0600).  Where
 * not even that can make a lock file (a directory neither the account nor
 * the spool group may write, holding an mbox the account may write), the
 * delivery goes on with the fcntl lock alone, with a warning in the log
 * and in the result, as Postfix does: a mail reader cannot dotlock there
 * either.
 *
 * The file is opened with safe_open (no symlink, no hard link, ours).  The
 * size after locking is remembered, and on any failure the file is
 * truncated back to it, so a reader never sees half a message.
 */
#include "deliver/deliver.h"
#include "deliver/msgcopy.h"
#include "deliver/path.h"
#include "deliver/spool_group.h"
#include "lib/log.h"
#include "lib/safe_open.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DOTLOCK_STALE_SECONDS 300
#define LOCK_POLL_MS 100

static unsigned lock_timeout_ms = 30000;

void deliver_set_lock_timeout_ms(unsigned ms)
{
	lock_timeout_ms = ms;
}

struct mbox {
	const char *path;
	const char *base;               /* last component of path */
	char dir[PATH_MAX];
	char lockname[NAME_MAX + 1];
	int dirfd, fd;
	int spool_dir;                  /* dir is the mail spool group's (spool_group.c) */
	int dotlocked, fcntl_locked;
	char no_dotlock[128];           /* why there is no dotlock, or "" */
	off_t old_size;
	long long deadline_ms;          /* CLOCK_MONOTONIC */
};

static long long monotonic_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		panic("clock_gettime(CLOCK_MONOTONIC): %s", strerror(errno));
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep a poll interval; -1 (with r filled) once the deadline has passed. */
static int lock_wait(struct mbox *mb, struct delivery_result *r)
{
	if (monotonic_ms() >= mb->deadline_ms) {
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.2.1",
		    "mailbox locked: %s (waited %u ms)", mb->path, lock_timeout_ms);
		return -1;
	}
	struct timespec ts = { 0, LOCK_POLL_MS * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return 0;
}

static int mbox_split(struct mbox *mb, const char *path, struct delivery_result *r)
{
	const char *slash = strrchr(path, '/');

	mb->path = path;
	mb->dirfd = mb->fd = -1;
	mb->dotlocked = mb->fcntl_locked = mb->spool_dir = 0;
	mb->no_dotlock[0] = '\0';
	if (path[0] != '/' || slash == NULL || slash[1] == '\0') {
		deliver_result_set(r, DELIVERY_PERMFAIL, "5.2.0",
		    "mbox %s: not an absolute path to a file", path);
		return -1;
	}
	mb->base = slash + 1;
	if (strcmp(mb->base, ".") == 0 || strcmp(mb->base, "..") == 0) {
		deliver_result_set(r, DELIVERY_PERMFAIL, "5.2.0", "unsafe path %s: path contains ..", path);
		return -1;
	}
	size_t dirlen = slash == path ? 1 : (size_t)(slash - path);
	if (dirlen >= sizeof(mb->dir) ||
	    snprintf(mb->lockname, sizeof(mb->lockname), "%s.lock", mb->base) >=
	    (int)sizeof(mb->lockname)) {
		deliver_errno_result(r, ENAMETOOLONG, "mbox", path);
		return -1;
	}
	memcpy(mb->dir, path, dirlen);
	mb->dir[dirlen] = '\0';
	return 0;
}

/* openat(O_EXCL) of the lock file, as the account first and, in the
 * spool's directory it cannot write, with the spool group. */
static int lock_file_create(struct mbox *mb)
{
	const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC;
	int fd = openat(mb->dirfd, mb->lockname, flags, 0600);
	if (fd >= 0 || errno != EACCES || !mb->spool_dir)
		return fd;
	spool_group_enter();
	fd = openat(mb->dirfd, mb->lockname, flags, 0600);
	int saved = errno;
	spool_group_leave();
	errno = saved;
	return fd;
}

/* unlinkat of the lock file, the same way. */
static int lock_file_remove(struct mbox *mb)
{
	if (unlinkat(mb->dirfd, mb->lockname, 0) == 0)
		return 0;
	if (errno != EACCES || !mb->spool_dir)
		return -1;
	spool_group_enter();
	int rc = unlinkat(mb->dirfd, mb->lockname, 0);
	int saved = errno;
	spool_group_leave();
	errno = saved;
	return rc;
}

/* Remove the dotlock if it is older than DOTLOCK_STALE_SECONDS: 1 if
 * removed (or gone), 0 if fresh, -1 (with r filled) if it cannot be
 * removed: the mailbox stays locked for us, a temporary 4.2.1. */
static int dotlock_remove_stale(struct mbox *mb, struct delivery_result *r)
{
	struct stat st;
	if (fstatat(mb->dirfd, mb->lockname, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 1;
	if (time(NULL) - st.st_mtime <= DOTLOCK_STALE_SECONDS)
		return 0;
	log_info("mbox %s: removing stale lock file %s.lock", mb->path, mb->path);
	if (lock_file_remove(mb) < 0 && errno != ENOENT) {
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.2.1",
		    "mailbox locked: %s: cannot remove the stale lock file %s.lock: %s",
		    mb->path, mb->path, strerror(errno));
		return -1;
	}
	return 1;
}

static int dotlock_acquire(struct mbox *mb, struct delivery_result *r)
{
	for (;;) {
		int fd = lock_file_create(mb);
		if (fd >= 0) {
			char pid[32];
			int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
			if (write(fd, pid, (size_t)n) != n)
				log_debug("mbox %s: cannot write pid into lock file", mb->path);
			close(fd);
			mb->dotlocked = 1;
			return 0;
		}
		if (errno == EACCES || errno == EPERM) {
			/* not even the spool group may write here: fcntl only */
			snprintf(mb->no_dotlock, sizeof(mb->no_dotlock), "%s", strerror(errno));
			log_warn("mbox %s: cannot create lock file %s.lock: %s; locking with fcntl only",
			    mb->path, mb->path, mb->no_dotlock);
			return 0;
		}
		if (errno != EEXIST) {
			deliver_errno_result(r, errno, "create lock file for", mb->path);
			return -1;
		}
		int stale = dotlock_remove_stale(mb, r);
		if (stale < 0)
			return -1;
		if (stale == 0 && lock_wait(mb, r) < 0)
			return -1;
	}
}

static int fcntl_acquire(struct mbox *mb, struct delivery_result *r)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };

	for (;;) {
		if (fcntl(mb->fd, F_SETLK, &fl) == 0) {
			mb->fcntl_locked = 1;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EACCES) {
			deliver_errno_result(r, errno, "lock", mb->path);
			return -1;
		}
		if (lock_wait(mb, r) < 0)
			return -1;
	}
}

/* safe_open of the mbox as the account; a missing one in the spool's
 * directory the account cannot write is created with the spool group
 * (owned by the account all the same, mode 0600). */
static int mbox_file_open(struct mbox *mb, struct stat *st, char *err, size_t errlen)
{
	struct stat lst;
	int fd = safe_open_append_at(mb->dirfd, mb->base, O_WRONLY | O_APPEND, 0600, st,
	    err, errlen);
	if (fd >= 0 || errno != EACCES || !mb->spool_dir)
		return fd;
	int saved = errno;
	if (fstatat(mb->dirfd, mb->base, &lst, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT) {
		errno = saved;
		return -1;
	}
	spool_group_enter();
	fd = safe_open_append_at(mb->dirfd, mb->base, O_WRONLY | O_APPEND, 0600, st, err, errlen);
	saved = errno;
	spool_group_leave();
	errno = saved;
	if (fd >= 0)
		log_info("mbox %s: created in the mail spool", mb->path);
	return fd;
}

static int mbox_open_locked(struct mbox *mb, const char *home, struct delivery_result *r)
{
	char err[256];
	struct stat st;

	mb->dirfd = deliver_open_dir(mb->dir, home, 1, r);
	if (mb->dirfd < 0)
		return -1;
	mb->spool_dir = spool_group_dir(mb->dirfd);
	mb->deadline_ms = monotonic_ms() + lock_timeout_ms;
	if (dotlock_acquire(mb, r) < 0)
		return -1;
	mb->fd = mbox_file_open(mb, &st, err, sizeof(err));
	if (mb->fd < 0) {
		deliver_errno_result(r, errno, "open", mb->path);
		snprintf(r->text, sizeof(r->text), "open %s: %s", mb->path, err);
		return -1;
	}
	if (fcntl_acquire(mb, r) < 0)
		return -1;
	if (fstat(mb->fd, &st) < 0) {
		deliver_errno_result(r, errno, "stat", mb->path);
		return -1;
	}
	mb->old_size = st.st_size;
	return 0;
}

/* Take back a partly written message. */
static void mbox_rollback(struct mbox *mb)
{
	if (ftruncate(mb->fd, mb->old_size) < 0 || fsync(mb->fd) < 0)
		log_warn("mbox %s: cannot truncate back to %lld bytes, a partial message may remain: %s",
		    mb->path, (long long)mb->old_size, strerror(errno));
}

static int mbox_append(const struct delivery_msg *m, struct mbox *mb, struct delivery_result *r)
{
	enum msgcopy_side side;

	if (msgcopy_mbox(m, mb->fd, time(NULL), &side) < 0) {
		msgcopy_fail_result(r, side, errno, mb->path);
		return -1;
	}
	if (fsync(mb->fd) < 0) {
		deliver_errno_result(r, errno, "fsync", mb->path);
		return -1;
	}
	return 0;
}

static void mbox_unlock(struct mbox *mb)
{
	if (mb->fcntl_locked) {
		struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
		if (fcntl(mb->fd, F_SETLK, &fl) < 0)
			log_warn("mbox %s: unlock: %s", mb->path, strerror(errno));
	}
	/* the data was fsynced before: a close error here changes nothing */
	if (mb->fd >= 0 && close(mb->fd) < 0 && errno != EINTR)
		log_warn("mbox %s: close: %s", mb->path, strerror(errno));
	if (mb->dotlocked && lock_file_remove(mb) < 0)
		log_warn("mbox %s: cannot remove lock file: %s", mb->path, strerror(errno));
	if (mb->dirfd >= 0)
		close(mb->dirfd);
	mb->fd = mb->dirfd = -1;
	mb->dotlocked = mb->fcntl_locked = 0;
}

void deliver_mbox(const struct delivery_msg *m, const char *path,
    struct delivery_result *r)
{
	struct mbox mb;

	if (mbox_split(&mb, path, r) < 0)
		return;
	if (mbox_open_locked(&mb, m->home, r) == 0) {
		if (mbox_append(m, &mb, r) < 0)
			mbox_rollback(&mb);
		else if (mb.no_dotlock[0] != '\0')
			deliver_result_set(r, DELIVERY_OK, "2.0.0",
			    "delivered to mbox %s (fcntl lock only, no lock file: %s)", path, mb.no_dotlock);
		else
			deliver_result_set(r, DELIVERY_OK, "2.0.0", "delivered to mbox %s", path);
	}
	mbox_unlock(&mb);
}
