/*
 * mm_config.h - mailmond.conf: the probes (where each is sent, to whom,
 * which maildir it arrives in), their timing, the metrics listener, the
 * alert command and the account to run as.  Strict: unknown keys and bad
 * values are errors reported as `file:line: message`.
 */
#ifndef MM_CONFIG_H
#define MM_CONFIG_H

#include "lib/lmtp_dest.h"

#include <stdint.h>

#define MM_CONFIG_DEFAULT_PATH "/etc/mailprocd/mailmond.conf"
#define MM_MAX_PROBES 64
#define MM_MAX_LISTEN 8
#define MM_PROBE_NAME_MAX 64

struct mm_probe_conf {
	char *name;             /* [A-Za-z0-9_.-], at most MM_PROBE_NAME_MAX */
	int lmtp;               /* 1: LMTP (LHLO), 0: SMTP (EHLO) */
	struct lmtp_dest dest;  /* host and port, or a unix socket path */
	char *target;           /* as written, for logs */
	char *to;               /* the recipient address */
	char *maildir;          /* absolute path of the maildir it arrives in */
	int line;
};

struct mm_listen {
	char *host;             /* without the brackets of [IPv6] */
	char *port;
	int line;
};

struct mm_config {
	const char *path;
	struct mm_probe_conf probe[MM_MAX_PROBES];
	int nprobe;
	struct mm_listen listen[MM_MAX_LISTEN];
	int nlisten;
	uint64_t interval_usec;         /* between two probes of one name */
	uint64_t late_after_usec;       /* unseen that long after sending: late */
	uint64_t lost_after_usec;       /* unseen that long: lost */
	uint64_t timeout_usec;          /* for one whole SMTP/LMTP dialogue */
	char *alert_command;            /* NULL: none */
	uint64_t alert_timeout_usec;    /* an alert still running then: killed */
	char *from;                     /* envelope sender and From: */
	char *helo;                     /* EHLO/LHLO name */
	char *user;                     /* account to become when started as root */
	int user_line;                  /* where user was set, for the check at start */
};

/* Defaults; from and helo are filled by mm_config_load from the host name
 * when the file does not set them. */
void mm_config_defaults(struct mm_config *c);
/* Parse path into c; every problem is passed to report (one line each,
 * without newline).  Returns the number of problems (0: usable). */
int mm_config_load(struct mm_config *c, const char *path, void (*report)(const char *msg));
/* The same from text in memory (path is only used in messages). */
int mm_config_parse_text(struct mm_config *c, const char *path, const char *text,
    void (*report)(const char *msg));
void mm_config_free(struct mm_config *c);

/* "1.5s", "500ms", "60", "5m", "1h", "2d" -> microseconds.  A bare number
 * is seconds.  0, or -1 on a syntax error or more than ten years. */
int mm_parse_duration(const char *s, uint64_t *usec);
/* A probe name as the config allows it: 1, or 0. */
int mm_probe_name_ok(const char *name, size_t len);

#endif
