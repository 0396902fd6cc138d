/*
 * smtp_data.h - the message data after DATA (RFC 5321 4.1.1.4, 4.5.2) as a
 * pure streaming state machine: finds the end of data, removes dot
 * stuffing and converts CRLF line ends to LF, one input chunk at a time.
 *
 * Only CR LF "." CR LF ends the data (the CR LF before the dot may be the
 * one that ended the DATA command line).  "\n.\n", "\n.\r\n" and "\r\n.\n"
 * do not: no SMTP smuggling.  A line starts after CR LF only; a dot at the
 * start of such a line is removed when other characters follow it on the
 * line.  Bare LF and bare CR are data and are kept as they are; NUL bytes
 * are kept too.
 */
#ifndef MP_SMTP_DATA_H
#define MP_SMTP_DATA_H

#include <stddef.h>

enum smtp_data_state {
	SMTP_DATA_BOL = 0,      /* at the start of a line */
	SMTP_DATA_DOT,          /* start of line, saw "." */
	SMTP_DATA_DOT_CR,       /* start of line, saw ".\r" */
	SMTP_DATA_TEXT,         /* inside a line */
	SMTP_DATA_CR,           /* inside a line, saw "\r" (not yet written) */
	SMTP_DATA_END,          /* the end of data was consumed */
};

struct smtp_data {
	enum smtp_data_state state;
};

/* Output room needed for n input bytes: a CR held back by the previous
 * chunk can come out with this one. */
#define SMTP_DATA_OUT_MAX(n) ((n) + 1)

/* Start of the data (just after the DATA command's line end). */
void smtp_data_init(struct smtp_data *d);
/* Consume input bytes; write the converted message bytes to out (room for
 * SMTP_DATA_OUT_MAX(n)) and their count to *outlen.  Returns the number
 * of input bytes consumed: n, or less when the end of data was reached
 * (then *done is 1 and the bytes after the final LF belong to the next
 * command).  *done stays 0 otherwise. */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t n,
    char *out, size_t *outlen, int *done);

#endif
