/*
 * commands.c - the SMTP/LMTP command table.
 *
 * Each verb has a check step, which refuses the command (bad sequence, bad
 * syntax, limits) with a reply and changes nothing, and an act step, which
 * does the work and replies.  Which protocol a verb belongs to and whether
 * it takes an argument are table entries checked in one place.  Every reply
 * after the greeting and HELO/EHLO/LHLO carries an enhanced status code; a
 * refusal names its reason (receiver_figures.h), which gives the code.
 */
#include "receiver/receiver_private.h"
#include "db/address.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "lists/members.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <string.h>

enum arg_rule { ARG_NONE, ARG_OPTIONAL, ARG_REQUIRED };

#define IN_SMTP 1u
#define IN_LMTP 2u

struct command;

struct command_ctx {
	const struct command *cmd;
	const char *arg;
	struct smtp_path path;          /* MAIL, RCPT: filled by the check */
};

struct command {
	enum smtp_verb verb;
	unsigned protocols;
	enum arg_rule args;
	const char *usage;              /* for "501 5.5.4 Syntax: ..." */
	int (*check)(struct session *s, struct command_ctx *c);  /* 0 = go on */
	void (*act)(struct session *s, struct command_ctx *c);
};

/* ---- HELO, EHLO, LHLO ---- */

static int check_hello(struct session *s, struct command_ctx *c)
{
	if (!smtp_helo_valid(c->arg)) {
		session_refuse(s, FR_SYNTAX, 501, "Syntax: %s", c->cmd->usage);
		return -1;
	}
	return 0;
}

static void greet(struct session *s, struct command_ctx *c, const char *protocol)
{
	session_reset_transaction(s);
	snprintf(s->helo, sizeof(s->helo), "%s", c->arg);
	s->protocol = protocol;
}

static void act_helo(struct session *s, struct command_ctx *c)
{
	greet(s, c, "SMTP");
	session_reply(s, 250, NULL, "%s", s->r->hostname);
}

static void act_ehlo(struct session *s, struct command_ctx *c)
{
	greet(s, c, s->lmtp ? "LMTP" : "ESMTP");
	session_reply_more(s, 250, "%s", s->r->hostname);
	session_reply_more(s, 250, "PIPELINING");
	session_reply_more(s, 250, "SIZE %llu",
	    (unsigned long long)s->r->cfg->max_message_size);
	session_reply_more(s, 250, "ENHANCEDSTATUSCODES");
	session_reply(s, 250, NULL, "8BITMIME");
}

/* ---- MAIL ---- */

static int need_hello(struct session *s)
{
	if (s->protocol != NULL)
		return 0;
	session_refuse(s, FR_BAD_SEQUENCE, 503, "Error: send %s first",
	    s->lmtp ? "LHLO" : "HELO/EHLO");
	return -1;
}

/* The parse errors of MAIL and RCPT that are about parameters. */
static int param_error(struct session *s, enum smtp_path_status st, const char *param)
{
	switch (st) {
	case SMTP_PATH_PARAM_SYNTAX:
		session_refuse(s, FR_SYNTAX, 501, "Syntax error in parameters");
		return -1;
	case SMTP_PATH_PARAM_UNKNOWN:
		session_refuse(s, FR_SYNTAX, 555, "Unsupported parameter %s", param);
		return -1;
	case SMTP_PATH_PARAM_VALUE:
		session_refuse(s, FR_SYNTAX, 501, "Bad or repeated parameter %s", param);
		return -1;
	default:
		return 0;
	}
}

static int check_mail(struct session *s, struct command_ctx *c)
{
	if (need_hello(s) < 0)
		return -1;
	if (s->tx.active) {
		session_refuse(s, FR_BAD_SEQUENCE, 503, "Error: nested MAIL command");
		return -1;
	}
	enum smtp_path_status st = smtp_parse_mail(c->arg, &c->path);
	switch (st) {
	case SMTP_PATH_OK:
		break;
	case SMTP_PATH_SYNTAX:
		session_refuse(s, FR_SYNTAX, 501, "Syntax: MAIL FROM:<address>");
		return -1;
	case SMTP_PATH_TOO_LONG:
		session_refuse(s, FR_BAD_SENDER_ADDRESS, 501, "Sender address too long");
		return -1;
	case SMTP_PATH_BAD_ADDRESS:
	case SMTP_PATH_NO_DOMAIN:
		session_refuse(s, FR_BAD_SENDER_ADDRESS, 501, "Bad sender address syntax");
		return -1;
	default:
		return param_error(s, st, c->path.param);
	}
	if (c->path.params.has_size &&
	    c->path.params.size > s->r->cfg->max_message_size) {
		session_refuse(s, FR_MESSAGE_TOO_LARGE, 552, "Message size exceeds fixed limit");
		return -1;
	}
	return 0;
}

