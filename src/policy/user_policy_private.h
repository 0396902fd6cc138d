/*
 * user_policy_private.h - the compiled form of a user's policy, shared by
 * the parser, the codec and the evaluator (src/policy/user_policy*.c).
 */
#ifndef MP_POLICY_USER_POLICY_PRIVATE_H
#define MP_POLICY_USER_POLICY_PRIVATE_H

#include "policy/user_policy.h"

#include <stdint.h>

enum up_kind { UPK_SENDER = 1, UPK_CLIENT = 2, UPK_HELO = 3 };

struct up_rule {
	enum user_policy_action action;   /* UPA_ALLOW or UPA_BLOCK */
	enum up_kind kind;
	int line;
	char *pattern;          /* glob, regex (without slashes) or CIDR text */
	char *text;             /* block's text, or NULL */
	char *rule;             /* "KIND PATTERN" as written, for reasons */
	/* client: the network, IPv4 as 4 bytes */
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct user_policy {
	struct up_rule *rules;
	size_t nrules;
	int greylist;
	uint64_t maxsize;
};

/* Checks shared by the parser and the decoder. */
/* 0 when s (len bytes) is a glob the parser accepts, else -1 and why. */
int up_check_glob(const char *s, size_t len, const char **why);
/* 0 when s is a block text the parser accepts, else -1 and why. */
int up_check_text(const char *s, size_t len, const char **why);
/* 0 when s is a regex body (between the slashes) within the limits, else
 * -1 and why; it is not compiled here. */
int up_check_regex_body(const char *s, size_t len, const char **why);
/* Parse "ADDR[/PREFIX]" into r's family/addr/prefix: 0, or -1 and why. */
int up_parse_cidr(const char *s, struct up_rule *r, const char **why);
/* The "KIND PATTERN" text of a rule (allocated). */
char *up_rule_text(enum up_kind kind, const char *pattern);

#endif
