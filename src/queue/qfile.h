/*
 * qfile.h - the queue file: one file per message.
 *
 * A file is a sequence of typed records, each `type (1 byte) | length (u32,
 * big-endian) | payload`:
 *
 *   'V' "MPQ1"            format version, always first
 *   'I' queue id
 *   'T' arrival time, "seconds.microseconds"
 *   'C' client: "helo\0address\0protocol"
 *   'S' envelope sender ("" for <>)
 *   'R' recipient address (one record each; index = order)
 *   'B' body type: "7BIT" or "8BITMIME"
 *   'X' "outbound" (optional): the recipients are remote, the message goes
 *       to the relay (forwards and bounces the qmgr made)
 *   'M' the message, dot-unstuffed, with LF line ends (CRLF converted by
 *       the receiver), Received: header first; its length is
 *       written when DATA ends
 *   'E' end of the committed part (empty)
 *   then, appended by the qmgr and fsynced, per-recipient state records:
 *   'D' "index status detail"  done: status is sent, bounced, expired or
 *       refused (the receiver may write these before the commit)
 *   'F' "index unixtime detail" a temporary failure (one per attempt)
 *   'P' "index version N,M,..." part done: instructions N, M (numbers in
 *       the recipient's rules entry) of a recipient that was deferred
 *       already delivered, and are not run again on a retry; written
 *       before the 'F' of that attempt.  version (16 hex digits,
 *       qfile_rules_version) names the rules entry the numbers refer to:
 *       records of one version add up, one of another replaces the list
 *   and message state records (the last of a type counts):
 *   'W' "unixtime"      a delay warning (DSN, Action: delayed) to the sender
 *       was queued at that time; none is sent again (a crash between
 *       queueing it and this record may send a second one)
 *   'Z' "unixtime"      finished at that time: every recipient is done and
 *       the bounce, if one was due, is queued; nothing is delivered or
 *       bounced again, the file only waits to be removed (written when
 *       the removal failed, e.g. a read-only directory)
 *
 * A committed file has the owner-execute bit set (QFILE_MODE_COMMITTED), set
 * before the fsync that makes it durable.  A file without the mark is still
 * being written, or was abandoned by a crash: it was never acknowledged and
 * is removed whenever the master (re)starts the receiver.  A torn record at
 * the end (crash while appending) is ignored.
 *
 * Layout of queue_dir: incoming/ (being written, or committed and not yet
 * taken by the qmgr), active/ (taken by the qmgr), deferred/ (waiting for a
 * retry; a file the qmgr put back to disk for lack of room has its mtime
 * set to when it is due, 0 after a flush), corrupt/ (unparseable, kept
 * for a person).
 */
#ifndef MP_QFILE_H
#define MP_QFILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define QID_MAX 32

/* Limits enforced by the writer and the reader. */
#define QFILE_MAX_RCPTS 100000          /* 'R' records per file */
#define QFILE_MAX_FIELD 65536           /* payload of an envelope record */
#define QFILE_MAX_DETAIL 1024           /* detail text of a state record */
/* Bytes reserved past a committed file's end for its state records. */
#define QFILE_STATE_RESERVE 4096

/* RCPT_REFUSED: refused at DATA (LMTP, over the entry's maxsize): the
 * client was told, so nothing is delivered and nothing bounced. */
enum rcpt_state { RCPT_PENDING = 0, RCPT_SENT, RCPT_BOUNCED, RCPT_EXPIRED, RCPT_REFUSED };

/* Modes of a queue file while it is written and once committed. */
#define QFILE_MODE_WRITING 0600
#define QFILE_MODE_COMMITTED 0700
/* Whether a queue file's mode says it is committed. */
static inline int qfile_mode_committed(mode_t mode)
{
	return (mode & S_IXUSR) != 0;
}

/* Create queue_dir and its subdirectories (mode 0700), chown them to
 * owner:group when running as root (owner (uid_t)-1: leave).  Refuses a
 * queue_dir that is a symlink or not a directory. */
int queue_dirs_create(const char *queue_dir, uid_t owner, gid_t group);
/* Remove the uncommitted files (no committed mark) in incoming/; call it
 * only while no receiver runs (the master: at start-up and before it
 * restarts a receiver).  Committed files are left for the qmgr.  Returns
 * the number removed or -1 with errno. */
int queue_purge_incoming(const char *queue_dir);
/* Rename queue_dir/from/qid to queue_dir/to/qid (from: "incoming", "active",
 * "deferred" or "corrupt"; to: any of these but "incoming"; an existing target is not replaced) and fsync
 * the destination directory.  -1 with errno on failure. */
