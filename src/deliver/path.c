/*
 * path.c - destination paths: "~" expansion, and the safe walk down a
 * destination directory used by maildir and mbox delivery.
 *
 * Expansion is lexical: "~" and "~/x" become the home, absolute paths stay,
 * and anything else ("~user", relative paths, any ".." component) is
 * refused.  The walk then opens the directory one component at a time with
 * openat, so that a symlink owned by another user (who could point our
 * delivery anywhere the user can write) is seen and refused before it is
 * followed, and so that directories are only ever created by mkdirat below
 * a directory we hold open, with the rights of the worker's account, never
 * the home itself nor a directory above it.  Directories on the way are opened with O_PATH,
 * so they need search permission only (a home under a 0711 /home works);
 * deliver_open_subdir() ends with a descriptor open for reading, so that
 * the maildir's new/ can be fsynced.
 */
#include "deliver/path.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WALK_MAX_SYMLINKS 40

/* Copy the next component of *pp (slashes skipped) into name; 1 if one was
 * found, 0 at the end, -1 if it is longer than NAME_MAX. */
static int next_component(const char **pp, char name[NAME_MAX + 1])
{
	const char *p = *pp;
	while (*p == '/')
		p++;
	if (*p == '\0')
		return 0;
	size_t n = strcspn(p, "/");
	*pp = p + n;
	if (n > NAME_MAX)
		return -1;
	memcpy(name, p, n);
	name[n] = '\0';
	return 1;
}

/* Append the components of path to out lexically: no "." nor empty ones.
 * -1 for a ".." component (reason "path contains ..") or on overflow. */
static int append_normalised(char *out, size_t outlen, size_t *len, const char *path,
    const char **reason)
{
	char name[NAME_MAX + 1];
	int got;

	while ((got = next_component(&path, name)) != 0) {
		if (got < 0) {
			*reason = "path component too long";
			return -1;
		}
		if (strcmp(name, ".") == 0)
			continue;
		if (strcmp(name, "..") == 0) {
			*reason = "path contains ..";
			return -1;
		}
		int n = snprintf(out + *len, outlen - *len, "/%s", name);
		if (n < 0 || (size_t)n >= outlen - *len) {
			*reason = "path too long";
			return -1;
		}
		*len += (size_t)n;
	}
	return 0;
}

int deliver_expand_path(const char *tmpl, const char *home, char *out, size_t outlen,
    char *err, size_t errlen)
{
	const char *reason = NULL, *rest = tmpl;
	size_t len = 0;

	if (tmpl == NULL || tmpl[0] == '\0' || outlen < 2)
		reason = "empty path";
	else if (tmpl[0] == '~' && tmpl[1] != '\0' && tmpl[1] != '/')
		reason = "~user paths are not supported";
	else if (tmpl[0] == '~' && (home == NULL || home[0] != '/'))
		reason = "no absolute home directory to expand ~";
	else if (tmpl[0] != '~' && tmpl[0] != '/')
		reason = "relative paths are not allowed";
	if (reason != NULL)
		goto refuse;
	out[0] = '\0';
	if (tmpl[0] == '~') {
		if (append_normalised(out, outlen, &len, home, &reason) < 0)
			goto refuse;
		rest = tmpl + 1;
	}
	if (append_normalised(out, outlen, &len, rest, &reason) < 0)
		goto refuse;
	/* keep a trailing slash (a directory) and make "/" itself "/" */
	size_t tl = strlen(tmpl);
	if (len == 0 || (tmpl[tl - 1] == '/' && tl > 1)) {
		if (len + 2 > outlen) {
			reason = "path too long";
			goto refuse;
		}
		out[len++] = '/';
		out[len] = '\0';
	}
	return 0;
refuse:
	snprintf(err, errlen, "%s", reason);
	if (outlen > 0)
		out[0] = '\0';
	return -1;
}

/* The home, which (with the directories above it) is never created,
 * normalised ("" for "/"), in buf; *limit is NULL when no home is known
 * (no limit).  -1 for a home that is not an absolute path without "..":
 * create nothing. */
static int creation_home(const char *home, char *buf, size_t buflen, const char **limit)
{
	static uid_t cached_uid = (uid_t)-1;
	static char cached_home[PATH_MAX];
	const char *reason;
	size_t len = 0;

	*limit = NULL;
	if (home == NULL) {
		if (cached_uid != geteuid()) {
			struct passwd *pw = getpwuid(geteuid());
			if (pw == NULL || pw->pw_dir == NULL)
				return 0;
			snprintf(cached_home, sizeof(cached_home), "%s", pw->pw_dir);
			cached_uid = geteuid();
		}
		home = cached_home;
	}
	buf[0] = '\0';
	if (home[0] != '/' || append_normalised(buf, buflen, &len, home, &reason) < 0)
		return -1;
	*limit = buf;
	return 0;
}

static int has_dotdot(const char *path)
{
	char name[NAME_MAX + 1];
	int got;
	while ((got = next_component(&path, name)) > 0)
		if (strcmp(name, "..") == 0)
			return 1;
	return 0;
}

/* Whether a missing directory prefix may be made: anything but the home
 * itself and the directories above it.  A missing home is an unmounted
 * (automounted) file system far more often than a home to make, and one
 * made on the wrong disk would hide the mail from its owner; anywhere else
 * (~/Maildir/, /srv/vmail/DOMAIN/USER/Maildir/) the account's own rights
 * decide, as with Postfix's local and virtual, Dovecot and procmail. */
