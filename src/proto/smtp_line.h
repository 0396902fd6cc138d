/*
 * smtp_line.h - assembles command lines from a byte stream with a fixed
 * buffer: a line longer than SMTP_LINE_MAX is reported once and the rest of
 * it is discarded as it arrives, so hostile input cannot grow memory.
 */
#ifndef MP_SMTP_LINE_H
#define MP_SMTP_LINE_H

#include <stddef.h>

/* Longest command line, not counting its CRLF. */
#define SMTP_LINE_MAX 4096

struct smtp_line {
	char buf[SMTP_LINE_MAX + 2];    /* line, a CR that may precede LF, NUL */
	size_t len;
	int discarding;                 /* skipping the rest of a long line */
	int ready;                      /* buf holds a line handed out */
};

enum smtp_line_status {
	SMTP_LINE_MORE = 0,     /* all given bytes used; no complete line yet */
	SMTP_LINE_READY,        /* buf/len hold a line without its line end */
	SMTP_LINE_TOO_LONG,     /* a line exceeded SMTP_LINE_MAX: reply once;
	                         * its remaining bytes are skipped */
};

void smtp_line_init(struct smtp_line *l);
/* Feed up to n bytes; *used says how many were taken (the rest belongs to
 * later lines or to message data and must be fed again later).  A line ends
 * at LF; one CR before the LF is removed.  After SMTP_LINE_READY the line
 * is in l->buf[0..l->len) (it may contain NUL bytes; l->buf[l->len] is
 * writable) until the next call, which starts a new line. */
enum smtp_line_status smtp_line_feed(struct smtp_line *l, const char *p,
    size_t n, size_t *used);

#endif
