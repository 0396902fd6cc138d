/*
 * smtp_parse.h - parsing of SMTP (RFC 5321) and LMTP (RFC 2033) command
 * lines: the verb, the HELO argument, and the MAIL FROM / RCPT TO paths with
 * their ESMTP parameters (SIZE, BODY).  Pure functions on strings; the
 * session logic lives in src/receiver.
 */
#ifndef MP_SMTP_PARSE_H
#define MP_SMTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Longest path content between '<' and '>' (RFC 5321 4.5.3.1.3: 256 with
 * the brackets). */
#define SMTP_PATH_MAX 254
/* Longest HELO/EHLO/LHLO argument. */
#define SMTP_HELO_MAX 255

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_LHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_HELP,
	SMTP_VERB_COUNT
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *arg;        /* after the verb and one space, trailing blanks
	                         * removed; "" when there is none */
};

enum smtp_cmd_status {
	SMTP_CMD_OK = 0,
	SMTP_CMD_NUL,           /* the line contains a NUL byte */
	SMTP_CMD_UNKNOWN,       /* empty line or unknown verb */
};

/* Split a command line (without its line end, len bytes, may contain NUL)
 * into verb and argument.  The line is modified (trailing blanks cut, NUL
 * terminated at line[len], so it needs len + 1 bytes).  Verbs are
 * case-insensitive and end at a space or the end of the line. */
enum smtp_cmd_status smtp_parse_command(char *line, size_t len, struct smtp_cmd *cmd);
const char *smtp_verb_name(enum smtp_verb v);

/* A HELO/EHLO/LHLO argument: 1..SMTP_HELO_MAX printable ASCII characters
 * without spaces.  1 valid, 0 not. */
int smtp_helo_valid(const char *arg);

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

struct smtp_mail_params {
	int has_size;
	uint64_t size;          /* UINT64_MAX when the value overflowed */
	enum smtp_body body;
};

enum smtp_path_status {
	SMTP_PATH_OK = 0,
	SMTP_PATH_SYNTAX,       /* no FROM:/TO:, no <...>, junk after the path */
	SMTP_PATH_BAD_ADDRESS,  /* the address inside <...> is malformed */
	SMTP_PATH_TOO_LONG,     /* more than SMTP_PATH_MAX bytes inside <...> */
	SMTP_PATH_NO_DOMAIN,    /* a bare local part */
	SMTP_PATH_PARAM_SYNTAX, /* a malformed parameter */
	SMTP_PATH_PARAM_UNKNOWN,/* a well-formed parameter we do not support */
	SMTP_PATH_PARAM_VALUE,  /* a bad value for SIZE/BODY, or a duplicate */
};

/* The result of a MAIL or RCPT argument.  addr is the mailbox in canonical
 * form: source route stripped, the local part unquoted when it is a valid
 * dot-string and quoted otherwise ("" for the null sender <>, and "" after
 * any error). */
struct smtp_path {
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params params;     /* MAIL only */
	char param[32];         /* the offending parameter keyword, for replies */
};

/* arg is what follows "MAIL ": "FROM:<path> [params]".  <> allowed. */
enum smtp_path_status smtp_parse_mail(const char *arg, struct smtp_path *out);
/* arg is what follows "RCPT ": "TO:<path>".  No parameters are supported;
 * <> and bare local parts are refused, except <postmaster> in any case
 * (RFC 5321 4.5.1), which gives addr "postmaster". */
enum smtp_path_status smtp_parse_rcpt(const char *arg, struct smtp_path *out);

#endif