int queue_move(const char *queue_dir, const char *qid, const char *from, const char *to);
/* Finished files leave in groups.  queue_remove_noted takes the finished
 * file qid out of the subdirectory open as dirfd at once (-1 with errno
 * when it could not) and notes the directory: it renames the file into
 * finished/ (r->finished_fd), or unlinks it when there is none or the
 * rename cannot be made (e.g. no space for finished/ to grow).  A rename
 * frees nothing, so it never waits for the disk: freeing a file's blocks
 * can (a file system mounted with `discard` sends the device a discard and
 * waits for it).  queue_removals_sync fsyncs each directory noted since the
 * last call, once, so that every removal of the group is durable (-1 when
 * an fsync failed; logged, the group is over either way), then unlinks the
 * group's files from finished/.  Until the fsync a crash may bring the
 * files back; what a crash leaves in finished/ is finished, and
 * queue_purge_finished removes it.  Start from QUEUE_REMOVALS_INIT, set
 * finished_fd, hand a group to another thread with queue_removals_take,
 * and free it with queue_removals_free. */
#define QUEUE_REMOVAL_DIRS 4
struct queue_removals {
	int dirfd[QUEUE_REMOVAL_DIRS];
	int ndirs;
	int finished_fd;                /* finished/, or -1: unlink in place */
	char (*names)[QID_MAX];         /* in finished/, to unlink after the fsyncs */
	size_t nnames, cap;
};
#define QUEUE_REMOVALS_INIT { { -1, -1, -1, -1 }, 0, -1, NULL, 0, 0 }
int queue_remove_noted(struct queue_removals *r, int dirfd, const char *qid);
int queue_removals_sync(struct queue_removals *r);
/* Move the group noted in from (left empty, its finished_fd kept) to to. */
void queue_removals_take(struct queue_removals *to, struct queue_removals *from);
void queue_removals_free(struct queue_removals *r);
/* Unlink everything in finished/ (open as fd): files a crash left there
 * before their group was over.  The number removed, or -1 with errno. */
int queue_purge_finished(int finished_fd);

/* ---- writing (receiver) ---- */

struct qwriter;
struct fsync_group;

/* qwriter_open flags */
#define QW_8BITMIME 0x1         /* the body is 8BITMIME (else 7BIT) */
#define QW_OUTBOUND 0x2         /* for the relay (see 'X') */

/* Create incoming/<qid> (O_EXCL) and write the envelope records.
 * Returns NULL with errno set on failure. */
struct qwriter *qwriter_open(const char *queue_dir, const char *helo,
    const char *client_addr, const char *protocol, const char *sender,
    const char *const *rcpts, size_t nrcpts, int flags);
/* As qwriter_open, with the queue id qid instead of a fresh one: NULL with
 * EEXIST when incoming/<qid> exists, EINVAL for a bad qid. */
struct qwriter *qwriter_open_id(const char *queue_dir, const char *qid, const char *helo,
    const char *client_addr, const char *protocol, const char *sender,
    const char *const *rcpts, size_t nrcpts, int flags);
/* As qwriter_open, into the spare incoming/<qid> open as fd (qspares.h),
 * made with the ticket of g: the commit waits for an fsync of incoming/
 * that started after it (most often ended before the commit began).  The
 * spare is used, or removed on failure. */
struct qwriter *qwriter_open_spare(const char *queue_dir, const char *qid, int fd,
    struct fsync_group *g, uint64_t ticket, const char *helo, const char *client_addr,
    const char *protocol, const char *sender, const char *const *rcpts, size_t nrcpts,
    int flags);
const char *qwriter_qid(const struct qwriter *w);
/* Append message bytes (already dot-unstuffed, line ends converted to
 * LF; the caller converted CRLF).  -1 with errno on failure; usable only for
 * qwriter_abort(). */
int qwriter_write(struct qwriter *w, const void *p, size_t len);
/* Bytes of message written so far. */
uint64_t qwriter_size(const struct qwriter *w);
/* Record recipient index as done already (bounced or refused, e.g. over
 * its size limit); written after 'E' by the commit.  detail: printable, at
 * most QFILE_MAX_DETAIL bytes.  -1 (EINVAL) for a bad state or index. */
int qwriter_mark_done(struct qwriter *w, size_t index, enum rcpt_state state,
    const char *detail);
/* Write the length and 'E', mark the file committed, fsync it and
 * incoming/.  Only after this returns 0 may the message be acknowledged.
 * The writer is freed either way; on failure the file is removed.  Safe to
 * call from another thread than the one that wrote. */
