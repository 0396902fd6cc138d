/*
 * ctl.h - the subcommands of mailprocctl and the helpers they share.
 * Private to src/ctl.
 *
 * Each command returns the exit status: CTL_OK, CTL_ERROR (something
 * failed; said on stderr) or CTL_USAGE.
 */
#ifndef MP_CTL_H
#define MP_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/log.h"

struct config;

enum { CTL_OK = 0, CTL_ERROR = 1, CTL_USAGE = 2 };

/* args: the words after the command words (db lookup ADDRESS -> ADDRESS). */
int ctl_db_compile(const struct config *cfg, char **args, int nargs);
int ctl_db_lookup(const struct config *cfg, char **args, int nargs);
int ctl_queue_list(const struct config *cfg, char **args, int nargs);
int ctl_queue_show(const struct config *cfg, char **args, int nargs);
int ctl_queue_delete(const struct config *cfg, char **args, int nargs);
int ctl_queue_flush(const struct config *cfg, char **args, int nargs);
int ctl_test(const struct config *cfg, char **args, int nargs);
int ctl_learn(const struct config *cfg, char **args, int nargs);
int ctl_status(const struct config *cfg, char **args, int nargs);
int ctl_policy_sync(const struct config *cfg, char **args, int nargs);
int ctl_policy_show(const struct config *cfg, char **args, int nargs);
int ctl_policy_check(const struct config *cfg, char **args, int nargs);
int ctl_lists_sync(const struct config *cfg, char **args, int nargs);

/* The queue subdirectories a command looks in, in order. */
#define CTL_QUEUE_NDIRS 4
extern const char *const ctl_queue_dirs[CTL_QUEUE_NDIRS];
/* Open queue_dir/dir/qid read-only, refusing symlinks.  -1 with errno. */
int ctl_queue_open(const char *queue_dir, const char *dir, const char *qid);
struct qrcpt;
/* "PREFIX<addr> state=S attempts=N [error="TEXT"]" and a newline. */
void ctl_print_recipient(const char *prefix, const struct qrcpt *r);

/* The message on standard input, CRLF made LF as the queue stores it,
 * NUL-terminated (malloc'd; *len without the NUL); NULL (said, prefixed
 * with cmd) when it is larger than max or cannot be read. */
char *ctl_read_message(const char *cmd, uint64_t max, size_t *len);

/* "mailprocctl: message" on stderr. */
void ctl_error(const char *fmt, ...) MP_PRINTF(1, 2);
/* Root mode (run as root with a `user` in the config): become that user
 * for good, as the daemon's unprivileged processes run, before touching
 * what they own.  0, or -1 after an error naming `what` (the command). */
int ctl_become_daemon_user(const struct config *cfg, const char *what);

/* An age in seconds as "42s", "5m", "3h12m", "2d4h". */
void ctl_format_age(int64_t seconds, char *out, size_t outlen);
/* Print s in double quotes, with " and \ escaped and control characters
 * as \xNN. */
void ctl_print_quoted(const char *s);

#endif
