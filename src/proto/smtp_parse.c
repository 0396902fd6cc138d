/*
 * smtp_parse.c - SMTP/LMTP command lines: verb and argument, the HELO
 * argument, and the MAIL FROM / RCPT TO arguments with their ESMTP
 * parameters.  The address grammar itself is in smtp_addr.c.
 *
 * Security: input is untrusted network data.  Every function here works
 * on a NUL-terminated string whose NUL bytes were refused first, reads
 * nothing past the terminator and writes only into fixed-size fields.
 */
#include "proto/smtp_parse.h"
#include "proto/smtp_addr.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const verb_names[SMTP_VERB_COUNT] = {
	[SMTP_VERB_UNKNOWN] = "?",
	[SMTP_VERB_HELO] = "HELO",
	[SMTP_VERB_EHLO] = "EHLO",
	[SMTP_VERB_LHLO] = "LHLO",
	[SMTP_VERB_MAIL] = "MAIL",
	[SMTP_VERB_RCPT] = "RCPT",
	[SMTP_VERB_DATA] = "DATA",
	[SMTP_VERB_RSET] = "RSET",
	[SMTP_VERB_NOOP] = "NOOP",
	[SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_VRFY] = "VRFY",
	[SMTP_VERB_HELP] = "HELP",
};

const char *smtp_verb_name(enum smtp_verb v)
{
	if ((unsigned)v >= SMTP_VERB_COUNT)
		return "?";
	return verb_names[v];
}

static enum smtp_verb verb_lookup(const char *s, size_t len)
{
	for (int v = SMTP_VERB_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++) {
		const char *name = verb_names[v];
		if (strlen(name) == len && strncasecmp(s, name, len) == 0)
			return (enum smtp_verb)v;
	}
	return SMTP_VERB_UNKNOWN;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

enum smtp_cmd_status smtp_parse_command(char *line, size_t len, struct smtp_cmd *cmd)
{
	cmd->verb = SMTP_VERB_UNKNOWN;
	cmd->arg = "";
	if (memchr(line, '\0', len) != NULL)
		return SMTP_CMD_NUL;
	line[len] = '\0';
	while (len > 0 && is_blank(line[len - 1]))
		line[--len] = '\0';

	char *space = strchr(line, ' ');
	size_t verb_len = space ? (size_t)(space - line) : len;
	cmd->verb = verb_lookup(line, verb_len);
	if (cmd->verb == SMTP_VERB_UNKNOWN)
		return SMTP_CMD_UNKNOWN;
	if (space != NULL) {
		char *arg = space + 1;
		while (*arg == ' ')
			arg++;
		cmd->arg = arg;
	}
	return SMTP_CMD_OK;
}

int smtp_helo_valid(const char *arg)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)arg; *p; p++, n++)
		if (*p < 0x21 || *p > 0x7e || n >= SMTP_HELO_MAX)
			return 0;
	return n > 0;
}

/* "FROM:" / "TO:", case-insensitive, then optional spaces before '<'. */
static const char *skip_keyword(const char *arg, const char *kw)
{
	size_t n = strlen(kw);
	while (*arg == ' ')
		arg++;
	if (strncasecmp(arg, kw, n) != 0)
		return NULL;
	arg += n;
	while (*arg == ' ')
		arg++;
	return arg;
}

static int is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* esmtp-value: 1*(%d33-60 / %d62-126) */
static int is_value_char(char c)
{
	unsigned char u = (unsigned char)c;
	return u >= 33 && u <= 126 && u != '=';
}

struct param {
	char keyword[32];
	int truncated;          /* keyword longer than the field */
	const char *value;      /* NULL when there is no "=" */
	size_t value_len;
};

/* One esmtp-param at *pp; advances past it. */
static int next_param(const char **pp, struct param *out)
{
	const char *p = *pp;
	size_t n = 0;

	if (!is_alnum(*p))
		return -1;
	memset(out, 0, sizeof(*out));
	for (; is_alnum(*p) || *p == '-'; p++, n++) {
		if (n < sizeof(out->keyword) - 1)
			out->keyword[n] = *p;
		else
			out->truncated = 1;
	}
	if (*p == '=') {
		out->value = ++p;
		while (is_value_char(*p))
			p++;
		out->value_len = (size_t)(p - out->value);
		if (out->value_len == 0)
			return -1;
	}
	if (*p != '\0' && *p != ' ')
		return -1;
	*pp = p;
	return 0;
}