int qwriter_commit(struct qwriter *w);
/* Share incoming/'s fsync at commit with the other writers of g (this
 * queue's incoming/): call right after qwriter_open(), and the commit waits
 * for an fsync of g that started after this call instead of making its
 * own. */
void qwriter_share_dir_sync(struct qwriter *w, struct fsync_group *g);
/* Remove the file and free the writer. */
void qwriter_abort(struct qwriter *w);

/* ---- reading (qmgr, worker) ---- */


struct qrcpt {
	char *address;
	enum rcpt_state state;
	int attempts;           /* number of 'F' records */
	int64_t last_attempt;   /* unix time of the last 'F', 0 if none */
	char *last_error;       /* text of the last 'F' or 'D', or NULL */
	char *done;             /* 'P': instructions already delivered, "N,M"
	                         * (ascending, no repeats), or NULL */
	uint64_t done_version;  /* of the rules entry those numbers refer to */
};

struct qfile {
	char qid[QID_MAX];
	int64_t arrival_sec;
	int64_t arrival_usec;
	char *helo;
	char *client_addr;
	char *protocol;
	char *sender;
	int eightbit;
	int outbound;           /* 'X': recipients go to the relay */
	int64_t warned;         /* 'W': unix time its delay warning was queued, 0 if none */
	int64_t finished;       /* 'Z': unix time it was finished, 0 if not */
	size_t nrcpt;
	struct qrcpt *rcpt;
	off_t msg_offset;       /* where the message starts in the file */
	uint64_t msg_size;
	off_t end_offset;       /* end of the last complete record */
};

/* Parse a queue file from an open descriptor (pread only; the offset is
 * not used).  0 on success; -1 with errno EBADMSG when malformed or
 * uncommitted, other errno on I/O failure. */
int qfile_read(int fd, struct qfile *q);
void qfile_free(struct qfile *q);

/* Append a state record and fdatasync.  fd must be open for writing
 * (O_APPEND).  -1 with errno on failure. */
int qfile_append_done(int fd, size_t index, enum rcpt_state state, const char *detail);
int qfile_append_deferred(int fd, size_t index, int64_t when, const char *detail);
/* Record that instructions list ("N,M,...", at most QFILE_MAX_DETAIL
 * bytes) of the rules entry of that version delivered for recipient index
 * ('P').  -1 (EINVAL) for a bad list. */
int qfile_append_part_done(int fd, size_t index, uint64_t version, const char *list);
/* The version of a compiled rules entry that 'P' lists refer to: a hash
 * of its bytes (FNV-1a), so that a list is not applied to an entry
 * changed since. */
uint64_t qfile_rules_version(const void *blob, size_t len);
/* Apply one attempt's list to a recipient: added to its list when the
 * version is the same, in its place when not.  As qfile_done_union. */
int qfile_done_merge(struct qrcpt *r, uint64_t version, const char *list);
/* Add the instruction numbers of list ("N,M,...") to *done (NULL or such a
 * list, kept ascending without repeats; replaced, the old one freed).
 * Returns 1 when *done changed, 0 when not, -1 (EINVAL, *done untouched)
 * when list is malformed or empty. */
int qfile_done_union(char **done, const char *list);
/* Whether n is in a list of instruction numbers "N,M,..." (as in 'P', and
 * in the run strings of the qmgr's jobs); reads up to the first bad
 * character. */
int qfile_list_has(const char *list, unsigned long n);
/* Record that the delay warning was queued at when (> 0; else EINVAL). */
int qfile_append_warned(int fd, int64_t when);
/* Record that the message was finished at when ('Z'; > 0, else EINVAL):
 * all recipients done, its bounce queued. */
int qfile_append_finished(int fd, int64_t when);
/* Record the state in q of recipients idx[0..n-1] (a done one: 'D'; a
 * pending one: its 'P' if it has a done list, then 'F' with last_attempt
 * and last_error) and fdatasync once.  All or nothing: on failure what was
 * written is cut off again, and -1 with errno. */
int qfile_append_states(int fd, const struct qfile *q, const size_t *idx, size_t n);
/* Cut a torn record off the end (file longer than q->end_offset) so that
 * new state records can be appended (a record appended after a torn one
 * would be unreadable); call it after qfile_read() and before the first
 * append, with fd open for writing.  0 when nothing was to do or the file
 * was repaired and fdatasynced; -1 with errno. */
int qfile_repair_tail(int fd, const struct qfile *q);

/* Generate a new queue id (time-based, unique within this host). */
void qid_generate(char out[QID_MAX]);
/* A queue id is [0-9A-Z]+; anything else is refused (used in paths). */
int qid_valid(const char *qid);

const char *rcpt_state_name(enum rcpt_state s);

#endif
