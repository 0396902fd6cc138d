/*
 * perl_embed.h - the one Perl interpreter of a process, reduced to what
 * the spam engine needs: start it with some Perl code, call a sub with
 * byte-string arguments and get byte-string results back, stop it.
 *
 * Only perl_embed.c includes Perl's headers.  Errors (a die in Perl) come
 * back as -1 with the message; Perl never unwinds through C callers.
 */
#ifndef MP_SPAM_PERL_EMBED_H
#define MP_SPAM_PERL_EMBED_H

#include <stddef.h>

#define PL_MAX_RESULTS 8

struct pl_arg {
	const char *p;          /* NULL: undef */
	size_t len;
};

struct pl_results {
	int n;
	char *v[PL_MAX_RESULTS];        /* malloc'd, NUL-terminated; NULL for undef */
	size_t len[PL_MAX_RESULTS];
};

/* Construct the interpreter (DynaLoader booted, so XS modules load) and
 * evaluate `code` (named `name` in Perl's messages).  0 or -1 with err;
 * on failure the interpreter is gone again. */
int pl_start(const char *code, size_t len, const char *name, char *err, size_t errlen);
int pl_started(void);
/* Call the Perl sub `sub` in list context.  0 with res filled (free it with
 * pl_results_free), or -1 with err (res empty). */
int pl_call(const char *sub, const struct pl_arg *args, int nargs,
    struct pl_results *res, char *err, size_t errlen);
void pl_results_free(struct pl_results *res);
/* perl_destruct and perl_free; no-op when not started.  exiting: the
 * process exits next, so Perl need not free everything. */
void pl_stop(int exiting);

#endif
