/*
 * strip.c - a message without some of its top-level header fields: the
 * X-Spam-* fields an earlier filter (or a forger) put there, which the
 * user's copy must not carry beside this host's own verdict.
 */
#include "mime/mime.h"
#include "lib/buf.h"

#include <string.h>
#include <strings.h>

/* Whether the field starting at line (len bytes to the end) is named with
 * prefix but not with except (both case-insensitive). */
static int field_matches(const char *line, size_t len, const char *prefix, const char *except)
{
	size_t np = strlen(prefix), ne = except ? strlen(except) : 0;

	if (len < np || strncasecmp(line, prefix, np) != 0)
		return 0;
	if (ne > 0 && len >= ne && strncasecmp(line, except, ne) == 0)
		return 0;
	/* a field name runs to ':' without white space or control bytes */
	for (size_t i = np; i < len; i++) {
		if (line[i] == ':')
			return 1;
		if ((unsigned char)line[i] <= ' ' || line[i] == 0x7f)
			return 0;
	}
	return 0;
}

int mime_strip_fields(const char *msg, size_t len, const char *prefix, const char *except,
    struct buf *out)
{
	size_t pos = 0, kept_from = 0;
	int removed = 0, dropping = 0;

	while (pos < len) {
		const char *nl = memchr(msg + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - msg) + 1 : len;
		const char *line = msg + pos;
		size_t n = end - pos;

		if (n == 1 || (n == 2 && line[0] == '\r'))
			break;                  /* the blank line: the body follows */
		int continuation = line[0] == ' ' || line[0] == '\t';
		int drop = continuation ? dropping : field_matches(line, n, prefix, except);
		if (drop && !dropping) {
			if (!removed)
				buf_reset(out);
			buf_append(out, msg + kept_from, pos - kept_from);
			removed = 1;
		} else if (!drop && dropping) {
			kept_from = pos;
		}
		dropping = drop;
		pos = end;
	}
	if (!removed)
		return 0;
	if (dropping)
		kept_from = pos;
	buf_append(out, msg + kept_from, len - kept_from);
	return 1;
}
