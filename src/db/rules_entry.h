/*
 * rules_entry.h - a compiled rules entry: what `mailprocctl db compile` stores
 * for one key and what the worker evaluates, without re-parsing text.
 *
 * The serialized form is versioned; rules_entry_decode() checks every length
 * and refuses anything malformed.
 */
#ifndef MP_RULES_ENTRY_H
#define MP_RULES_ENTRY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"

enum rule_action {
	ACT_MAILDIR = 1,
	ACT_MBOX,
	ACT_STOP,
	ACT_PIPE,       /* issue 3 */
	ACT_FORWARD,    /* issue 3 */
	ACT_DISCARD,    /* issue 3 */
	ACT_REJECT,     /* issue 3 */
};

struct rule_instruction {
	enum rule_action action;
	char *arg;              /* path, command, addresses or text; NULL for stop */
	int has_uid;            /* uid= override (resolved at compile time) */
	uid_t uid;
	int has_gid;
	gid_t gid;
	/* Conditions arrive with the full grammar (issue 3); an instruction
	 * without a condition always holds. */
	void *cond;
	size_t cond_len;
	int line;               /* source line, for mailprocctl test and logs */
};

struct rules_entry {
	uint64_t maxsize;       /* 0 = no entry limit */
	int spam;               /* -1 default, 0 off, 1 on */
	int ninstr;
	struct rule_instruction *instr;
};

/* Parse one instruction line ("maildir ~/Maildir/", "mbox /var/mail/x",
 * "stop").  Returns 0, or -1 with a message in err. */
int rules_parse_instruction(const char *line, struct rule_instruction *out,
    char *err, size_t errlen);

/* Parsing flags. */
#define RULES_VIRTUAL 0x1       /* virtual accounts (home_base): uid= refused,
                                 * every delivery runs as the one real user */

/* rules_parse_instruction with flags.  Instructions are words separated by
 * spaces or tabs; a word may be "double quoted" with \" and \\ escapes.
 * Action options uid=NAME and gid=NAME are resolved now (passwd, group);
 * uid 0 and gid 0 are refused. */
int rules_parse_instruction_flags(const char *line, int flags,
    struct rule_instruction *out, char *err, size_t errlen);
/* Parse an instruction line of a rules entry: one or more instructions
 * separated by `;` (outside quotes), e.g. "maildir ~/Maildir/.Junk/ ; stop".
 * Appends them to e with .line = lineno.  0, or -1 with a message in err
 * and e unchanged. */
int rules_parse_line(const char *line, int flags, int lineno,
    struct rules_entry *e, char *err, size_t errlen);
/* Whether an action writes as a user (maildir, mbox, pipe): such an entry
 * needs an account. */
int rule_action_writes_as_user(enum rule_action a);
void rule_instruction_free(struct rule_instruction *in);

void rules_entry_encode(const struct rules_entry *e, struct buf *out);
/* 0 on success, -1 when the blob is malformed. */
int rules_entry_decode(const void *blob, size_t len, struct rules_entry *out);
void rules_entry_free(struct rules_entry *e);
const char *rule_action_name(enum rule_action a);

#endif
