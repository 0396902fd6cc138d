/*
 * maildir.c - delivery into a maildir (or a maildir++ folder such as
 * ~/Maildir/.Junk/), created on demand.
 *
 * The message is written under a unique name in tmp/, fsynced and closed
 * (checked), linked into new/ (renamed where hard links are not
 * supported), removed from tmp/, and new/ is fsynced.  Names follow the
 * usual form SECONDS.M<usec>P<pid>Q<counter>.<host>,S=<size>, with '/' and
 * ':' in the host name written as \057 and \072 as Courier and Dovecot do.
 * On any failure the tmp/ file is removed and nothing appears in new/.
 * While a worker's batch is open (maildir_batch.c) the file is only
 * written here: the fsyncs, the link and the fsync of new/ are the
 * batch's commit.
 */
#include "deliver/deliver.h"
#include "deliver/msgcopy.h"
#include "deliver/path.h"
#include "deliver/maildir_private.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAILDIR_NAME_MAX 512
#define MAILDIR_CREATE_TRIES 5


static const char *maildir_hostname(void)
{
	static char host[HOST_NAME_MAX * 4 + 1];
	char raw[HOST_NAME_MAX + 1];
	size_t len = 0;

	if (host[0] != '\0')
		return host;
	if (gethostname(raw, sizeof(raw)) < 0 || raw[0] == '\0')
		snprintf(raw, sizeof(raw), "localhost");
	raw[HOST_NAME_MAX] = '\0';
	for (const char *p = raw; *p; p++) {
		if (*p == '/' || *p == ':') {
			memcpy(host + len, *p == '/' ? "\\057" : "\\072", 4);
			len += 4;
		} else {
			host[len++] = *p;
		}
	}
	host[len] = '\0';
	return host;
}

static void maildir_unique_name(char *out, size_t outlen, uint64_t size)
{
	static unsigned long counter;
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		panic("clock_gettime(CLOCK_REALTIME): %s", strerror(errno));
	snprintf(out, outlen, "%lld.M%ldP%ldQ%lu.%s,S=%llu", (long long)ts.tv_sec,
	    ts.tv_nsec / 1000, (long)getpid(), ++counter, maildir_hostname(),
	    (unsigned long long)size);
}

