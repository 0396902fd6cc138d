/*
 * loop.c - mail loops: a message that already says it was delivered to
 * this recipient (the Delivered-To: our forwards add), or that has been
 * through too many hosts, is bounced instead of delivered again.
 */
#include "deliver/deliver.h"

#include <string.h>
#include <strings.h>

/* More Received: headers than this is a loop (Postfix's hopcount_limit). */
#define HOP_LIMIT 50

const char *deliver_loop_reason(const char *msg, size_t len, const char *rcpt)
{
	const char *p = msg, *end = msg + len;
	size_t rlen = strlen(rcpt);
	int hops = 0;

	while (p < end && *p != '\n') {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol ? eol + 1 : end;
		size_t n = (size_t)((eol ? eol : end) - p);
		if (n >= 9 && strncasecmp(p, "Received:", 9) == 0 && ++hops > HOP_LIMIT)
			return "too many hops (Received: headers)";
		if (n >= 13 && strncasecmp(p, "Delivered-To:", 13) == 0) {
			const char *v = p + 13, *ve = p + n;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
				ve--;
			if ((size_t)(ve - v) == rlen && strncasecmp(v, rcpt, rlen) == 0)
				return "mail forwarding loop";
		}
		p = next;
	}
	return NULL;
}
