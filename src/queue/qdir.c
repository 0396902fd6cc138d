/*
 * qdir.c - the queue directory: creation with safe ownership and modes,
 * purge of uncommitted files, moves between subdirectories, durable
 * removal of finished files in groups that share one fsync of their
 * directory (through finished/, so that the caller does not wait for the
 * blocks to be freed).
 *
 * queue_dir is opened with O_NOFOLLOW and everything below it is reached
 * through that descriptor, so a symlink swapped in cannot redirect us.
 */
#include "queue/qfile.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const queue_subdirs[] = { "incoming", "active", "deferred", "corrupt", "finished" };

/* Open an existing directory (not through a symlink), fix owner and mode. */
static int open_fix_dir(int at, const char *name, uid_t owner, gid_t group)
{
	struct stat st;
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ELOOP)
			errno = ENOTDIR;        /* a symlink: refused */
		return -1;
	}
	if (fstat(fd, &st) < 0)
		goto fail;
	if (geteuid() == 0 && owner != (uid_t)-1 &&
	    (st.st_uid != owner || (group != (gid_t)-1 && st.st_gid != group)) &&
	    fchown(fd, owner, group) < 0)
		goto fail;
	if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)
		goto fail;
	return fd;
fail:;
	int saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

static int mkdir_open_fix(int at, const char *name, uid_t owner, gid_t group)
{
	if (mkdirat(at, name, 0700) < 0 && errno != EEXIST)
		return -1;
	return open_fix_dir(at, name, owner, group);
}

/* Make the parent of path (mode 0755 for what is created). */
static int make_parent(const char *path)
{
	char parent[PATH_MAX];

	if (snprintf(parent, sizeof(parent), "%s", path) >= (int)sizeof(parent)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	char *slash = strrchr(parent, '/');
	if (slash == NULL || slash == parent)
		return 0;
	*slash = '\0';
	return mkdir_p(parent, 0755);
}

int queue_dirs_create(const char *queue_dir, uid_t owner, gid_t group)
{
	if (make_parent(queue_dir) < 0)
		return -1;
	int dfd = mkdir_open_fix(AT_FDCWD, queue_dir, owner, group);
	if (dfd < 0)
		return -1;
	for (size_t i = 0; i < sizeof(queue_subdirs) / sizeof(queue_subdirs[0]); i++) {
		int fd = mkdir_open_fix(dfd, queue_subdirs[i], owner, group);
		if (fd < 0) {
			int saved = errno;
			close(dfd);
			errno = saved;
			return -1;
		}
		close(fd);
	}
	int r = fsync(dfd);
	int saved = errno;
	close(dfd);
	errno = saved;
	return r;
}

/* Run purge(dfd, name) on every entry of the directory open as dfd (owned
 * here, closed at the end, read from its start): each returns 1 (removed),
 * 0 (kept) or -1 with errno (stop).  The number removed, or -1 with errno. */
static int purge_dir(int dfd, int (*purge)(int dfd, const char *name))
{
	DIR *d = fdopendir(dfd);
	if (d == NULL) {
		int saved = errno;
		close(dfd);
		errno = saved;
		return -1;
	}
	int removed = 0;
	struct dirent *de;
	rewinddir(d);           /* a dup()ed descriptor shares its offset */
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int r = purge(dirfd(d), de->d_name);
		if (r < 0)
			break;
		removed += r;
		errno = 0;
	}
	int saved = errno;
	closedir(d);
	errno = saved;
	return saved != 0 ? -1 : removed;
}

/* Remove one entry of incoming/ if it is a regular file without the
 * committed mark. */
static int purge_uncommitted(int dfd, const char *name)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISREG(st.st_mode) || qfile_mode_committed(st.st_mode))
		return 0;
	if (unlinkat(dfd, name, 0) < 0)
		return errno == ENOENT ? 0 : -1;
	log_info("qid=%s removed uncommitted queue file", name);
	return 1;
}

int queue_purge_incoming(const char *queue_dir)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/incoming", queue_dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	return purge_dir(dfd, purge_uncommitted);
}

