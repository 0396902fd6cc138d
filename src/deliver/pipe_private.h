/*
 * pipe_private.h - the parts of pipe delivery around the child process:
 * its environment, its set-up between fork and exec, and turning its
 * output into one printable line (internal to src/deliver).
 */
#ifndef MP_DELIVER_PIPE_PRIVATE_H
#define MP_DELIVER_PIPE_PRIVATE_H

#include "deliver/deliver.h"

#define PIPE_ENV_VARS 8

/* The command's whole environment, built before fork. */
struct pipe_env {
	char *vars[PIPE_ENV_VARS + 1];  /* "NAME=value", NULL-terminated */
	char *user;                     /* as in USER, for log lines */
	char *home;                     /* as in HOME, the working directory */
};

/* SENDER, RECIPIENT, EXTENSION, USER, LOGNAME, HOME from m (user and home
 * from the euid's passwd entry when m has none), SHELL=/bin/sh and a fixed
 * PATH.  Control characters in values become '?'. */
void pipe_env_build(const struct delivery_msg *m, struct pipe_env *e);
void pipe_env_free(struct pipe_env *e);

/* In the child after fork: own process group, default signal dispositions
 * and an empty mask, in_fd as stdin, out_fd as stdout and stderr, every
 * other descriptor closed, umask 077, cwd home (or /), then exec
 * /bin/sh -c command.  Exits 75 (EX_TEMPFAIL) if the exec fails. */
_Noreturn void pipe_exec_child(int in_fd, int out_fd, const char *command,
    const struct pipe_env *e);

/* Copy len bytes at p into out as one printable ASCII line: control
 * characters and runs of white space become one space, other bytes outside
 * ASCII '?', leading and trailing space dropped; "..." marks a cut. */
void pipe_printable(const char *p, size_t len, char *out, size_t outlen);

#endif
