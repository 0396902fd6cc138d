/*
 * msgcopy.h - writing one copy of a queued message into a mailbox file:
 * the Return-Path/Delivered-To prefix, then the message, as it is (maildir)
 * or as an mboxrd entry (From_ line, >From quoting, blank line after).
 * The message is read from the queue file with pread only: the descriptor
 * is shared and its offset must not move.
 */
#ifndef MP_DELIVER_MSGCOPY_H
#define MP_DELIVER_MSGCOPY_H

#include "deliver/deliver.h"
#include "lib/buf.h"

#include <time.h>

/* Which end of a copy failed. */
enum msgcopy_side { MSGCOPY_OK = 0, MSGCOPY_READ, MSGCOPY_WRITE };

/* Append "Return-Path: <SENDER>\n" and "Delivered-To: RECIPIENT\n" to b
 * (control characters in either are replaced by '?'), then the copy's
 * extra header lines (m->extra_headers), if any. */
void msgcopy_prefix(const struct delivery_msg *m, struct buf *b);

/* Write the prefix and the message to fd at its current offset (using
 * copy_file_range where the file systems allow).  0, or -1 with errno and
 * *side saying whether the queue file or fd failed. */
int msgcopy_plain(const struct delivery_msg *m, int fd, enum msgcopy_side *side);

/* Write an mbox entry to fd: "From SENDER DATE" (now, UTC, MAILER-DAEMON
 * for <>), the prefix, the message with every line that starts with
 * "From " after zero or more '>' quoted with one more '>' (mboxrd), a final
 * newline if missing, and a blank line.
 * 0, or -1 with errno and *side. */
int msgcopy_mbox(const struct delivery_msg *m, int fd, time_t now, enum msgcopy_side *side);

/* Fill r for a failed copy: a queue file read error is temporary 4.3.0,
 * a write error is mapped by deliver_errno_result. */
void msgcopy_fail_result(struct delivery_result *r, enum msgcopy_side side, int err,
    const char *path);

#endif