/* SIZE=1*20DIGIT; a value beyond uint64 saturates (it is over any limit). */
static int size_value(const struct param *pa, uint64_t *out)
{
	uint64_t v = 0;
	if (pa->value == NULL || pa->value_len > 20)
		return -1;
	for (size_t i = 0; i < pa->value_len; i++) {
		char c = pa->value[i];
		if (c < '0' || c > '9')
			return -1;
		uint64_t d = (uint64_t)(c - '0');
		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
	}
	*out = v;
	return 0;
}

static int value_is(const struct param *pa, const char *word)
{
	return pa->value != NULL && pa->value_len == strlen(word) &&
	    strncasecmp(pa->value, word, pa->value_len) == 0;
}

static enum smtp_path_status mail_param(const struct param *pa,
    struct smtp_mail_params *mp)
{
	if (!pa->truncated && strcasecmp(pa->keyword, "SIZE") == 0) {
		if (mp->has_size || size_value(pa, &mp->size) < 0)
			return SMTP_PATH_PARAM_VALUE;
		mp->has_size = 1;
		return SMTP_PATH_OK;
	}
	if (!pa->truncated && strcasecmp(pa->keyword, "BODY") == 0) {
		if (mp->body != SMTP_BODY_NONE)
			return SMTP_PATH_PARAM_VALUE;
		if (value_is(pa, "7BIT"))
			mp->body = SMTP_BODY_7BIT;
		else if (value_is(pa, "8BITMIME"))
			mp->body = SMTP_BODY_8BITMIME;
		else
			return SMTP_PATH_PARAM_VALUE;
		return SMTP_PATH_OK;
	}
	return SMTP_PATH_PARAM_UNKNOWN;
}

/* The parameters after the path: (SP+ esmtp-param)* SP*. */
static enum smtp_path_status parse_params(const char *p, struct smtp_path *out,
    int is_mail)
{
	if (*p != '\0' && *p != ' ')
		return SMTP_PATH_SYNTAX;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return SMTP_PATH_OK;
		struct param pa;
		if (next_param(&p, &pa) < 0)
			return SMTP_PATH_PARAM_SYNTAX;
		memcpy(out->param, pa.keyword, sizeof(out->param));
		enum smtp_path_status st = is_mail ?
		    mail_param(&pa, &out->params) : SMTP_PATH_PARAM_UNKNOWN;
		if (st != SMTP_PATH_OK)
			return st;
		out->param[0] = '\0';
	}
}

static enum smtp_path_status parse_path_arg(const char *arg, const char *kw,
    struct smtp_path *out, int is_mail)
{
	memset(out, 0, sizeof(*out));
	const char *p = skip_keyword(arg, kw);
	if (p == NULL || *p != '<')
		return SMTP_PATH_SYNTAX;

	const char *path = p;
	enum smtp_path_status st = smtp_addr_parse_path(&p, out->addr,
	    sizeof(out->addr), is_mail);
	/* RFC 5321 4.5.1: RCPT TO:<Postmaster> without a domain must work */
	if (!is_mail && st == SMTP_PATH_NO_DOMAIN && strncasecmp(path, "<postmaster>", 12) == 0) {
		snprintf(out->addr, sizeof(out->addr), "postmaster");
		p = path + 12;
		st = SMTP_PATH_OK;
	}
	if (st == SMTP_PATH_OK)
		st = parse_params(p, out, is_mail);
	if (st != SMTP_PATH_OK)
		out->addr[0] = '\0';
	return st;
}

enum smtp_path_status smtp_parse_mail(const char *arg, struct smtp_path *out)
{
	return parse_path_arg(arg, "FROM:", out, 1);
}

enum smtp_path_status smtp_parse_rcpt(const char *arg, struct smtp_path *out)
{
	return parse_path_arg(arg, "TO:", out, 0);
}
