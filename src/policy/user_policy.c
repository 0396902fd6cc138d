/*
 * user_policy.c - what a compiled user policy says about a request: the
 * sender glob, the client network and the HELO regex of each rule; plus
 * the checks on patterns and texts that the parser and the decoder share.
 */
#include "policy/user_policy_private.h"
#include "rules/regex.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- checks ---- */

int up_check_glob(const char *s, size_t len, const char **why)
{
	if (len == 0) {
		*why = "empty sender glob";
		return -1;
	}
	if (len > USER_POLICY_MAX_PATTERN) {
		*why = "sender glob too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f || c == '"') {
			*why = "white space, a quote or a control character in the sender glob";
			return -1;
		}
	}
	return 0;
}

int up_check_text(const char *s, size_t len, const char **why)
{
	if (len > USER_POLICY_MAX_TEXT) {
		*why = "text longer than 200 bytes";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e || c == '"') {
			*why = "the text may hold printable ASCII only, no quote";
			return -1;
		}
	}
	return 0;
}

int up_check_regex_body(const char *s, size_t len, const char **why)
{
	if (len == 0) {
		*why = "empty regex";
		return -1;
	}
	if (len > USER_POLICY_MAX_PATTERN) {
		*why = "regex too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f) {
			*why = "control character in the regex";
			return -1;
		}
	}
	return 0;
}

int up_parse_cidr(const char *s, struct up_rule *r, const char **why)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max;

	if (hlen == 0 || hlen >= sizeof(host)) {
		*why = "not an IPv4 or IPv6 address";
		return -1;
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	memset(r->addr, 0, sizeof(r->addr));
	if (inet_pton(AF_INET, host, r->addr) == 1) {
		r->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, r->addr) == 1) {
		r->family = AF_INET6;
		max = 128;
	} else {
		*why = "not an IPv4 or IPv6 address";
		return -1;
	}
	r->prefix = max;
	if (slash != NULL) {
		const char *p = slash + 1;
		unsigned v = 0;
		if (*p == '\0' || strlen(p) > 3) {
			*why = "bad prefix length after /";
			return -1;
		}
		for (; *p; p++) {
			if (!isdigit((unsigned char)*p)) {
				*why = "bad prefix length after /";
				return -1;
			}
			v = v * 10 + (unsigned)(*p - '0');
		}
		if (v > max) {
			*why = "prefix length too large for the address";
			return -1;
		}
		r->prefix = v;
	}
	/* bits beyond the prefix: almost always a typo */
	for (unsigned bit = r->prefix; bit < max; bit++) {
		if (r->addr[bit / 8] & (0x80u >> (bit % 8))) {
			*why = "address has bits set beyond the prefix length";
			return -1;
		}
	}
	return 0;
}

char *up_rule_text(enum up_kind kind, const char *pattern)
{
	switch (kind) {
	case UPK_SENDER: return xasprintf("sender %s", pattern);
	case UPK_CLIENT: return xasprintf("client %s", pattern);
	case UPK_HELO: return xasprintf("helo /%s/", pattern);
	}
	return xstrdup("?");
}

/* ---- matching ---- */

/* `*` any run, `?` one byte, else ASCII case-insensitive, on the whole
 * string; `<>` is the null sender.  Iterative with one backtrack point:
 * linear in practice, never exponential. */
static int glob_match(const char *g, const char *s)
{
	const char *star = NULL, *resume = NULL;

	if (strcmp(g, "<>") == 0)
		return *s == '\0';
	while (*s) {
		if (*g == '*') {
			star = g++;
			resume = s;
		} else if (*g == '?' || (*g && tolower((unsigned char)*g) ==
		    tolower((unsigned char)*s))) {
			g++;
			s++;
		} else if (star != NULL) {
			g = star + 1;
			s = ++resume;
		} else {
			return 0;
		}
	}
	while (*g == '*')
		g++;
	return *g == '\0';
}

struct client {
	int family;             /* 0: no usable address */
	unsigned char addr[16];
};

static void client_parse(const char *text, struct client *c)
{
	memset(c, 0, sizeof(*c));
	if (text == NULL || *text == '\0')
		return;
	if (inet_pton(AF_INET, text, c->addr) == 1) {
		c->family = AF_INET;
	} else if (inet_pton(AF_INET6, text, c->addr) == 1) {
		static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
		c->family = AF_INET6;
		if (memcmp(c->addr, mapped, sizeof(mapped)) == 0) {
			memmove(c->addr, c->addr + 12, 4);
			memset(c->addr + 4, 0, 12);
			c->family = AF_INET;
		}
	}
}

static int cidr_match(const struct up_rule *r, const struct client *c)
{
	if (c->family == 0 || c->family != r->family)
		return 0;
	unsigned full = r->prefix / 8, rest = r->prefix % 8;
	if (memcmp(r->addr, c->addr, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (r->addr[full] & mask) == (c->addr[full] & mask);
}

static int rule_matches(const struct up_rule *r, const char *sender,
    const struct client *c, const char *helo)
{
	char err[300];
	switch (r->kind) {
	case UPK_SENDER:
		return glob_match(r->pattern, sender ? sender : "");
	case UPK_CLIENT:
		return cidr_match(r, c);
	case UPK_HELO:
		helo = helo ? helo : "";
		/* -1 (bad pattern, a limit hit) counts as no match */
		return rule_regex_match(r->pattern, 0, helo, strlen(helo), err, sizeof(err)) == 1;
	}
	return 0;
}

void user_policy_evaluate(const struct user_policy *p, const char *sender,
    const char *client_address, const char *helo, struct user_policy_match *out)
{
	const struct up_rule *block = NULL;
	struct client c;

	memset(out, 0, sizeof(*out));
	out->action = UPA_NONE;
	if (p == NULL)
		return;
	client_parse(client_address, &c);
	for (size_t i = 0; i < p->nrules; i++) {
		const struct up_rule *r = &p->rules[i];
		if (r->action == UPA_BLOCK && block != NULL)
			continue;       /* only the first block counts */
		if (!rule_matches(r, sender, &c, helo))
			continue;
		if (r->action == UPA_ALLOW) {
			out->action = UPA_ALLOW;
			out->line = r->line;
			out->rule = r->rule;
			return;
		}
		block = r;
	}
	if (block != NULL) {
		out->action = UPA_BLOCK;
		out->line = block->line;
		out->text = block->text;
		out->rule = block->rule;
	}
}

int user_policy_greylist(const struct user_policy *p)
{
	return p != NULL && p->greylist;
}

uint64_t user_policy_maxsize(const struct user_policy *p)
{
	return p != NULL ? p->maxsize : 0;
}

size_t user_policy_rule_count(const struct user_policy *p)
{
	return p != NULL ? p->nrules : 0;
}

void user_policy_describe(const struct user_policy *p, struct buf *out)
{
	for (size_t i = 0; i < p->nrules; i++) {
		const struct up_rule *r = &p->rules[i];
		buf_printf(out, "line %d: %s %s", r->line, r->action == UPA_ALLOW ? "allow" :
		    "block", r->rule);
		if (r->text != NULL)
			buf_printf(out, " \"%s\"", r->text);
		buf_putc(out, '\n');
	}
	buf_printf(out, "greylist %s\n", p->greylist ? "on" : "off");
	buf_printf(out, "maxsize %llu\n", (unsigned long long)p->maxsize);
}

void user_policy_free(struct user_policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nrules; i++) {
		free(p->rules[i].pattern);
		free(p->rules[i].text);
		free(p->rules[i].rule);
	}
	free(p->rules);
	free(p);
}