static int may_create(const char *prefix, const char *home)
{
	if (home == NULL)
		return 1;
	size_t pl = strlen(prefix);
	return !(pl <= strlen(home) && memcmp(home, prefix, pl) == 0 &&
	    (home[pl] == '/' || home[pl] == '\0'));
}

static int walk_fail(struct delivery_result *r, int err, const char *what, const char *shown)
{
	deliver_errno_result(r, err, what, shown);
	return -1;
}

static int walk_step(int dirfd, const char *name, const char *shown, int create,
    int *hops, struct delivery_result *r);

/* Walk the components of a symlink's target from fd (which is consumed).
 * ".." is resolved physically here: the link's owner is trusted. */
static int walk_target(int fd, const char *target, const char *shown, int *hops,
    struct delivery_result *r)
{
	char name[NAME_MAX + 1];
	int got;

	while (fd >= 0 && (got = next_component(&target, name)) != 0) {
		int nfd;
		if (got < 0)
			nfd = walk_fail(r, ENAMETOOLONG, "resolve", shown);
		else if (strcmp(name, ".") == 0)
			continue;
		else if (strcmp(name, "..") == 0) {
			nfd = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (nfd < 0)
				walk_fail(r, errno, "resolve", shown);
		} else {
			nfd = walk_step(fd, name, shown, 0, hops, r);
		}
		close(fd);
		fd = nfd;
	}
	return fd;
}

static int walk_symlink(int dirfd, const char *name, const struct stat *st, const char *shown,
    int *hops, struct delivery_result *r)
{
	if (st->st_uid != geteuid() && st->st_uid != 0) {
		deliver_result_set(r, DELIVERY_PERMFAIL, "5.2.0",
		    "unsafe path %s: symlink owned by uid %lu", shown, (unsigned long)st->st_uid);
		return -1;
	}
	if (++*hops > WALK_MAX_SYMLINKS)
		return walk_fail(r, ELOOP, "resolve", shown);
	char *target = xmalloc(PATH_MAX);
	ssize_t n = readlinkat(dirfd, name, target, PATH_MAX);
	int fd = -1;
	if (n < 0 || n >= PATH_MAX) {
		walk_fail(r, n < 0 ? errno : ENAMETOOLONG, "readlink", shown);
	} else {
		target[n] = '\0';
		if (target[0] == '/')
			fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		else
			fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			walk_fail(r, errno, "resolve", shown);
		else
			fd = walk_target(fd, target, shown, hops, r);
	}
	free(target);
	return fd;
}

static int walk_step(int dirfd, const char *name, const char *shown, int create,
    int *hops, struct delivery_result *r)
{
	for (int tries = 0; tries < 3; tries++) {
		struct stat st;
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT || !create)
				return walk_fail(r, errno, "stat", shown);
			if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
				return walk_fail(r, errno, "mkdir", shown);
			log_debug("created directory %s", shown);
			continue;
		}
		if (S_ISLNK(st.st_mode))
			return walk_symlink(dirfd, name, &st, shown, hops, r);
		if (!S_ISDIR(st.st_mode))
			return walk_fail(r, ENOTDIR, "open", shown);
		int fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno != ELOOP && errno != ENOENT)
			return walk_fail(r, errno, "open", shown);
		/* replaced since we looked: look again */
	}
	return walk_fail(r, EAGAIN, "open", shown);
}

/* The walk's O_PATH descriptor (consumed) as one open for reading. */
static int walk_end(int fd, const char *shown, struct delivery_result *r)
{
	if (fd < 0)
		return -1;
	int rfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int saved = errno;
	close(fd);
	if (rfd < 0)
		return walk_fail(r, saved, "open", shown);
	return rfd;
}

int deliver_open_subdir(int dirfd, const char *name, const char *shown, int create,
    struct delivery_result *r)
{
	int hops = 0;
	return walk_end(walk_step(dirfd, name, shown, create, &hops, r), shown, r);
}

int deliver_open_dir(const char *dir, const char *home, int create,
    struct delivery_result *r)
{
	char homebuf[PATH_MAX], prefix[PATH_MAX] = "", name[NAME_MAX + 1];
	const char *whole = dir;
	size_t len = 0;
	int got, hops = 0;

	if (dir[0] != '/') {
		deliver_result_set(r, DELIVERY_PERMFAIL, "5.2.0", "path %s is not absolute", dir);
		return -1;
	}
	if (has_dotdot(dir)) {
		deliver_result_set(r, DELIVERY_PERMFAIL, "5.2.0", "unsafe path %s: path contains ..", dir);
		return -1;
	}
	const char *limit;
	if (creation_home(home, homebuf, sizeof(homebuf), &limit) < 0)
		create = 0;
	int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return walk_fail(r, errno, "open", "/");
	while (fd >= 0 && (got = next_component(&dir, name)) != 0) {
		int nfd;
		if (got < 0) {
			nfd = walk_fail(r, ENAMETOOLONG, "open", whole);
		} else if (strcmp(name, ".") == 0) {
			continue;
		} else {
			int n = snprintf(prefix + len, sizeof(prefix) - len, "/%s", name);
			if (n < 0 || (size_t)n >= sizeof(prefix) - len) {
				nfd = walk_fail(r, ENAMETOOLONG, "open", whole);
			} else {
				len += (size_t)n;
				nfd = walk_step(fd, name, prefix, create && may_create(prefix, limit), &hops, r);
			}
		}
		close(fd);
		fd = nfd;
	}
	return fd;
}
