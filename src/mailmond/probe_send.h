/*
 * probe_send.h - one SMTP or LMTP dialogue that hands a probe message to
 * its target (TCP or a unix socket).  Blocking: it runs in the short-lived
 * child of sender.c, which bounds its time.
 */
#ifndef MM_PROBE_SEND_H
#define MM_PROBE_SEND_H

#include "mailmond/mm_config.h"

#include <stddef.h>

struct buf;

/* Send msg (CRLF lines, as probe_msg_build makes it) from `from` to pr->to.
 * 0 when the server accepted it, or -1 with the reason in err. */
int probe_send(const struct mm_probe_conf *pr, const char *helo, const char *from,
    const struct buf *msg, char *err, size_t errlen);

#endif
