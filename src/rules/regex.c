/*
 * regex.c - PCRE2 for the rules: compile-time checks, and a cache of
 * compiled code (RULE_REGEX_CACHE_SLOTS slots, keyed by pattern and case
 * flag; set-associative, the least recently used slot of a set replaced)
 * so that a worker compiles each pattern once, not once per message.  A
 * slot whose pattern did not compile remembers the error.
 *
 * One match context (limits, JIT stack) and one match data block serve
 * every match: a worker is single-threaded.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "rules/regex.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JIT_STACK_START (32 * 1024)
#define JIT_STACK_MAX (1024 * 1024)

#define WAYS 16
#define SETS (RULE_REGEX_CACHE_SLOTS / WAYS)

struct slot {
	char *pattern;          /* NULL: empty slot */
	int caseful;
	uint32_t hash;
	unsigned long used;     /* when last used, for replacement */
	pcre2_code *code;       /* NULL: the pattern did not compile */
	char *error;
};

static struct slot cache[SETS][WAYS];
static unsigned long compiles, tick;
static pcre2_match_context *mctx;
static pcre2_jit_stack *jit_stack;
static pcre2_match_data *mdata;

static uint32_t compile_options(int caseful)
{
	return PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C |
	    (caseful ? 0 : PCRE2_CASELESS);
}

/* Compile; NULL with the message in err when the pattern is bad. */
static pcre2_code *compile(const char *pattern, int caseful, char *err, size_t errlen)
{
	int code;
	PCRE2_SIZE offset;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, strlen(pattern),
	    compile_options(caseful), &code, &offset, NULL);
	if (re == NULL) {
		PCRE2_UCHAR msg[256];
		if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", code);
		snprintf(err, errlen, "%s at offset %zu", (const char *)msg, (size_t)offset);
	}
	return re;
}

int rule_regex_check(const char *pattern, int caseful, char *err, size_t errlen)
{
	pcre2_code *re = compile(pattern, caseful, err, errlen);
	if (re == NULL)
		return -1;
	pcre2_code_free(re);
	return 0;
}

static void match_state_init(void)
{
	if (mctx != NULL)
		return;
	mctx = pcre2_match_context_create(NULL);
	mdata = pcre2_match_data_create(1, NULL);
	if (mctx == NULL || mdata == NULL)
		fatal("pcre2: out of memory");
	pcre2_set_match_limit(mctx, RULE_REGEX_MATCH_LIMIT);
	pcre2_set_depth_limit(mctx, RULE_REGEX_DEPTH_LIMIT);
	pcre2_set_heap_limit(mctx, RULE_REGEX_HEAP_LIMIT_KB);
	jit_stack = pcre2_jit_stack_create(JIT_STACK_START, JIT_STACK_MAX, NULL);
	if (jit_stack != NULL)
		pcre2_jit_stack_assign(mctx, NULL, jit_stack);
}

static uint32_t pattern_hash(const char *pattern, int caseful)
{
	uint32_t h = 2166136261u ^ (caseful ? 1u : 0u);
	for (const unsigned char *p = (const unsigned char *)pattern; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static void slot_clear(struct slot *s)
{
	free(s->pattern);
	free(s->error);
	if (s->code != NULL)
		pcre2_code_free(s->code);
	memset(s, 0, sizeof(*s));
}

static struct slot *lookup(const char *pattern, int caseful)
{
	uint32_t h = pattern_hash(pattern, caseful);
	struct slot *set = cache[h % SETS], *victim = &set[0];

	for (int i = 0; i < WAYS; i++) {
		struct slot *s = &set[i];
		if (s->pattern != NULL && s->hash == h && s->caseful == caseful &&
		    strcmp(s->pattern, pattern) == 0) {
			s->used = ++tick;
			return s;
		}
		if (victim->pattern != NULL && (s->pattern == NULL || s->used < victim->used))
			victim = s;
	}
	struct slot *s = victim;
	char err[300];
	slot_clear(s);
	s->pattern = xstrdup(pattern);
	s->caseful = caseful;
	s->hash = h;
	s->used = ++tick;
	s->code = compile(pattern, caseful, err, sizeof(err));
	compiles++;
	if (s->code == NULL)
		s->error = xstrdup(err);
	else
		(void)pcre2_jit_compile(s->code, PCRE2_JIT_COMPLETE);   /* else interpreted */
	return s;
}

static const char *limit_name(int rc)
{
	switch (rc) {
	case PCRE2_ERROR_MATCHLIMIT: return "the match limit";
	case PCRE2_ERROR_DEPTHLIMIT: return "the depth limit";
	case PCRE2_ERROR_HEAPLIMIT: return "the heap limit";
	case PCRE2_ERROR_JIT_STACKLIMIT: return "the JIT stack limit";
	}
	return NULL;
}

int rule_regex_match(const char *pattern, int caseful, const char *subject,
    size_t len, char *err, size_t errlen)
{
	match_state_init();
	struct slot *s = lookup(pattern, caseful);
	if (s->code == NULL) {
		snprintf(err, errlen, "bad regex: %s", s->error);
		return -1;
	}
	int rc = pcre2_match(s->code, (PCRE2_SPTR)(subject ? subject : ""),
	    subject ? len : 0, 0, 0, mdata, mctx);
	if (rc >= 0)
		return 1;
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	const char *limit = limit_name(rc);
	if (limit != NULL) {
		snprintf(err, errlen, "regex hit %s", limit);
	} else {
		PCRE2_UCHAR msg[256];
		if (pcre2_get_error_message(rc, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", rc);
		snprintf(err, errlen, "regex failed: %s", (const char *)msg);
	}
	return -1;
}

unsigned long rule_regex_compiles(void)
{
	return compiles;
}

void rule_regex_cache_clear(void)
{
	for (size_t i = 0; i < SETS; i++) {
		for (size_t j = 0; j < WAYS; j++)
			slot_clear(&cache[i][j]);
	}
	if (mdata != NULL)
		pcre2_match_data_free(mdata);
	if (mctx != NULL)
		pcre2_match_context_free(mctx);
	if (jit_stack != NULL)
		pcre2_jit_stack_free(jit_stack);
	mdata = NULL;
	mctx = NULL;
	jit_stack = NULL;
}
