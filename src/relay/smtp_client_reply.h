/*
 * smtp_client_reply.h - assembles SMTP replies (RFC 5321 4.2) received by
 * the relay's client from a byte stream: multi-line replies, the reply
 * code, the enhanced status code (RFC 2034/3463) and a printable copy of
 * the text for reports.  Memory is fixed: a line longer than
 * SMTP_CLIENT_LINE_MAX or a reply of more than SMTP_CLIENT_LINES_MAX lines
 * is a protocol error, since the server may be hostile.
 */
#ifndef MP_SMTP_CLIENT_REPLY_H
#define MP_SMTP_CLIENT_REPLY_H

#include <stddef.h>

#define SMTP_CLIENT_LINE_MAX 2048       /* one reply line without its line end */
#define SMTP_CLIENT_LINES_MAX 100       /* lines of one reply */
#define SMTP_CLIENT_TEXT_MAX 800        /* kept report text, including NUL */

struct smtp_client_reply {
	/* the reply (valid after SMTP_CLIENT_DONE; code and enh after the
	 * first line) */
	int code;                       /* 200..599 */
	char enh[12];                   /* "5.1.1" from the first line, or "" */
	char text[SMTP_CLIENT_TEXT_MAX]; /* the lines joined by ' ', e.g.
	                                 * "550 5.1.1 <x>: user unknown";
	                                 * printable ASCII only, cut to fit */
	size_t text_len;
	unsigned nlines;                /* lines so far, the current one included */
	/* the line just completed, after its "250-" / "250 " (NUL-terminated;
	 * valid until the next feed) */
	const char *line_text;
	const char *error;              /* after SMTP_CLIENT_BAD: what was wrong */
	/* assembly */
	char line[SMTP_CLIENT_LINE_MAX + 2];
	size_t line_len;
	int done;                       /* a reply was handed out: start anew */
	int bad;
};

enum smtp_client_status {
	SMTP_CLIENT_MORE = 0,   /* all bytes used; the reply is not complete */
	SMTP_CLIENT_LINE,       /* a line of a multi-line reply (not the last) */
	SMTP_CLIENT_DONE,       /* the last line: the reply is complete */
	SMTP_CLIENT_BAD,        /* protocol error (r->error); stays bad */
};

void smtp_client_reply_init(struct smtp_client_reply *r);
/* Feed up to n bytes; *used says how many were taken (the rest must be fed
 * again).  A line ends at LF; one CR before it is removed.  After
 * SMTP_CLIENT_DONE the next call starts a new reply. */
enum smtp_client_status smtp_client_reply_feed(struct smtp_client_reply *r,
    const char *p, size_t n, size_t *used);

/* The enhanced status code to report for a reply: the server's when it
 * gave one whose class matches the reply code, otherwise "2.0.0",
 * "4.0.0" or "5.0.0" from the reply class.  out: at least 12 bytes. */
void smtp_client_reply_dsn(const struct smtp_client_reply *r, char *out, size_t outlen);

#endif
