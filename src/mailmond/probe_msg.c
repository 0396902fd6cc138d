/*
 * probe_msg.c - building the probe message and finding its header again
 * in a delivered file (see probe_msg.h).  The parser reads files that
 * anybody able to write to the maildir may have put there: it is strict
 * and bounded, and has a fuzz target (tests/fuzz/fuzz_probe_header.c).
 */
#include "mailmond/probe_msg.h"
#include "lib/buf.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The unfolded header value we accept, at most. */
#define VALUE_MAX 512

void probe_msg_build(struct buf *out, const struct probe_id *id, const char *from,
    const char *to, const char *helo)
{
	char date[64];
	time_t t = (time_t)(id->sent_usec / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

	buf_printf(out, "From: <%s>\r\n", from);
	buf_printf(out, "To: <%s>\r\n", to);
	buf_printf(out, "Subject: mailmond probe %s %llu\r\n", id->name,
	    (unsigned long long)id->seq);
	buf_printf(out, "Date: %s\r\n", date);
	buf_printf(out, "Message-ID: <mailmond.%s.%s.%llu@%s>\r\n", id->run, id->name,
	    (unsigned long long)id->seq, helo);
	buf_printf(out, "%s: name=%s; seq=%llu; sent=%llu; run=%s\r\n", PROBE_HEADER_NAME,
	    id->name, (unsigned long long)id->seq, (unsigned long long)id->sent_usec, id->run);
	buf_puts(out, "Auto-Submitted: auto-generated\r\n");
	buf_puts(out, "\r\n");
	buf_puts(out, "A delivery probe of mailmond(8): it measures how long mail takes\r\n");
	buf_puts(out, "along this path and is removed when it arrives.\r\n");
}

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (n == 0 || n > 19)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* "name=NAME; seq=SEQ; sent=USEC; run=RUN", each once, in any order, with
 * blanks around the separators. */
static int parse_value(const char *v, size_t len, struct probe_id *out, const char **why)
{
	enum { F_NAME = 1, F_SEQ = 2, F_SENT = 4, F_RUN = 8 };
	unsigned seen = 0;
	size_t i = 0;

	memset(out, 0, sizeof(*out));
	for (;;) {
		while (i < len && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i == len)
			break;
		size_t k = i;
		while (i < len && v[i] != '=' && v[i] != ';' && v[i] != ' ' && v[i] != '\t')
			i++;
		size_t klen = i - k;
		if (i == len || v[i] != '=') {
			*why = "expected key=value";
			return -1;
		}
		i++;
		size_t s = i;
		while (i < len && v[i] != ';' && v[i] != ' ' && v[i] != '\t')
			i++;
		size_t slen = i - s;
		const char *val = v + s;
		unsigned f;
		if (klen == 4 && memcmp(v + k, "name", 4) == 0) {
			f = F_NAME;
			if (!mm_probe_name_ok(val, slen)) {
				*why = "bad name";
				return -1;
			}
			memcpy(out->name, val, slen);
			out->name[slen] = '\0';
		} else if (klen == 3 && memcmp(v + k, "seq", 3) == 0) {
			f = F_SEQ;
			if (parse_u64(val, slen, &out->seq) < 0) {
				*why = "bad seq";
				return -1;
			}
		} else if (klen == 4 && memcmp(v + k, "sent", 4) == 0) {
			f = F_SENT;
			if (parse_u64(val, slen, &out->sent_usec) < 0) {
				*why = "bad sent time";
				return -1;
			}
		} else if (klen == 3 && memcmp(v + k, "run", 3) == 0) {
			f = F_RUN;
			if (slen != PROBE_RUN_LEN) {
				*why = "bad run";
				return -1;
			}
			for (size_t j = 0; j < slen; j++) {
				if (!isxdigit((unsigned char)val[j]) || isupper((unsigned char)val[j])) {
					*why = "bad run";
					return -1;
				}
			}
			memcpy(out->run, val, slen);
			out->run[slen] = '\0';
		} else {
			*why = "unknown key";
			return -1;
		}
		if (seen & f) {
			*why = "a key given twice";
			return -1;
		}
		seen |= f;
		while (i < len && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i == len)
			break;
		if (v[i] != ';') {
			*why = "expected ';' between fields";
			return -1;
		}
		i++;
	}
	if (seen != (F_NAME | F_SEQ | F_SENT | F_RUN)) {
		*why = "a field is missing (name, seq, sent, run)";
		return -1;
	}
	return 0;
}

enum probe_parse_result probe_msg_parse(const char *text, size_t len, struct probe_id *out,
    const char **why)
{
	static const char hname[] = PROBE_HEADER_NAME ":";
	const size_t hlen = sizeof(hname) - 1;
	char value[VALUE_MAX];
	size_t vlen = 0;
	int in_probe = 0, found = 0;
	size_t pos = 0;

	*why = NULL;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		size_t l = end - pos;
		const char *line = text + pos;
		if (l > 0 && line[l - 1] == '\r')
			l--;
		if (l == 0)
			break;          /* end of the header section */
		if (line[0] == ' ' || line[0] == '\t') {
			if (in_probe) {
				if (vlen + l > sizeof(value)) {
					*why = "header too long";
					return PROBE_BAD;
				}
				memcpy(value + vlen, line, l);
				vlen += l;
			}
		} else {
			in_probe = 0;
			if (l >= hlen && strncasecmp(line, hname, hlen) == 0) {
				if (found) {
					*why = "header given twice";
					return PROBE_BAD;
				}
				found = in_probe = 1;
				if (l - hlen > sizeof(value)) {
					*why = "header too long";
					return PROBE_BAD;
				}
				memcpy(value, line + hlen, l - hlen);
				vlen = l - hlen;
			}
		}
		if (nl == NULL)
			break;
		pos = end + 1;
	}
	if (!found)
		return PROBE_NONE;
	if (memchr(value, '\0', vlen) != NULL) {
		*why = "NUL byte in the header";
		return PROBE_BAD;
	}
	if (parse_value(value, vlen, out, why) < 0)
		return PROBE_BAD;
	return PROBE_FOUND;
}