static void act_mail(struct session *s, struct command_ctx *c)
{
	session_reset_transaction(s);
	s->tx.active = 1;
	memcpy(s->tx.sender, c->path.addr, sizeof(s->tx.sender));
	s->tx.eightbit = c->path.params.body == SMTP_BODY_8BITMIME;
	s->tx.size_param = c->path.params.has_size ? c->path.params.size : 0;
	session_reply(s, 250, "2.1.0", "Ok");
}

/* ---- RCPT ---- */

static int check_rcpt(struct session *s, struct command_ctx *c)
{
	if (!s->tx.active) {
		session_refuse(s, FR_BAD_SEQUENCE, 503, "Error: need MAIL command");
		return -1;
	}
	enum smtp_path_status st = smtp_parse_rcpt(c->arg, &c->path);
	switch (st) {
	case SMTP_PATH_OK:
		break;
	case SMTP_PATH_SYNTAX:
		session_refuse(s, FR_SYNTAX, 501, "Syntax: RCPT TO:<address>");
		return -1;
	case SMTP_PATH_TOO_LONG:
		session_refuse(s, FR_BAD_ADDRESS, 501, "Recipient address too long");
		return -1;
	case SMTP_PATH_NO_DOMAIN:
		session_refuse(s, FR_BAD_ADDRESS, 501,
		    "Recipient address must include a domain");
		return -1;
	case SMTP_PATH_BAD_ADDRESS:
		session_refuse(s, FR_BAD_ADDRESS, 501, "Bad recipient address syntax");
		return -1;
	default:
		return param_error(s, st, c->path.param);
	}
	if (s->tx.nrcpts >= s->r->cfg->max_recipients) {
		session_refuse(s, FR_TOO_MANY_RECIPIENTS, 452, "Too many recipients");
		return -1;
	}
	return 0;
}

/* Whether the sender may not post to the members-only list res is the
 * address of: only over SMTP.  Over LMTP the MTA in front of us would turn
 * a refusal into a bounce to a sender that may be forged (backscatter), so
 * the list manager holds such a post instead (mailprocd.rules(5)).  When
 * the members are not known the mail goes through, and that is logged. */
static int members_refused(struct session *s, const struct db_resolution *res)
{
	char why[512];

	if (s->lmtp || res->list_key == NULL || !res->list_members_only ||
	    res->list_role != LIST_ROLE_POST)
		return 0;
	struct members *m = receiver_members(s->r);
	if (m == NULL) {
		log_info("<%s> is members-only, but members_source is none: accepted",
		    res->list_key);
		return 0;
	}
	switch (members_check(m, res->list_key, s->tx.sender, why, sizeof(why))) {
	case MEMBERS_NOT_MEMBER:
		log_info("%s: <%s> refused: %s", s->client, res->list_key, why);
		return 1;
	case MEMBERS_UNKNOWN:
		log_info("%s: <%s> is members-only, but %s: accepted (the list manager "
		    "still moderates)", s->client, res->list_key, why);
		return 0;
	case MEMBERS_IS_MEMBER:
	default:
		log_debug("<%s>: %s", res->list_key, why);
		return 0;
	}
}

/* 1 known, 0 unknown, -1 temporary failure; *maxsize gets the entry's
 * maxsize= (0 when none), *not_member whether a members-only list refuses
 * the sender. */