static int is_move_dir(const char *name)
{
	return strcmp(name, "active") == 0 || strcmp(name, "deferred") == 0 ||
	    strcmp(name, "corrupt") == 0;
}

int queue_move(const char *queue_dir, const char *qid, const char *from, const char *to)
{
	char src[PATH_MAX], dst[PATH_MAX], dir[PATH_MAX];

	if (!qid_valid(qid) || !(is_move_dir(from) || strcmp(from, "incoming") == 0) ||
	    !is_move_dir(to)) {
		errno = EINVAL;
		return -1;
	}
	if (snprintf(src, sizeof(src), "%s/%s/%s", queue_dir, from, qid) >= (int)sizeof(src) ||
	    snprintf(dst, sizeof(dst), "%s/%s/%s", queue_dir, to, qid) >= (int)sizeof(dst) ||
	    snprintf(dir, sizeof(dir), "%s/%s", queue_dir, to) >= (int)sizeof(dir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) < 0) {
		if (errno != EINVAL || rename(src, dst) < 0)
			return -1;
	}
	return fsync_dir(dir);
}

static void note_name(struct queue_removals *r, const char *qid)
{
	if (r->nnames == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->names = xreallocarray(r->names, r->cap, sizeof(*r->names));
	}
	snprintf(r->names[r->nnames++], QID_MAX, "%s", qid);
}

int queue_remove_noted(struct queue_removals *r, int dirfd, const char *qid)
{
	if (r->finished_fd < 0) {
		if (unlinkat(dirfd, qid, 0) < 0)
			return -1;
	} else {
		if (!qid_valid(qid)) {
			errno = EINVAL;
			return -1;
		}
		if (renameat(dirfd, qid, r->finished_fd, qid) == 0) {
			note_name(r, qid);
		} else {
			/* gone, or no write access: unlinking fails the same
			 * way; finished/ full (no space for its directory to
			 * grow) or elsewhere: unlink in place */
			if (errno == ENOENT || unlinkat(dirfd, qid, 0) < 0)
				return -1;
		}
	}
	for (int i = 0; i < r->ndirs; i++)
		if (r->dirfd[i] == dirfd)
			return 0;
	if (r->ndirs == QUEUE_REMOVAL_DIRS) {
		/* more directories than noted: this one's removal is made
		 * durable at once */
		if (fsync(dirfd) < 0)
			log_warn("qid=%s: cannot make the removal durable: %s", qid, strerror(errno));
		return 0;
	}
	r->dirfd[r->ndirs++] = dirfd;
	return 0;
}

int queue_removals_sync(struct queue_removals *r)
{
	int failed = 0;

	for (int i = 0; i < r->ndirs; i++) {
		if (fsync(r->dirfd[i]) < 0) {
			log_warn("cannot make removals from the queue durable: %s", strerror(errno));
			failed = 1;
		}
	}
	r->ndirs = 0;
	/* only now: a file unlinked before its removal was durable could
	 * come back from a crash as a name without its data */
	for (size_t i = 0; i < r->nnames; i++)
		if (unlinkat(r->finished_fd, r->names[i], 0) < 0 && errno != ENOENT)
			log_warn("cannot remove finished/%s: %s (removed at the next start)",
			    r->names[i], strerror(errno));
	r->nnames = 0;
	return failed ? -1 : 0;
}

void queue_removals_take(struct queue_removals *to, struct queue_removals *from)
{
	*to = *from;
	from->ndirs = 0;
	from->names = NULL;
	from->nnames = 0;
	from->cap = 0;
}

void queue_removals_free(struct queue_removals *r)
{
	free(r->names);
	r->names = NULL;
	r->nnames = 0;
	r->cap = 0;
}

/* Remove one entry of finished/: anything there is done with.  A failure
 * is logged and the others are still removed. */
static int purge_finished(int dfd, const char *name)
{
	if (unlinkat(dfd, name, 0) == 0)
		return 1;
	if (errno != ENOENT)
		log_warn("cannot remove finished/%s: %s", name, strerror(errno));
	return 0;
}

int queue_purge_finished(int finished_fd)
{
	int fd = dup(finished_fd);
	if (fd < 0)
		return -1;
	return purge_dir(fd, purge_finished);
}
