/*
 * smtp_reply.h - formatting of SMTP/LMTP reply lines (RFC 5321 4.2) with
 * enhanced status codes (RFC 2034, RFC 3463).
 */
#ifndef MP_SMTP_REPLY_H
#define MP_SMTP_REPLY_H

#include <stddef.h>

/* Longest reply line including CRLF (RFC 5321 4.5.3.1.5). */
#define SMTP_REPLY_MAX 512

/* Write "CODE ENH TEXT\r\n" into out (SMTP_REPLY_MAX bytes, NUL-terminated)
 * and return its length.  more: '-' instead of ' ' after the code (a line
 * of a multi-line reply that is not the last).  enh may be NULL (greeting,
 * HELO/EHLO, 354).  Characters of text outside printable ASCII become '?'
 * so that client-supplied text cannot break the reply; text that does not
 * fit is cut.  code must be 200..599 (panic otherwise: our bug). */
size_t smtp_reply_line(char *out, int code, int more, const char *enh,
    const char *text);

#endif