static int lookup_recipient(struct session *s, const char *addr, uint64_t *maxsize,
    int *not_member)
{
	struct db *db = receiver_db(s->r);
	struct db_resolution res;
	char err[256] = "";

	*maxsize = 0;
	*not_member = 0;
	if (db == NULL)
		return -1;
	memset(&res, 0, sizeof(res));
	int r = db_resolve(db, addr, s->r->cfg->recipient_delimiter, &res, err, sizeof(err));
	if (r < 0) {
		log_warn("lookup of <%s>: %s", addr, err);
		db_resolution_free(&res);       /* it may have got some way */
		return r;
	}
	if (r > 0 && res.rules_len > 0) {
		struct rules_entry e;
		if (rules_entry_decode(res.rules_blob, res.rules_len, &e) < 0) {
			log_warn("lookup of <%s>: malformed rules entry", addr);
			r = -1;
		} else {
			*maxsize = e.maxsize;
			rules_entry_free(&e);
		}
	}
	if (r > 0)
		*not_member = members_refused(s, &res);
	db_resolution_free(&res);
	return r;
}

static void act_rcpt(struct session *s, struct command_ctx *c)
{
	char bare_postmaster[SMTP_PATH_MAX + 64];
	const char *addr = c->path.addr;
	uint64_t maxsize;
	int not_member;

	/* the parser lets only <postmaster> through without a domain: this
	 * host's postmaster */
	if (strchr(addr, '@') == NULL) {
		snprintf(bare_postmaster, sizeof(bare_postmaster), "postmaster@%s", s->r->hostname);
		addr = bare_postmaster;
	}
	int known = lookup_recipient(s, addr, &maxsize, &not_member);
	if (known <= 0 && address_is_postmaster(addr)) {
		/* RFC 5321 4.5.1; the qmgr finds it a destination (mailprocd.conf(5)) */
		log_debug("<%s>: postmaster, accepted though the databases %s", addr,
		    known < 0 ? "cannot be read" : "do not know it");
		known = 1;
		maxsize = 0;
	}

	if (known < 0) {
		session_refuse(s, FR_LOOKUP_FAILED, 451, "<%s>: Temporary lookup failure", addr);
		return;
	}
	if (known == 0) {
		session_refuse(s, FR_UNKNOWN_RECIPIENT, 550, "<%s>: User unknown", addr);
		return;
	}
	if (not_member) {
		session_refuse(s, FR_NOT_LIST_MEMBER, 550, "<%s>: only members may post to this list",
		    addr);
		return;
	}
	struct transaction *tx = &s->tx;
	if (maxsize > 0 && tx->size_param > maxsize) {
		session_refuse(s, FR_MESSAGE_TOO_LARGE, 552,
		    "<%s>: Message size exceeds the recipient's limit", addr);
		return;
	}
	if (tx->nrcpts == tx->cap) {
		tx->cap = tx->cap ? tx->cap * 2 : 8;
		tx->rcpts = xreallocarray(tx->rcpts, tx->cap, sizeof(*tx->rcpts));
		tx->maxsize = xreallocarray(tx->maxsize, tx->cap, sizeof(*tx->maxsize));
	}
	tx->maxsize[tx->nrcpts] = maxsize;
	tx->rcpts[tx->nrcpts++] = xstrdup(addr);
	session_reply(s, 250, "2.1.5", "Ok");
}

/* ---- DATA ---- */

static int check_data(struct session *s, struct command_ctx *c)
{
	if (!s->tx.active) {
		session_refuse(s, FR_BAD_SEQUENCE, 503, "Error: need MAIL command");
		return -1;
	}
	if (s->tx.nrcpts == 0) {
		session_refuse(s, FR_NO_VALID_RECIPIENTS, s->lmtp ? 503 : 554,
		    "Error: no valid recipients");
		return -1;
	}
	return 0;
}

static void act_data(struct session *s, struct command_ctx *c)
{
	data_begin(s);
}

/* ---- the rest ---- */

static void act_rset(struct session *s, struct command_ctx *c)
{
	session_reset_transaction(s);
	session_reply(s, 250, "2.0.0", "Ok");
}

static void act_noop(struct session *s, struct command_ctx *c)
{
	session_reply(s, 250, "2.0.0", "Ok");
}

static void act_quit(struct session *s, struct command_ctx *c)
{
	session_reply(s, 221, "2.0.0", "Bye");
	session_close(s);
}

