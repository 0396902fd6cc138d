/*
 * qfile_write.c - the queue writer: how the receiver puts a message into
 * the queue.
 *
 * incoming/<qid> is created with O_EXCL; the envelope and the message go
 * through a 64 KiB user-space buffer, so a message that arrives a line at a
 * time costs few system calls (a 4 KB message is one write(2)).  The 'M'
 * record is written with a placeholder length, fixed at commit (in the
 * buffer when it is still there, else with pwrite(2)).  Commit: flush, 'E',
 * reserve QFILE_STATE_RESERVE bytes past the end (fallocate, size kept)
 * for the state records, set the owner-execute bit (the "committed" mark, as Postfix does), fsync,
 * close, fsync incoming/ (for a spare, qspares.c, the refill that made it
 * did, most often before the message came); only then is the message
 * accepted.  The file stays in incoming/ until the qmgr takes it.  Marking in place instead of
 * renaming means one journal commit per message instead of two: the file
 * fsync carries its directory entry, and the directory fsync that follows
 * finds nothing left to write.  Any failure removes the file and hands the
 * errno to the caller (ENOSPC -> 452 4.3.1).
 *
 * qwriter_commit() may run on any thread (the receiver commits on a small
 * thread pool so that concurrent sessions share journal commits and, with
 * qwriter_share_dir_sync(), the fsyncs of incoming/); a writer is used by
 * one thread at a time.
 *
 * The receiver must ignore SIGXFSZ so that a file size limit shows up as
 * EFBIG instead of killing the process.
 */
#include "queue/qfile.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/fsync_group.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#define QW_BUFSIZE (64 * 1024)
#define QW_OPEN_TRIES 16
#define QW_HDR 5                /* type byte + u32 length */

struct qwriter {
	int fd;
	int error;              /* errno of the first failure; 0 if none */
	char qid[QID_MAX];
	char queue_dir[PATH_MAX];
	char incoming_path[PATH_MAX];
	off_t mlen_off;         /* offset of the 'M' length field */
	off_t flushed;          /* bytes already written to the file */
	uint64_t msg_size;
	size_t nrcpts;
	struct buf done;        /* 'D' records to write after 'E' */
	struct fsync_group *dir_sync;   /* shares incoming/'s fsync, or NULL */
	uint64_t dir_ticket;
	size_t buflen;
	unsigned char buf[QW_BUFSIZE];
};


