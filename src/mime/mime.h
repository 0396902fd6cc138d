/*
 * mime.h - analysis of a mail message for the rules engine: the top-level
 * header section (unfolded, RFC 2047 decoded) and the decoded text of the
 * text parts, from the message bytes as stored in the queue.
 *
 * Everything produced is valid UTF-8 (invalid input sequences become
 * U+FFFD), so callers may match it with PCRE2_UTF | PCRE2_NO_UTF_CHECK.
 * The input may be hostile: any bytes, any length; work and memory are
 * linear in the input and bounded by body_limit for the body.
 */
#ifndef MP_MIME_H
#define MP_MIME_H

#include <stddef.h>

struct mime_header {
	char *name;     /* as in the message, e.g. "List-Id" */
	char *value;    /* unfolded, leading/trailing whitespace trimmed, RFC 2047 encoded
	                 * words decoded to UTF-8 (B and Q, any charset iconv knows;
	                 * adjacent encoded words separated only by whitespace joined);
	                 * NUL and other control bytes except TAB replaced by a space */
};

struct mime_message {
	struct mime_header *headers;  /* the top-level header section, in order */
	size_t nheaders;
	char *body_text;              /* NUL-terminated: decoded text of the text/plain and
	                               * text/html (and other text/x) parts: Content-Transfer-Encoding
	                               * quoted-printable/base64/7bit/8bit decoded, charset converted
	                               * to UTF-8 with iconv (invalid sequences replaced, never fail),
	                               * parts joined with '\n'; walks multipart/any recursively
	                               * (depth limit, part-count limit), skips non-text parts and
	                               * attachments that are not text. A message without MIME headers
	                               * is one text/plain part. */
	size_t body_text_len;         /* <= body_limit */
	int body_truncated;           /* 1 when body_limit cut it */
};

/* flags: MIME_HEADERS_ONLY to skip the body (body_text = "" then). */
#define MIME_HEADERS_ONLY 0x1

/* Limits on hostile structure.  Headers past MIME_MAX_HEADERS are parsed
 * over but not kept; multiparts (and message/rfc822) nested deeper than
 * MIME_MAX_DEPTH are skipped; the walk stops after MIME_MAX_PARTS parts. */
#define MIME_MAX_HEADERS 10000
#define MIME_MAX_DEPTH 32
#define MIME_MAX_PARTS 10000

/* 0 on success, -1 only on allocation/internal failure (malformed input still parses as
 * well as it can). body_limit bounds the DECODED body text and also the work done.
 * (Allocation failure is fatal through xmalloc, so -1 is returned only for
 * bad arguments: out == NULL, or msg == NULL with len > 0.)  On -1, *out is
 * zeroed and needs no mime_message_free. */
int mime_parse(const char *msg, size_t len, size_t body_limit, int flags, struct mime_message *out);

/* First header with that name (case-insensitive), or NULL. */
const char *mime_header_first(const struct mime_message *m, const char *name);

void mime_message_free(struct mime_message *m);

/* The message without its top-level header fields (continuation lines
 * included) whose names start with prefix and not with except (NULL:
 * none), case-insensitively: 1 with the result in out (reset first), or 0
 * when nothing matched (out untouched). */
struct buf;
int mime_strip_fields(const char *msg, size_t len, const char *prefix, const char *except,
    struct buf *out);

#endif
