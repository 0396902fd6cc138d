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

struct rule_cond;               /* rules/cond.h */

enum rule_action {
	ACT_MAILDIR = 1,        /* arg: the path (absolute or ~/...) */
	ACT_MBOX,               /* arg: the path */
	ACT_STOP,               /* no arg */
	ACT_PIPE,               /* arg: the command, for /bin/sh -c */
	ACT_FORWARD,            /* arg: the addresses, canonical (RFC 5321), joined
	                         * by ',' without spaces */
	ACT_DISCARD,            /* no arg */
	ACT_REJECT,             /* arg: the text (printable ASCII) */
};

#define RULES_FORWARD_MAX 32    /* addresses in one forward */
#define RULES_ARG_MAX 4096      /* bytes of a path, command or text */
#define RULES_LINE_MAX 65536    /* bytes of an instruction line */
#define RULES_ENTRY_MAX 32768   /* bytes of an encoded entry (workers read it
                                 * from the databases, not from their jobs) */

struct rule_instruction {
	enum rule_action action;
	char *arg;              /* see enum rule_action; NULL without one */
	int has_uid;            /* uid= override (resolved at compile time) */
	uid_t uid;
	int has_gid;
	gid_t gid;
	/* The condition: ncond tests that must all hold (rules/cond.h, and
	 * rules/eval.h to evaluate it); none (NULL, 0) always holds.  Every
	 * instruction of a line `if COND A ; B` has its own copy of COND. */
	struct rule_cond *cond;
	int ncond;
	int line;               /* source line, for mailprocctl test and logs */
};

struct rules_entry {
	uint64_t maxsize;       /* 0 = no entry limit */
	int spam;               /* -1 default, 0 off, 1 on */
	int ninstr;
	struct rule_instruction *instr;
};

/* Parse one instruction without a condition ("maildir ~/Maildir/",
 * "mbox /var/mail/x", "stop"), as default_delivery is written.  Returns 0,
 * or -1 with a message in err. */
int rules_parse_instruction(const char *line, struct rule_instruction *out,
    char *err, size_t errlen);

/* Parsing flags. */
#define RULES_VIRTUAL 0x1       /* virtual accounts (home_base): uid= refused,
                                 * every delivery runs as the one real user */

/* rules_parse_instruction with flags.  Instructions are words separated by
 * spaces or tabs; a word may be "double quoted" with \" and \\ escapes.
 * Action options uid=NAME and gid=NAME (maildir, mbox and pipe only) are
 * resolved now (passwd, group); uid 0 and gid 0 are refused.  Forward
 * addresses are checked against RFC 5321 and stored canonical. */
int rules_parse_instruction_flags(const char *line, int flags,
    struct rule_instruction *out, char *err, size_t errlen);
/* Parse an instruction line of a rules entry: an optional condition
 * `if COND [and COND]...` (rules/cond.h) at its start, then one or more
 * instructions separated by `;` (outside quotes), e.g.
 * "if spam maildir ~/Maildir/.Junk/ ; stop"; the condition applies to every
 * instruction of the line.  Appends them to e with .line = lineno.  0, or
 * -1 with a message in err and e unchanged. */
int rules_parse_line(const char *line, int flags, int lineno,
    struct rules_entry *e, char *err, size_t errlen);
/* Whether an action writes as a user (maildir, mbox, pipe): such an entry
 * needs an account. */
int rule_action_writes_as_user(enum rule_action a);
/* Check default_delivery's text: one instruction that writes as a user.
 * 0, or -1 with "default_delivery: ..." in err (mailprocd -n and reload). */
int rules_check_default_delivery(const char *text, char *err, size_t errlen);
void rule_instruction_free(struct rule_instruction *in);

void rules_entry_encode(const struct rules_entry *e, struct buf *out);
/* 0 on success, -1 when the blob is malformed (out is then empty).  Blobs
 * of version 1 (before conditions) are still read. */
int rules_entry_decode(const void *blob, size_t len, struct rules_entry *out);
void rules_entry_free(struct rules_entry *e);
const char *rule_action_name(enum rule_action a);

#endif
