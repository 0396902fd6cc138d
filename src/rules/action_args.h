/*
 * action_args.h - checking the arguments of the rules actions pipe,
 * forward and reject when the rules are compiled.
 */
#ifndef MP_RULES_ACTION_ARGS_H
#define MP_RULES_ACTION_ARGS_H

#include <stddef.h>

/* The addresses after `forward`, separated by commas (blanks around them
 * allowed; each may be written <addr>), e.g. "a@example.test, b@x.test".
 * Each must be an RFC 5321 mailbox with a domain; at most
 * RULES_FORWARD_MAX (db/rules_entry.h).  Returns the canonical addresses
 * joined by ',' (malloc'd), or NULL with a message in err. */
char *rule_forward_parse(const char *text, char *err, size_t errlen);

/* A pipe command: not empty, at most RULES_ARG_MAX bytes, no control
 * characters but tab.  0, or -1 with a message in err. */
int rule_command_check(const char *cmd, char *err, size_t errlen);

/* A reject text: 1..RULE_REJECT_TEXT_MAX bytes of printable ASCII (it ends
 * up in a reply or a bounce).  0, or -1 with a message in err. */
#define RULE_REJECT_TEXT_MAX 256
int rule_reject_text_check(const char *text, char *err, size_t errlen);

#endif
