/*
 * perl_embed.c - the process's Perl interpreter: construct it with
 * DynaLoader booted, evaluate the engine's Perl code, call subs with byte
 * strings in and out, destruct it.  The only file that includes Perl's
 * headers (their warnings are silenced here and nowhere else).
 *
 * Around every entry into Perl: SIGALRM is unblocked (SpamAssassin's time
 * limits use alarm()) and Perl's own thread locale is put back (perl_construct
 * gives the thread a locale object of its own).  Afterwards the caller's
 * signal mask, signal dispositions (SpamAssassin's `local $SIG{TERM}` leaves
 * SIG_DFL behind, whatever the C code had) and thread locale are restored,
 * and any alarm left behind is cancelled (once Perl has returned nobody
 * handles SIGALRM any more, and its default action would kill the process).
 */
#define PERL_NO_GET_CONTEXT
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"     /* sv_inline.h */
#include <EXTERN.h>
#include <perl.h>
#include <XSUB.h>
#pragma GCC diagnostic pop

#include "spam/perl_embed.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

EXTERN_C void boot_DynaLoader(pTHX_ CV *cv);

static PerlInterpreter *interp;
static int sys_inited;          /* PERL_SYS_INIT3 may run once per process */
static locale_t perl_locale;    /* Perl's thread locale, (locale_t)0 before it has one */

