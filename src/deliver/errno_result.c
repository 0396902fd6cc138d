/*
 * errno_result.c - turning a failed system call into a delivery result.
 *
 * The rule is "never lose mail": anything that may clear up by itself or by
 * an administrator's hand is temporary, and only what will fail the same way
 * on every retry is permanent.  Choices worth a word:
 *   ENOSPC  -> 4.3.1 (mail system storage full: the file system, not the user)
 *   EDQUOT  -> 4.2.2 (mailbox full: this user's quota)
 *   EROFS   -> 4.3.0 temporary: a file system remounted read-only after an
 *              error or during maintenance comes back; bouncing would lose mail
 *   ENOENT  -> 4.3.0 temporary: a missing home usually means an unmounted
 *              (automounted) file system, not a bad address
 *   EACCES  -> 4.2.0 temporary: permission bits (a mode, an owner, a group
 *              membership) are an administrator's to fix, often just after
 *              the first mail showed the mistake; bouncing would lose mail
 *   EFBIG   -> 5.2.0 permanent: the mailbox reached the file size limit
 *   EPERM, ELOOP, ENOTDIR, EISDIR, EMLINK, ENAMETOOLONG -> 5.2.0: a refusal
 *              by design (a symlink, a hard link, a file owned by someone
 *              else, an immutable file) or a path that cannot work
 *   any errno not listed -> 4.3.0 temporary.
 */
#include "deliver/deliver.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void deliver_result_set(struct delivery_result *r, enum delivery_status status,
    const char *dsn, const char *fmt, ...)
{
	va_list ap;

	r->status = status;
	snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

static int errno_is_permanent(int err)
{
	switch (err) {
	case EPERM: case ELOOP: case ENOTDIR: case EISDIR:
	case EFBIG: case ENAMETOOLONG: case EMLINK:
		return 1;
	default:
		return 0;
	}
}

static const char *errno_dsn(int err)
{
	if (err == ENOSPC)
		return "4.3.1";
	if (err == EDQUOT)
		return "4.2.2";
	if (err == EACCES)
		return "4.2.0";
	return errno_is_permanent(err) ? "5.2.0" : "4.3.0";
}

void deliver_errno_result(struct delivery_result *r, int err, const char *what,
    const char *path)
{
	enum delivery_status status = errno_is_permanent(err) ? DELIVERY_PERMFAIL : DELIVERY_TEMPFAIL;

	if (path != NULL)
		deliver_result_set(r, status, errno_dsn(err), "%s %s: %s", what, path, strerror(err));
	else
		deliver_result_set(r, status, errno_dsn(err), "%s: %s", what, strerror(err));
}
