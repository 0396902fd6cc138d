/*
 * dsn_private.h - writing sanitized, folded text for the DSN composer
 * (internal to src/dsn).
 */
#ifndef MP_DSN_PRIVATE_H
#define MP_DSN_PRIVATE_H

#include <stddef.h>

#include "lib/buf.h"

#define DSN_ADDRESS_MAX 320     /* bytes of an address shown */
#define DSN_TEXT_MAX 600        /* bytes of a diagnostic shown */
#define DSN_HOST_MAX 255
#define DSN_QID_MAX 64
#define DSN_LINE_WANT 76        /* fold or wrap lines longer than this */

/* A copy of s (NULL: "") as one line of printable ASCII, at most max
 * bytes: runs of spaces, tabs and other control characters become one
 * space (with keep_space, for addresses, control characters other than
 * tab become '?' instead), bytes outside ASCII '?', leading and trailing
 * white space dropped, "..." at a cut.  Caller frees. */
char *dsn_clean(const char *s, size_t max, int keep_space);

/* "<addr>" for a To: field from a cleaned address: the local part (up
 * to the last '@') as it is when it is a dot-atom or a quoted string, else
 * quoted; in the domain anything but letters, digits, '.', '-' (and for
 * a [literal] '[', ']', ':') becomes '?'.  Caller frees. */
char *dsn_angle_addr(const char *addr);

/* Only the bytes of s in the set allowed (letters and digits always),
 * at most max. */
char *dsn_filter(const char *s, const char *allowed, size_t max);

/* Append first + text, broken at spaces so that lines stay within
 * DSN_LINE_WANT where the words allow, each further line starting with
 * cont; then LF.  For a header field cont is " " (folding); in a body it
 * is an indent.  text must be one line (from dsn_clean). */
void dsn_put_wrapped(struct buf *b, const char *first, const char *text, const char *cont);

/* Is status an enhanced status code (RFC 3463): [245].d{1,3}.d{1,3}? */
int dsn_status_valid(const char *status);

/* Fill out (2*n+1 bytes) with 2*n hex digits of fresh randomness, n <= 64. */
void dsn_random_hex(char *out, size_t n);

#endif
