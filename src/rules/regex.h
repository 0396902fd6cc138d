/*
 * regex.h - the PCRE2 regexes of the rules: checking a pattern when the
 * rules are compiled, and matching through a bounded per-process cache of
 * compiled (JIT) code, with match, depth and heap limits so that no
 * pattern can run away on hostile input.
 *
 * Patterns are UTF-8 (PCRE2_UTF); subjects may be invalid UTF-8
 * (PCRE2_MATCH_INVALID_UTF); matching is case-insensitive unless caseful.
 */
#ifndef MP_RULES_REGEX_H
#define MP_RULES_REGEX_H

#include <stddef.h>

#define RULE_REGEX_CACHE_SLOTS 256      /* compiled patterns kept per process */
#define RULE_REGEX_MATCH_LIMIT 100000
#define RULE_REGEX_DEPTH_LIMIT 10000
#define RULE_REGEX_HEAP_LIMIT_KB 20480

/* 0 when the pattern compiles, else -1 with PCRE2's message and the
 * offset in err. */
int rule_regex_check(const char *pattern, int caseful, char *err, size_t errlen);

/* 1 the subject matches, 0 it does not, -1 undecided: the pattern does not
 * compile or matching hit a limit (err says which).  Callers count -1 as
 * no match and report err. */
int rule_regex_match(const char *pattern, int caseful, const char *subject,
    size_t len, char *err, size_t errlen);

/* Compilations done by the cache since the process started (for tests). */
unsigned long rule_regex_compiles(void);
/* Free the cache and the match state (tests, leak checkers). */
void rule_regex_cache_clear(void);

#endif
