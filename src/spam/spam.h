/*
 * spam.h - the embedded SpamAssassin engine (Perl inside the process).
 *
 * The spawner (root) loads Perl and SpamAssassin once and compiles the
 * rules before it forks any worker; each per-user worker is a fork of it
 * that drops privileges, switches SpamAssassin to its user and then checks
 * many messages with the per-user Bayes data kept open.  One interpreter
 * per process; not thread-safe.
 *
 * SpamAssassin owns SIGALRM (its time limits use alarm()): callers must not
 * use alarm() themselves, and must not rely on C signal handlers for
 * SIGALRM surviving a call (Perl re-installs handlers).  Each call unblocks
 * SIGALRM while Perl runs and restores the caller's signal mask afterwards,
 * so a worker that blocks signals for signalfd still gets working limits.
 */
#ifndef MP_SPAM_H
#define MP_SPAM_H

#include <stddef.h>

struct spam_settings {
	int network_tests;          /* config spam_network_tests: 0 = local_tests_only */
	unsigned timeout_s;         /* config spam_timeout: SA's time_limit for one check (0: none) */
	const char *site_config_dir;/* NULL: SpamAssassin's defaults (/etc/spamassassin, local.cf honoured) */
};

/* In the spawner, as root, before any fork: perl_construct/parse with
 * xs_init booting DynaLoader, Mail::SpamAssassin->new (with the settings),
 * compile_now(0,1).  0 or -1 with err. */
int spam_engine_load(const struct spam_settings *s, char *err, size_t errlen);
int spam_engine_loaded(void);

/* In a forked worker after it dropped to the user's uid/gid: switch SA to
 * this user (user_dir=home, userstate_dir=home/.spamassassin, cached paths
 * cleared, ~/.spamassassin/user_prefs read with read_scoreonly_config so
 * that admin options such as bayes_path are refused; an empty Bayes
 * database created when there is none; learning goes to the journal).
 * A process serves one user: calling it again for another user fails.
 * 0 or -1 with err. */
int spam_engine_user(const char *user, const char *home, char *err, size_t errlen);

struct spam_verdict {
	int is_spam;
	double score, required;
	char tests[512];            /* tests hit, comma-separated, truncated at a comma */
	char *headers;              /* malloc'd: the header lines SpamAssassin's add_header config asks
	                             * for this verdict ("X-Spam-Flag: YES\nX-Spam-Level: ***\n
	                             * X-Spam-Status: Yes, score=..."), LF ends, folded lines kept */
	int timed_out;              /* time_limit hit: partial result, caller delivers unscored */
	int autolearned;            /* SpamAssassin learned it (bayes_auto_learn), to the journal */
	unsigned ms;                /* wall time of the check */
	unsigned cpu_ms;            /* CPU time of the check (the process's user + system): ms less
	                             * this is time the check waited for the processor */
};

/* Check one message (bytes as stored: LF line ends).  0 or -1 with err
 * (then no verdict; spam_verdict_free on it is harmless).  Needs
 * spam_engine_user first. */
int spam_engine_check(const char *msg, size_t len, struct spam_verdict *v, char *err, size_t errlen);
void spam_verdict_free(struct spam_verdict *v);

/* Learn as spam (is_spam 1) or ham, into the journal.  0 or -1 with err.
 * (A message learned already is not an error; Bayes off for the user is.) */
int spam_engine_learn(const char *msg, size_t len, int is_spam, char *err, size_t errlen);

/* Sync the Bayes journal into the database (every spam_learn_sync, and at exit). */
int spam_engine_sync(char *err, size_t errlen);

/* Before the worker exits: sync, finish, perl_destruct.  Also fine in a
 * process that never called spam_engine_user (no sync then). */
void spam_engine_shutdown(void);

#endif
