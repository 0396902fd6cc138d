/*
 * deliver.h - the delivery actions a worker performs for one recipient.
 *
 * Each action writes one copy of the message, prefixed with Return-Path and
 * Delivered-To, and reports a result with an enhanced status code.  Every
 * action runs in a worker that already has the recipient's uid/gid.
 */
#ifndef MP_DELIVER_H
#define MP_DELIVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum delivery_status { DELIVERY_OK = 0, DELIVERY_TEMPFAIL = 1, DELIVERY_PERMFAIL = 2 };

struct delivery_result {
	enum delivery_status status;
	char dsn[16];           /* enhanced status code, e.g. "4.3.0" */
	char text[512];         /* human-readable reason */
	unsigned action;        /* enum result_action (lib/msgtypes.h): the kind of
	                         * instruction this is the result of, 0 (none) unless
	                         * the worker's rules set it */
};

/* What is being delivered: the message is msg_size bytes at msg_offset in
 * the queue file qfd (LF line ends, dot-unstuffed). */
struct delivery_msg {
	int qfd;
	off_t msg_offset;
	uint64_t msg_size;
	const char *sender;     /* envelope sender, "" for <> */
	const char *recipient;  /* for Delivered-To */
	const char *home;       /* the user's home, or NULL: the euid's passwd
	                         * entry is used.  Maildir (and mbox) parents
	                         * are created on demand, but never the home
	                         * itself nor a directory above it. */
	const char *user;       /* the user's login name for pipe commands, or
	                         * NULL: the euid's passwd entry */
	const char *extension;  /* address extension ("bob+EXT"), or NULL */
	const char *extra_headers;  /* header lines for this copy after Delivered-To
	                             * (the spam verdict), LF-terminated, or NULL */
};

/* Expand a destination path: a leading "~/" becomes home; the result must
 * stay inside home when it came from "~" (no ".." escape, no symlink owned
 * by another user on the way).  Absolute paths are used as they are; relative
 * paths are refused.  0, or -1 with a reason in err. */
int deliver_expand_path(const char *tmpl, const char *home, char *out, size_t outlen,
    char *err, size_t errlen);

/* Deliver into a maildir (created with tmp/new/cur if missing, maildir++
 * folders like ~/Maildir/.Junk/ included): write in tmp/, fsync, link into
 * new/, fsync new/. */
void deliver_maildir(const struct delivery_msg *m, const char *path,
    struct delivery_result *r);
/* Batched maildir commits (maildir_batch.c), for a worker's batch of
 * jobs.  While a batch is open, deliver_maildir only writes the file into
 * tmp/ and reports success provisionally, recorded with the tag set last
 * (the caller's slot and instruction).  The commit fsyncs the files on a
 * few threads at once (joined before it returns), links them into new/,
 * fsyncs each distinct new/ once, and calls failed() for every delivery
 * that is not durable (its tmp/ file or new/ link removed again), with
 * its temporary or permanent result.  Then the batch is closed. */
#define MAILDIR_BATCH_MAX 128   /* deliveries a batch holds (3 fds each) */
void maildir_batch_open(void);
void maildir_batch_tag(size_t slot, int instr);
size_t maildir_batch_pending(void);
void maildir_batch_commit(void (*failed)(size_t slot, int instr,
    const struct delivery_result *r, void *arg), void *arg);
/* Take back every delivery of the batch (its tmp/ file removed, nothing
 * in new/): for a worker whose results nobody will hear.  The batch stays
 * open. */
void maildir_batch_discard(void);

/* Append to an mbox with fcntl and dotlock locking, "From " line, >From
 * quoting, fsync; truncated back to its old size on any failure. */
void deliver_mbox(const struct delivery_msg *m, const char *path,
    struct delivery_result *r);

/* Run `/bin/sh -c command` as the euid (never as root: 4.3.0) with the
 * prefix and the message on its stdin; SENDER, RECIPIENT, EXTENSION, USER,
 * LOGNAME, HOME, SHELL and PATH its only environment, HOME its directory,
 * its own process group, umask 077.  Exit 0 delivered, 75 temporary 4.3.0,
 * anything else (or a signal) permanent 5.3.0 with the start of its output
 * in the text; past the timeout the whole process group is killed and the
 * result is temporary 4.3.0.  Only this command's child is waited for. */
void deliver_pipe(const struct delivery_msg *m, const char *command,
    struct delivery_result *r);
/* The pipe command timeout in seconds (default 600; 0 restores it). */
void deliver_set_pipe_timeout(unsigned seconds);
/* The daemon stops and its grace time is over: a running pipe command is
 * killed (its group) and none starts, both temporary 4.3.0.  Async-signal-
 * safe: called from the worker's SIGTERM handler. */
void deliver_pipe_stop(void);

/* Why delivering msg (len bytes, LF line ends) to rcpt would be a mail
 * loop: it has a Delivered-To: rcpt header (case-insensitive), or more
 * Received: headers than a mail should collect; NULL when neither. */
const char *deliver_loop_reason(const char *msg, size_t len, const char *rcpt);

/* Map an errno to a result: ENOSPC/EDQUOT/EACCES/EIO and the like are
 * temporary (4.3.1 / 4.2.2 / 4.2.0 / 4.3.0), EPERM/ELOOP etc. permanent.
 * Fills r. */
void deliver_errno_result(struct delivery_result *r, int err, const char *what,
    const char *path);

/* Fill r with a status, a code and a formatted reason. */
void deliver_result_set(struct delivery_result *r, enum delivery_status status,
    const char *dsn, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* How long deliver_mbox waits for the dotlock and the fcntl lock together
 * before giving up with 4.2.1 "mailbox locked" (default 30000 ms). */
void deliver_set_lock_timeout_ms(unsigned ms);

/* The mail spool's group (mail_spool_group), held as the saved gid of a
 * root-mode worker: deliver_mbox uses it for the lock file and for
 * creating the mbox in a directory of that group the account cannot
 * write (spool_group.c).  (gid_t)-1, the default: none. */
void deliver_set_spool_group(gid_t gid);

#endif
