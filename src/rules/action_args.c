/*
 * action_args.c - the arguments of pipe, forward and reject: command and
 * text characters, and forward addresses through the RFC 5321 path parser
 * of src/proto (so a forward accepts exactly what the relay can send).
 */
#include "rules/action_args.h"
#include "db/rules_entry.h"
#include "lib/buf.h"
#include "proto/smtp_addr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNIP 60

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* One address, blanks trimmed: its canonical form appended to out. */
static int forward_one(const char *s, size_t len, struct buf *out, char *err, size_t errlen)
{
	char path[SMTP_PATH_MAX + 8], canon[SMTP_PATH_MAX + 1];
	const char *shown = s;
	int shown_len = len > SNIP ? SNIP : (int)len;

	if (len == 0) {
		snprintf(err, errlen, "forward: empty address (check the commas)");
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (is_blank(s[i])) {
			snprintf(err, errlen, "forward: separate addresses with commas: "
			    "\"%.*s\"", shown_len, shown);
			return -1;
		}
	}
	if (len > SMTP_PATH_MAX) {
		snprintf(err, errlen, "forward: address longer than %d bytes", SMTP_PATH_MAX);
		return -1;
	}
	if (s[0] == '<' && len >= 2 && s[len - 1] == '>')
		snprintf(path, sizeof(path), "%.*s", (int)len, s);
	else
		snprintf(path, sizeof(path), "<%.*s>", (int)len, s);
	const char *p = path;
	enum smtp_path_status st = smtp_addr_parse_path(&p, canon, sizeof(canon), 0);
	if (st == SMTP_PATH_NO_DOMAIN) {
		snprintf(err, errlen, "forward: \"%.*s\" needs a domain (user@domain)",
		    shown_len, shown);
		return -1;
	}
	if (st != SMTP_PATH_OK || *p != '\0' || strchr(canon, ',') != NULL) {
		snprintf(err, errlen, "forward: bad address \"%.*s\"", shown_len, shown);
		return -1;
	}
	if (out->len > 0)
		buf_putc(out, ',');
	buf_puts(out, canon);
	return 0;
}

char *rule_forward_parse(const char *text, char *err, size_t errlen)
{
	struct buf out = BUF_INIT;
	int n = 0;
	const char *p = text;

	for (;;) {
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		while (p < end && is_blank(*p))
			p++;
		const char *e = end;
		while (e > p && is_blank(e[-1]))
			e--;
		if (++n > RULES_FORWARD_MAX) {
			snprintf(err, errlen, "forward: more than %d addresses", RULES_FORWARD_MAX);
			goto bad;
		}
		if (forward_one(p, (size_t)(e - p), &out, err, errlen) < 0)
			goto bad;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return buf_steal(&out);
bad:
	buf_free(&out);
	return NULL;
}

int rule_command_check(const char *cmd, char *err, size_t errlen)
{
	size_t len = strlen(cmd);
	if (len == 0) {
		snprintf(err, errlen, "pipe: empty command");
		return -1;
	}
	if (len > RULES_ARG_MAX) {
		snprintf(err, errlen, "pipe: command longer than %d bytes", RULES_ARG_MAX);
		return -1;
	}
	for (const char *p = cmd; *p; p++) {
		if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) {
			snprintf(err, errlen, "pipe: control character in command");
			return -1;
		}
	}
	return 0;
}

int rule_reject_text_check(const char *text, char *err, size_t errlen)
{
	size_t len = strlen(text);
	if (len == 0) {
		snprintf(err, errlen, "reject: empty text");
		return -1;
	}
	if (len > RULE_REJECT_TEXT_MAX) {
		snprintf(err, errlen, "reject: text longer than %d bytes", RULE_REJECT_TEXT_MAX);
		return -1;
	}
	for (const char *p = text; *p; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
			snprintf(err, errlen, "reject: the text must be printable ASCII");
			return -1;
		}
	}
	return 0;
}