/* A Perl message as one line: no trailing newline, no control characters. */
static void copy_message(char *dst, size_t dstlen, const char *src, size_t len)
{
	size_t o = 0;

	if (dstlen == 0)
		return;
	while (len > 0 && (src[len - 1] == '\n' || src[len - 1] == '\r' || src[len - 1] == ' '))
		len--;
	for (size_t i = 0; i < len && o + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[o++] = c == '\n' ? ' ' : (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	dst[o] = '\0';
}

/* Mailprocd::Spam::c_log(level, message): SpamAssassin's log lines into ours. */
XS_INTERNAL(xs_c_log)
{
	dXSARGS;
	char line[1024];
	STRLEN llen, mlen;

	if (items != 2)
		croak_xs_usage(cv, "level, message");
	const char *level = SvPV(ST(0), llen);
	const char *msg = SvPV(ST(1), mlen);
	copy_message(line, sizeof(line), msg, mlen);
	if (strcmp(level, "dbg") == 0)
		log_debug("spamassassin: %s", line);
	else if (strcmp(level, "info") == 0)
		log_info("spamassassin: %s", line);
	else
		log_warn("spamassassin: %s: %s", level, line);
	XSRETURN_EMPTY;
}

static void xs_init(pTHX)
{
	static const char file[] = __FILE__;
	newXS("DynaLoader::boot_DynaLoader", boot_DynaLoader, file);
	newXS("Mailprocd::Spam::c_log", xs_c_log, file);
}

/* The caller's state, restored when Perl returns. */
struct perl_guard {
	sigset_t mask;
	struct sigaction act[NSIG];
	unsigned char have_act[NSIG];
	locale_t locale;                /* thread locale */
	char global_locale[256];
};

static int same_action(const struct sigaction *a, const struct sigaction *b)
{
	return a->sa_handler == b->sa_handler && a->sa_flags == b->sa_flags;
}

static void enter_perl(struct perl_guard *g)
{
	sigset_t alrm;

	g->locale = uselocale((locale_t)0);
	const char *gl = setlocale(LC_ALL, NULL);
	snprintf(g->global_locale, sizeof(g->global_locale), "%s", gl ? gl : "C");
	for (int sig = 1; sig < NSIG; sig++)
		g->have_act[sig] = sig != SIGKILL && sig != SIGSTOP &&
		    sigaction(sig, NULL, &g->act[sig]) == 0;
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	sigprocmask(SIG_UNBLOCK, &alrm, &g->mask);
	if (perl_locale != (locale_t)0)
		uselocale(perl_locale);
}

static void leave_perl(struct perl_guard *g)
{
	alarm(0);
	locale_t was = uselocale(g->locale);
	perl_locale = interp != NULL ? was : (locale_t)0;
	const char *now = setlocale(LC_ALL, NULL);
	if (now == NULL || strcmp(now, g->global_locale) != 0)
		setlocale(LC_ALL, g->global_locale);
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction cur;
		if (g->have_act[sig] && sigaction(sig, NULL, &cur) == 0 &&
		    !same_action(&cur, &g->act[sig]))
			sigaction(sig, &g->act[sig], NULL);
	}
	sigprocmask(SIG_SETMASK, &g->mask, NULL);
}

/* 1 with $@ in err when it is set, else 0. */
static int perl_failed(pTHX_ char *err, size_t errlen)
{
	SV *e = ERRSV;
	STRLEN len;

	if (!SvTRUE(e))
		return 0;
	const char *s = SvPV(e, len);
	copy_message(err, errlen, s, len);
	if (err[0] == '\0')
		snprintf(err, errlen, "Perl died without a message");
	return 1;
}

int pl_started(void)
{
	return interp != NULL;
}

int pl_start(const char *code, size_t len, const char *name, char *err, size_t errlen)
{
	static char arg0[] = "mailprocd", arg1[] = "-e", arg2[] = "0";
	static char *args[] = { arg0, arg1, arg2, NULL };
	struct perl_guard g;
	int argc = 3, rc = -1;
	char **argv = args, **env = environ;

	if (interp != NULL) {
		snprintf(err, errlen, "Perl is started already");
		return -1;
	}
	enter_perl(&g);
	if (!sys_inited) {
		PERL_SYS_INIT3(&argc, &argv, &env);
		sys_inited = 1;
	}
	interp = perl_alloc();
	if (interp == NULL) {
		snprintf(err, errlen, "perl_alloc failed");
		goto out;
	}
	PERL_SET_CONTEXT(interp);
	PerlInterpreter *my_perl = interp;
	perl_construct(my_perl);
	PL_exit_flags |= PERL_EXIT_DESTRUCT_END;
	if (perl_parse(my_perl, xs_init, argc, argv, NULL) != 0 || perl_run(my_perl) != 0) {
		snprintf(err, errlen, "starting the Perl interpreter failed");
		goto fail;
	}

	dSP;
	ENTER;
	SAVETMPS;
	SV *src = newSVpvf("#line 1 \"%s\"\n", name);
	sv_catpvn(src, code, len);
	eval_sv(src, G_SCALAR | G_EVAL);
	SPAGAIN;
	(void)POPs;
	PUTBACK;
	SvREFCNT_dec(src);
	int failed = perl_failed(aTHX_ err, errlen);
	FREETMPS;
	LEAVE;
	if (failed)
		goto fail;
	rc = 0;
	goto out;
fail:
	PL_perl_destruct_level = 1;
	perl_destruct(my_perl);
	perl_free(my_perl);
	interp = NULL;
out:
	leave_perl(&g);
	return rc;
}

static char *copy_sv(pTHX_ SV *sv, size_t *lenp)
{
	STRLEN len;

	if (!SvOK(sv)) {
		*lenp = 0;
		return NULL;
	}
	const char *s = SvPV(sv, len);
	char *p = xmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	*lenp = len;
	return p;
}

int pl_call(const char *sub, const struct pl_arg *args, int nargs,
    struct pl_results *res, char *err, size_t errlen)
{
	struct perl_guard g;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	if (interp == NULL) {
		snprintf(err, errlen, "Perl is not started");
		return -1;
	}
	PerlInterpreter *my_perl = interp;
	enter_perl(&g);

	dSP;
	ENTER;
	SAVETMPS;
	PUSHMARK(SP);
	for (int i = 0; i < nargs; i++) {
		SV *a = args[i].p ? newSVpvn(args[i].p, args[i].len) : newSV(0);
		XPUSHs(sv_2mortal(a));
	}
	PUTBACK;
	int count = call_pv(sub, G_LIST | G_EVAL);
	SPAGAIN;
	if (perl_failed(aTHX_ err, errlen)) {
		rc = -1;
		SP -= count;
	} else if (count > PL_MAX_RESULTS) {
		snprintf(err, errlen, "%s returned %d values (at most %d expected)", sub,
		    count, PL_MAX_RESULTS);
		rc = -1;
		SP -= count;
	} else {
		res->n = count;
		for (int i = count - 1; i >= 0; i--)
			res->v[i] = copy_sv(aTHX_ POPs, &res->len[i]);
	}
	PUTBACK;
	FREETMPS;
	LEAVE;

	leave_perl(&g);
	return rc;
}

void pl_results_free(struct pl_results *res)
{
	for (int i = 0; i < res->n; i++)
		free(res->v[i]);
	memset(res, 0, sizeof(*res));
}

void pl_stop(int exiting)
{
	struct perl_guard g;

	if (interp == NULL)
		return;
	PerlInterpreter *my_perl = interp;
	enter_perl(&g);
	/* Before exit, freeing every SV is wasted time and would copy the
	 * pages a worker shares with the spawner; otherwise clean up fully
	 * so that another interpreter can follow. */
	PL_perl_destruct_level = exiting ? 0 : 1;
	perl_destruct(my_perl);
	perl_free(my_perl);
	interp = NULL;
	leave_perl(&g);
}