static int queue_path(char out[PATH_MAX], const char *queue_dir,
    const char *sub, const char *qid)
{
	if (snprintf(out, PATH_MAX, "%s/%s/%s", queue_dir, sub, qid) >= PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* writev(2) both pieces completely, retrying on EINTR and short writes. */
static int writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t r = writev(fd, iov, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		size_t done = (size_t)r;
		while (n > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return 0;
}

/* Buffer len bytes; when they do not fit, write buffer and bytes at once. */
static int qw_put(struct qwriter *w, const void *p, size_t len)
{
	if (len <= QW_BUFSIZE - w->buflen) {
		if (len > 0)
			memcpy(w->buf + w->buflen, p, len);
		w->buflen += len;
		return 0;
	}
	struct iovec iov[2] = {
		{ .iov_base = w->buf, .iov_len = w->buflen },
		{ .iov_base = (void *)p, .iov_len = len },
	};
	if (writev_all(w->fd, iov, 2) < 0)
		return -1;
	w->flushed += (off_t)(w->buflen + len);
	w->buflen = 0;
	return 0;
}

static int qw_flush(struct qwriter *w)
{
	struct iovec iov = { .iov_base = w->buf, .iov_len = w->buflen };
	if (w->buflen > 0 && writev_all(w->fd, &iov, 1) < 0)
		return -1;
	w->flushed += (off_t)w->buflen;
	w->buflen = 0;
	return 0;
}

static int qw_header(struct qwriter *w, char type, uint32_t len)
{
	unsigned char h[QW_HDR];
	h[0] = (unsigned char)type;
	put_be32(h + 1, len);
	return qw_put(w, h, sizeof(h));
}

static int qw_record(struct qwriter *w, char type, const char *s)
{
	size_t len = strlen(s);
	if (qw_header(w, type, (uint32_t)len) < 0)
		return -1;
	return qw_put(w, s, len);
}

static int qw_client(struct qwriter *w, const char *helo, const char *addr,
    const char *proto)
{
	size_t len = strlen(helo) + 1 + strlen(addr) + 1 + strlen(proto);
	if (qw_header(w, 'C', (uint32_t)len) < 0 ||
	    qw_put(w, helo, strlen(helo) + 1) < 0 ||
	    qw_put(w, addr, strlen(addr) + 1) < 0)
		return -1;
	return qw_put(w, proto, strlen(proto));
}

static int qw_envelope(struct qwriter *w, const char *helo, const char *addr,
    const char *proto, const char *sender, const char *const *rcpts,
    size_t nrcpts, int flags)
{
	struct timeval tv;
	char arrival[48];

	gettimeofday(&tv, NULL);
	snprintf(arrival, sizeof(arrival), "%lld.%06ld", (long long)tv.tv_sec,
	    (long)tv.tv_usec);
	if (qw_record(w, 'V', "MPQ1") < 0 || qw_record(w, 'I', w->qid) < 0 ||
	    qw_record(w, 'T', arrival) < 0 || qw_client(w, helo, addr, proto) < 0 ||
	    qw_record(w, 'S', sender) < 0)
		return -1;
	for (size_t i = 0; i < nrcpts; i++)
		if (qw_record(w, 'R', rcpts[i]) < 0)
			return -1;
	if (qw_record(w, 'B', (flags & QW_8BITMIME) ? "8BITMIME" : "7BIT") < 0)
		return -1;
	if ((flags & QW_OUTBOUND) && qw_record(w, 'X', "outbound") < 0)
		return -1;
	w->mlen_off = w->flushed + (off_t)w->buflen + 1;
	return qw_header(w, 'M', 0);
}

/* The envelope must be something qfile_read() accepts back. */
static int envelope_ok(const char *helo, const char *addr, const char *proto,
    const char *sender, const char *const *rcpts, size_t nrcpts)
{
	if (sender == NULL || strlen(sender) > QFILE_MAX_FIELD)
		return 0;
	if (strlen(helo) + strlen(addr) + strlen(proto) + 2 > QFILE_MAX_FIELD)
		return 0;
	if (nrcpts == 0 || nrcpts > QFILE_MAX_RCPTS)
		return 0;
	for (size_t i = 0; i < nrcpts; i++)
		if (rcpts[i] == NULL || rcpts[i][0] == '\0' ||
		    strlen(rcpts[i]) > QFILE_MAX_FIELD)
			return 0;
	return 1;
}

/* Create incoming/<qid> with a fresh qid, retrying on a collision, or
 * with the given one (EEXIST when taken). */
static int qw_create(struct qwriter *w, const char *qid)
{
	for (int tries = 0; tries < (qid ? 1 : QW_OPEN_TRIES); tries++) {
		if (qid != NULL)
			snprintf(w->qid, sizeof(w->qid), "%s", qid);
		else
			qid_generate(w->qid);
		if (queue_path(w->incoming_path, w->queue_dir, "incoming", w->qid) < 0)
			return -1;
		w->fd = open(w->incoming_path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC,
		    QFILE_MODE_WRITING);
		if (w->fd >= 0)
			return 0;
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

/* Write into the spare incoming/<qid>, open as fd. */
static int qw_use_spare(struct qwriter *w, const char *qid, int fd)
{
	snprintf(w->qid, sizeof(w->qid), "%s", qid);
	if (queue_path(w->incoming_path, w->queue_dir, "incoming", w->qid) < 0)
		return -1;
	w->fd = fd;
	return 0;
}

/* With spare_fd >= 0, write into that spare, named qid; it is used or
 * removed either way. */
static struct qwriter *qw_open(const char *queue_dir, const char *qid, int spare_fd,
    const char *helo, const char *client_addr, const char *protocol, const char *sender,
    const char *const *rcpts, size_t nrcpts, int flags)
{
	if (qid != NULL && !qid_valid(qid)) {
		errno = EINVAL;
		goto refused;
	}
	helo = helo ? helo : "";
	client_addr = client_addr ? client_addr : "";
	protocol = protocol ? protocol : "";
	if (!envelope_ok(helo, client_addr, protocol, sender, rcpts, nrcpts)) {
		errno = EINVAL;
		goto refused;
	}
	if (strlen(queue_dir) >= PATH_MAX) {
		errno = ENAMETOOLONG;
		goto refused;
	}
	struct qwriter *w = xmalloc(sizeof(*w));
	w->fd = -1;
	w->error = 0;
	w->flushed = 0;
	w->msg_size = 0;
	w->nrcpts = nrcpts;
	w->done = (struct buf)BUF_INIT;
	w->buflen = 0;
	w->dir_sync = NULL;
	w->dir_ticket = 0;
	strcpy(w->queue_dir, queue_dir);
	if ((spare_fd >= 0 ? qw_use_spare(w, qid, spare_fd) : qw_create(w, qid)) < 0) {
		int saved = errno;
		free(w);
		errno = saved;
		goto refused;
	}
	if (qw_envelope(w, helo, client_addr, protocol, sender, rcpts, nrcpts,
	    flags) < 0) {
		int saved = errno;
		qwriter_abort(w);
		errno = saved;
		return NULL;
	}
	return w;
refused:
	if (spare_fd >= 0) {
		int saved = errno;
		char path[PATH_MAX];
		close(spare_fd);
		if (queue_path(path, queue_dir, "incoming", qid) == 0 && unlink(path) < 0 &&
		    errno != ENOENT)
			log_warn("qid=%s: cannot remove %s: %s", qid, path, strerror(errno));
		errno = saved;
	}
	return NULL;
}

struct qwriter *qwriter_open(const char *queue_dir, const char *helo,
    const char *client_addr, const char *protocol, const char *sender,
    const char *const *rcpts, size_t nrcpts, int flags)
{
	return qw_open(queue_dir, NULL, -1, helo, client_addr, protocol, sender, rcpts, nrcpts,
	    flags);
}

struct qwriter *qwriter_open_id(const char *queue_dir, const char *qid, const char *helo,
    const char *client_addr, const char *protocol, const char *sender,
    const char *const *rcpts, size_t nrcpts, int flags)
{
	return qw_open(queue_dir, qid, -1, helo, client_addr, protocol, sender, rcpts, nrcpts,
	    flags);
}

struct qwriter *qwriter_open_spare(const char *queue_dir, const char *qid, int fd,
    struct fsync_group *g, uint64_t ticket, const char *helo, const char *client_addr,
    const char *protocol, const char *sender, const char *const *rcpts, size_t nrcpts,
    int flags)
{
	struct qwriter *w = qw_open(queue_dir, qid, fd, helo, client_addr, protocol, sender,
	    rcpts, nrcpts, flags);
	if (w != NULL) {
		w->dir_sync = g;
		w->dir_ticket = ticket;
	}
	return w;
}

const char *qwriter_qid(const struct qwriter *w)
{
	return w->qid;
}

uint64_t qwriter_size(const struct qwriter *w)
{
	return w->msg_size;
}

int qwriter_mark_done(struct qwriter *w, size_t index, enum rcpt_state state,
    const char *detail)
{
	char head[64];
	size_t dlen = strlen(detail);

	if (state == RCPT_PENDING || index >= w->nrcpts || dlen > QFILE_MAX_DETAIL) {
		errno = EINVAL;
		return -1;
	}
	for (size_t i = 0; i < dlen; i++)
		if ((unsigned char)detail[i] < 0x20 || detail[i] == 0x7f) {
			errno = EINVAL;
			return -1;
		}
	int hlen = snprintf(head, sizeof(head), "%zu %s ", index, rcpt_state_name(state));
	unsigned char h[QW_HDR];
	h[0] = 'D';
	put_be32(h + 1, (uint32_t)((size_t)hlen + dlen));
	buf_append(&w->done, h, sizeof(h));
	buf_append(&w->done, head, (size_t)hlen);
	buf_append(&w->done, detail, dlen);
	return 0;
}

int qwriter_write(struct qwriter *w, const void *p, size_t len)
{
	if (w->error != 0) {
		errno = w->error;
		return -1;
	}
	if (len > UINT32_MAX - w->msg_size) {
		w->error = EFBIG;
		errno = EFBIG;
		return -1;
	}
	if (qw_put(w, p, len) < 0) {
		w->error = errno;
		return -1;
	}
	w->msg_size += len;
	return 0;
}

/* Fill in the 'M' length, append 'E' and write everything out. */
static int qw_finish(struct qwriter *w)
{
	unsigned char len[4];

	put_be32(len, (uint32_t)w->msg_size);
	if (w->mlen_off >= w->flushed)
		memcpy(w->buf + (w->mlen_off - w->flushed), len, sizeof(len));
	else if (pwrite_all(w->fd, len, sizeof(len), w->mlen_off) < 0)
		return -1;
	if (qw_header(w, 'E', 0) < 0 || qw_put(w, w->done.data, w->done.len) < 0)
		return -1;
	return qw_flush(w);
}

/* Room past the end of the file for its state records, so that the
 * results of its deliveries can be recorded on a full disk (a file that
 * ends on a page boundary of a full tmpfs takes no byte more without it).
 * The range starts at the next block boundary: the rest of the last block
 * comes with the data, and a range that starts inside that block makes
 * ext4 allocate the block apart from the others, which costs one more
 * write at the fsync and one more discard at the removal (measured).
 * Not kept when the file system cannot (no fallocate, or already full). */
static void qw_reserve(struct qwriter *w)
{
	struct stat st;
	if (fstat(w->fd, &st) < 0)
		return;
	off_t start = st.st_size;
	blksize_t blk = st.st_blksize;
	if (blk > 0 && blk <= 65536 && (blk & (blk - 1)) == 0)
		start = (start + blk - 1) & ~((off_t)blk - 1);
	(void)fallocate(w->fd, FALLOC_FL_KEEP_SIZE, start, QFILE_STATE_RESERVE);
}

/* Reserve, mark, fsync, close (checked).  The file stays in incoming/. */
static int qw_publish(struct qwriter *w)
{
	qw_reserve(w);
	if (fchmod(w->fd, QFILE_MODE_COMMITTED) < 0 || fsync(w->fd) < 0)
		return -1;
	int fd = w->fd;
	w->fd = -1;
	/* after a successful fsync, EINTR from close loses nothing */
	if (close(fd) < 0 && errno != EINTR)
		return -1;
	return 0;
}

/* fsync incoming/ so that the file's name is durable too.  Opened per
 * commit: commits run on several threads, and an open is cheap next to
 * the fsync. */
static int qw_sync_dir(const struct qwriter *w)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/incoming", w->queue_dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return fsync_dir(path);
}

static void qw_free(struct qwriter *w)
{
	if (w->fd >= 0)
		close(w->fd);
	buf_free(&w->done);
	free(w);
}

void qwriter_share_dir_sync(struct qwriter *w, struct fsync_group *g)
{
	w->dir_sync = g;
	w->dir_ticket = fsync_group_ticket(g);
}

int qwriter_commit(struct qwriter *w)
{
	int saved;

	if (w->error != 0) {
		saved = w->error;
		goto fail;
	}
	if (qw_finish(w) < 0 || qw_publish(w) < 0 ||
	    (w->dir_sync != NULL ? fsync_group_sync(w->dir_sync, w->dir_ticket) :
	    qw_sync_dir(w)) < 0) {
		saved = errno;
		goto fail;
	}
	qw_free(w);
	return 0;
fail:
	/* not known to be durable: withdraw it, the client retries */
	qwriter_abort(w);
	errno = saved;
	return -1;
}

void qwriter_abort(struct qwriter *w)
{
	if (w == NULL)
		return;
	int saved = errno;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	if (unlink(w->incoming_path) < 0 && errno != ENOENT)
		log_warn("qid=%s cannot remove %s: %s", w->qid, w->incoming_path,
		    strerror(errno));
	qw_free(w);
	errno = saved;
}
