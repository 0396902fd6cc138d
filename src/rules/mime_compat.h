/*
 * mime_compat.h - the parsed message as the evaluator reads it.  Uses
 * mime/mime.h when it exists; until then, a copy of the two structures it
 * is to define (only their fields, in their order, are relied on here).
 * Private to src/rules and its tests.
 */
#ifndef MP_RULES_MIME_COMPAT_H
#define MP_RULES_MIME_COMPAT_H

#include <stddef.h>

#if __has_include("mime/mime.h")
#include "mime/mime.h"
#else
struct mime_header {
	char *name;
	char *value;            /* unfolded, RFC 2047-decoded UTF-8 */
};

struct mime_message {
	struct mime_header *headers;
	size_t nheaders;
	char *body_text;
	size_t body_text_len;
	int body_truncated;
};
#endif

#endif
