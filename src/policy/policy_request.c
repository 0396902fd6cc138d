/*
 * policy_request.c - the incremental parser of Postfix policy requests
 * (policy_request.h): line assembly with bounds, the byte checks, and the
 * attributes kept.
 */
#include "policy/policy_request.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

static const char *const attr_names[PA_COUNT] = {
	[PA_REQUEST] = "request",
	[PA_PROTOCOL_STATE] = "protocol_state",
	[PA_PROTOCOL_NAME] = "protocol_name",
	[PA_HELO_NAME] = "helo_name",
	[PA_QUEUE_ID] = "queue_id",
	[PA_SENDER] = "sender",
	[PA_RECIPIENT] = "recipient",
	[PA_RECIPIENT_COUNT] = "recipient_count",
	[PA_CLIENT_ADDRESS] = "client_address",
	[PA_CLIENT_NAME] = "client_name",
	[PA_REVERSE_CLIENT_NAME] = "reverse_client_name",
	[PA_INSTANCE] = "instance",
	[PA_SIZE] = "size",
	[PA_ETRN_DOMAIN] = "etrn_domain",
	[PA_SASL_USERNAME] = "sasl_username",
};

const char *policy_attr_name(enum policy_attr a)
{
	return a < PA_COUNT ? attr_names[a] : "?";
}

const char *policy_request_get(const struct policy_request *r, enum policy_attr a)
{
	return a < PA_COUNT && r->attr[a] != NULL ? r->attr[a] : "";
}

uint64_t policy_request_number(const struct policy_request *r, enum policy_attr a)
{
	const char *s = policy_request_get(r, a);
	uint64_t v = 0;

	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return 0;
		uint64_t d = (uint64_t)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	return v;
}

void policy_request_free(struct policy_request *r)
{
	for (int i = 0; i < PA_COUNT; i++)
		free(r->attr[i]);
	memset(r, 0, sizeof(*r));
}

void policy_parser_init(struct policy_parser *p)
{
	memset(p, 0, sizeof(*p));
}

void policy_parser_free(struct policy_parser *p)
{
	policy_request_free(&p->req);
	p->linelen = 0;
}

int policy_parser_pending(const struct policy_parser *p)
{
	return p->linelen > 0 || p->req.nattrs > 0;
}

void policy_parser_take(struct policy_parser *p, struct policy_request *out)
{
	*out = p->req;
	memset(&p->req, 0, sizeof(p->req));
	p->linelen = 0;
}

static enum policy_parse_status fail(struct policy_parser *p, const char *why)
{
	p->error = why;
	return POLICY_PARSE_ERROR;
}

/* A complete line (without its LF, any CR already checked and removed). */
static enum policy_parse_status end_line(struct policy_parser *p)
{
	char *line = p->line;
	size_t len = p->linelen;

	p->linelen = 0;
	if (len == 0) {
		if (p->req.nattrs == 0)
			return fail(p, "empty request");
		const char *req = p->req.attr[PA_REQUEST];
		if (req == NULL || strcmp(req, "smtpd_access_policy") != 0)
			return fail(p, "not request=smtpd_access_policy");
		return POLICY_PARSE_DONE;
	}
	if (p->req.nattrs >= POLICY_MAX_ATTRS)
		return fail(p, "too many attributes");
	char *eq = memchr(line, '=', len);
	if (eq == NULL)
		return fail(p, "a line without '='");
	if (eq == line)
		return fail(p, "an attribute without a name");
	p->req.nattrs++;
	size_t namelen = (size_t)(eq - line);
	for (int a = 0; a < PA_COUNT; a++) {
		if (strlen(attr_names[a]) != namelen || memcmp(attr_names[a], line, namelen) != 0)
			continue;
		if (p->req.attr[a] != NULL)
			return fail(p, "an attribute twice");
		p->req.attr[a] = xstrndup(eq + 1, len - namelen - 1);
		break;
	}
	return POLICY_PARSE_MORE;
}

enum policy_parse_status policy_parser_feed(struct policy_parser *p,
    const char *data, size_t len, size_t *used)
{
	size_t i;

	*used = 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)data[i];
		if (c == '\n') {
			/* a CR is tolerated just before the LF */
			if (p->linelen > 0 && p->line[p->linelen - 1] == '\r')
				p->linelen--;
			if (p->linelen > POLICY_LINE_MAX)
				return fail(p, "a line over 4096 bytes");
			enum policy_parse_status st = end_line(p);
			if (st != POLICY_PARSE_MORE) {
				*used = i + 1;
				return st;
			}
			continue;
		}
		/* a CR is kept for now; anything after it is an error */
		if (p->linelen > 0 && p->line[p->linelen - 1] == '\r')
			return fail(p, "a control character");
		if ((c < 0x20 && c != '\r') || c == 0x7f)
			return fail(p, "a control character");
		if (p->linelen >= POLICY_LINE_MAX + (c == '\r'))
			return fail(p, "a line over 4096 bytes");
		p->line[p->linelen++] = (char)c;
	}
	*used = len;
	return POLICY_PARSE_MORE;
}