static void act_vrfy(struct session *s, struct command_ctx *c)
{
	session_reply(s, 252, "2.5.2",
	    "Cannot VRFY user, but will accept message and attempt delivery");
}

static void act_help(struct session *s, struct command_ctx *c)
{
	session_reply(s, 214, "2.0.0", "Commands: %s MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
	    s->lmtp ? "LHLO" : "HELO EHLO");
}

static const struct command commands[] = {
	{ SMTP_VERB_HELO, IN_SMTP, ARG_REQUIRED, "HELO hostname", check_hello, act_helo },
	{ SMTP_VERB_EHLO, IN_SMTP, ARG_REQUIRED, "EHLO hostname", check_hello, act_ehlo },
	{ SMTP_VERB_LHLO, IN_LMTP, ARG_REQUIRED, "LHLO hostname", check_hello, act_ehlo },
	{ SMTP_VERB_MAIL, IN_SMTP | IN_LMTP, ARG_REQUIRED, "MAIL FROM:<address>", check_mail, act_mail },
	{ SMTP_VERB_RCPT, IN_SMTP | IN_LMTP, ARG_REQUIRED, "RCPT TO:<address>", check_rcpt, act_rcpt },
	{ SMTP_VERB_DATA, IN_SMTP | IN_LMTP, ARG_NONE, "DATA", check_data, act_data },
	{ SMTP_VERB_RSET, IN_SMTP | IN_LMTP, ARG_NONE, "RSET", NULL, act_rset },
	{ SMTP_VERB_NOOP, IN_SMTP | IN_LMTP, ARG_OPTIONAL, "NOOP", NULL, act_noop },
	{ SMTP_VERB_QUIT, IN_SMTP | IN_LMTP, ARG_NONE, "QUIT", NULL, act_quit },
	{ SMTP_VERB_VRFY, IN_SMTP | IN_LMTP, ARG_REQUIRED, "VRFY address", NULL, act_vrfy },
	{ SMTP_VERB_HELP, IN_SMTP | IN_LMTP, ARG_OPTIONAL, "HELP", NULL, act_help },
};

static const struct command *command_find(enum smtp_verb verb)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].verb == verb)
			return &commands[i];
	return NULL;
}

/* The checks every command shares: protocol and argument presence. */
static int check_common(struct session *s, const struct command *cmd, const char *arg)
{
	if (!(cmd->protocols & (s->lmtp ? IN_LMTP : IN_SMTP))) {
		if (s->lmtp)
			session_refuse(s, FR_WRONG_PROTOCOL, 500,
			    "Error: %s is not valid in LMTP, use LHLO", smtp_verb_name(cmd->verb));
		else
			session_refuse(s, FR_WRONG_PROTOCOL, 500, "Error: %s is not valid in SMTP",
			    smtp_verb_name(cmd->verb));
		return -1;
	}
	if ((cmd->args == ARG_NONE && *arg != '\0') ||
	    (cmd->args == ARG_REQUIRED && *arg == '\0')) {
		session_refuse(s, FR_SYNTAX, 501, "Syntax: %s", cmd->usage);
		return -1;
	}
	return 0;
}

void command_execute(struct session *s, char *line, size_t len)
{
	struct smtp_cmd parsed;

	switch (smtp_parse_command(line, len, &parsed)) {
	case SMTP_CMD_NUL:
		session_refuse(s, FR_UNKNOWN_COMMAND, 500, "Error: NUL character in command");
		return;
	case SMTP_CMD_UNKNOWN:
		session_refuse(s, FR_UNKNOWN_COMMAND, 500, "Error: command not recognized");
		return;
	case SMTP_CMD_OK:
		break;
	}
	const struct command *cmd = command_find(parsed.verb);
	if (cmd == NULL)
		panic("command_execute: verb %d has no table entry", (int)parsed.verb);

	struct command_ctx ctx = { .cmd = cmd, .arg = parsed.arg };
	if (check_common(s, cmd, parsed.arg) < 0)
		return;
	if (cmd->check != NULL && cmd->check(s, &ctx) < 0)
		return;
	cmd->act(s, &ctx);
}
