/*
 * user_policy.h - a user's own policy: the text of ~/.mailprocd/policy,
 * its compiled form (what the policy database stores) and its verdict
 * on a request.  The file format is in mailprocd.policy(5):
 *
 *   block|allow sender GLOB ["TEXT"]     (TEXT on block only)
 *   block|allow client CIDR              (IPv4 or IPv6, or a bare address)
 *   block|allow helo /REGEX/
 *   greylist on|off
 *   maxsize SIZE
 */
#ifndef MP_POLICY_USER_POLICY_H
#define MP_POLICY_USER_POLICY_H

#include "lib/buf.h"

#include <stddef.h>
#include <stdint.h>

#define USER_POLICY_MAX_FILE (64 * 1024)   /* larger files are an error */
#define USER_POLICY_MAX_RULES 1000
/* helo regexes: each costs up to the rules' match limit at every request
 * for the account, in the service's one loop, so that few of them */
#define USER_POLICY_MAX_HELO_RULES 16
#define USER_POLICY_MAX_PATTERN 1024       /* bytes of a glob or a regex */
#define USER_POLICY_MAX_TEXT 200           /* bytes of a block's text */

struct user_policy;                        /* compiled, opaque */
enum user_policy_action { UPA_NONE, UPA_ALLOW, UPA_BLOCK };
struct user_policy_match {
	enum user_policy_action action;
	int line;               /* line of the matching rule in the file */
	const char *text;       /* block's quoted text, or NULL (default text) */
	const char *rule;       /* the rule as written, e.g. "sender *@x.test", for reasons */
};

/* Parse the text of ~/.mailprocd/policy. 0 and *out set, or the number of
 * errors, each reported as report(arg, line, message). */
int user_policy_parse(const char *text, size_t len, struct user_policy **out,
    void (*report)(void *arg, int line, const char *msg), void *arg);
void user_policy_encode(const struct user_policy *p, struct buf *out);
/* Strict: 0, or -1 for anything malformed (untrusted bytes). */
int user_policy_decode(const void *data, size_t len, struct user_policy **out);
void user_policy_free(struct user_policy *p);
/* Any matching allow wins (UPA_ALLOW); else the first matching block;
 * else UPA_NONE.  sender "" is the null sender; client_address is the
 * textual IPv4/IPv6 address Postfix sends; helo may be "". */
void user_policy_evaluate(const struct user_policy *p, const char *sender,
    const char *client_address, const char *helo, struct user_policy_match *out);
int user_policy_greylist(const struct user_policy *p);   /* 1 = on */
uint64_t user_policy_maxsize(const struct user_policy *p);  /* 0 = none */
/* Number of block/allow rules (mailprocctl policy show, tests). */
size_t user_policy_rule_count(const struct user_policy *p);
/* The rules as lines "line N: block sender GLOB \"TEXT\"", then
 * "greylist on|off" and "maxsize N" (mailprocctl policy show). */
void user_policy_describe(const struct user_policy *p, struct buf *out);

#endif