static void maildir_close(struct maildir *md)
{
	int *fds[] = { &md->dirfd, &md->tmpfd, &md->newfd };
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

/* A maildir++ folder (last component ".Name") is marked by an empty
 * "maildirfolder" file. */
static int maildir_mark_folder(struct maildir *md, struct delivery_result *r)
{
	const char *base = strrchr(md->path, '/');
	base = base ? base + 1 : md->path;
	if (base[0] != '.' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return 0;
	int fd = openat(md->dirfd, "maildirfolder",
	    O_WRONLY | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0) {
		deliver_errno_result(r, errno, "create maildirfolder in", md->path);
		return -1;
	}
	close(fd);
	return 0;
}

static int maildir_open(struct maildir *md, const char *path, const char *home,
    struct delivery_result *r)
{
	char shown[PATH_MAX + 8];
	size_t len = strlen(path);

	md->dirfd = md->tmpfd = md->newfd = -1;
	while (len > 1 && path[len - 1] == '/')
		len--;
	if (len >= sizeof(md->path)) {
		deliver_errno_result(r, ENAMETOOLONG, "maildir", path);
		return -1;
	}
	memcpy(md->path, path, len);
	md->path[len] = '\0';
	md->dirfd = deliver_open_dir(md->path, home, 1, r);
	if (md->dirfd < 0)
		return -1;
	static const char *const subdirs[] = { "tmp", "new", "cur" };
	for (int i = 0; i < 3; i++) {
		snprintf(shown, sizeof(shown), "%s/%s", md->path, subdirs[i]);
		int fd = deliver_open_subdir(md->dirfd, subdirs[i], shown, 1, r);
		if (fd < 0)
			return -1;
		if (i == 0)
			md->tmpfd = fd;
		else if (i == 1)
			md->newfd = fd;
		else
			close(fd);
	}
	return maildir_mark_folder(md, r);
}

/* Create tmp/NAME with a fresh unique name. */
static int maildir_create_tmp(struct maildir *md, uint64_t size, char *name, size_t namelen,
    struct delivery_result *r)
{
	for (int i = 0; i < MAILDIR_CREATE_TRIES; i++) {
		maildir_unique_name(name, namelen, size);
		int fd = openat(md->tmpfd, name,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			break;
	}
	deliver_errno_result(r, errno, "create file in", md->path);
	return -1;
}

/* Copy the message into the file (fd is closed on failure only). */
static int maildir_copy(const struct delivery_msg *m, struct maildir *md, int fd,
    struct delivery_result *r)
{
	enum msgcopy_side side;

	if (msgcopy_plain(m, fd, &side) < 0) {
		msgcopy_fail_result(r, side, errno, md->path);
		close(fd);
		return -1;
	}
	return 0;
}

/* Write, fsync and close the message file (fd is always closed). */
static int maildir_write(const struct delivery_msg *m, struct maildir *md, int fd,
    struct delivery_result *r)
{
	if (maildir_copy(m, md, fd, r) < 0)
		return -1;
	if (fsync(fd) < 0) {
		deliver_errno_result(r, errno, "fsync", md->path);
		close(fd);
		return -1;
	}
	if (close(fd) < 0 && errno != EINTR) {
		deliver_errno_result(r, errno, "close", md->path);
		return -1;
	}
	return 0;
}

/* Move tmp/NAME to new/NAME: link, or rename where links are refused. */
int maildir_move_to_new(struct maildir *md, const char *name, struct delivery_result *r)
{
	if (linkat(md->tmpfd, name, md->newfd, name, 0) == 0) {
		if (unlinkat(md->tmpfd, name, 0) < 0)
			log_warn("maildir %s: cannot remove tmp/%s: %s", md->path, name, strerror(errno));
		return 0;
	}
	if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS) {
		deliver_errno_result(r, errno, "link into new/ of", md->path);
		return -1;
	}
	int rc = renameat2(md->tmpfd, name, md->newfd, name, RENAME_NOREPLACE);
	if (rc < 0 && errno == EINVAL)
		rc = renameat(md->tmpfd, name, md->newfd, name);
	if (rc < 0) {
		deliver_errno_result(r, errno, "rename into new/ of", md->path);
		return -1;
	}
	return 0;
}

static void maildir_deliver_file(const struct delivery_msg *m, struct maildir *md,
    struct delivery_result *r)
{
	char name[MAILDIR_NAME_MAX];
	struct buf prefix = BUF_INIT;

	msgcopy_prefix(m, &prefix);
	uint64_t size = prefix.len + m->msg_size;
	buf_free(&prefix);
	int fd = maildir_create_tmp(md, size, name, sizeof(name), r);
	if (fd < 0)
		return;
	/* in a batch only the copy is made here: the commit does the rest */
	int batched = maildir_batch_is_open();
	if (batched ? maildir_copy(m, md, fd, r) < 0 :
	    maildir_write(m, md, fd, r) < 0 || maildir_move_to_new(md, name, r) < 0) {
		if (unlinkat(md->tmpfd, name, 0) < 0 && errno != ENOENT)
			log_warn("maildir %s: cannot remove tmp/%s: %s", md->path, name, strerror(errno));
		return;
	}
	if (batched) {
		maildir_batch_add(md, fd, name);
		deliver_result_set(r, DELIVERY_OK, "2.0.0", "delivered to maildir %s/new/%s",
		    md->path, name);
		return;
	}
	if (fsync(md->newfd) < 0) {
		/* not known to be durable: take it back so a retry does not
		 * leave a second copy */
		deliver_errno_result(r, errno, "fsync new/ of", md->path);
		if (unlinkat(md->newfd, name, 0) < 0)
			log_warn("maildir %s: cannot remove new/%s: %s", md->path, name, strerror(errno));
		return;
	}
	deliver_result_set(r, DELIVERY_OK, "2.0.0", "delivered to maildir %s/new/%s", md->path, name);
}

void deliver_maildir(const struct delivery_msg *m, const char *path,
    struct delivery_result *r)
{
	struct maildir md;

	if (maildir_open(&md, path, m->home, r) == 0)
		maildir_deliver_file(m, &md, r);
	maildir_close(&md);
}
