/*
 * config.h - mailprocd.conf: every setting of SPEC.md, parsed strictly.
 *
 * One setting per line, `key value...`, `#` comments.  Unknown keys, bad
 * values and duplicates are errors reported as `file:line: message`.
 */
#ifndef MP_CONFIG_H
#define MP_CONFIG_H

#include <stdint.h>
#include <sys/types.h>

/* worker_batch_size: its default and its largest value. */
#define WORKER_BATCH_DEFAULT 16
#define WORKER_BATCH_MAX 64

enum listen_proto { LISTEN_SMTP, LISTEN_LMTP, LISTEN_POLICY, LISTEN_METRICS };

struct listen_spec {
	enum listen_proto proto;
	int is_unix;
	char *host;             /* TCP: address (numeric or name) */
	char *port;             /* TCP: port */
	char *path;             /* unix: socket path */
	mode_t mode;            /* unix: default 0666 */
	char *group;            /* unix: group name or NULL */
	char *owner;            /* unix: owner account name or NULL */
	uid_t owner_uid;        /* unix: owner, resolved at load (owner != NULL) */
	int line;               /* where it was set, for later checks */
};

#define CONFIG_MAX_LISTEN 32

enum members_source_kind { MEMBERS_NONE, MEMBERS_FILE, MEMBERS_MAILMAN3 };
#define CONFIG_MAX_RETRIES 32

struct config {
	char *path;                     /* the file this came from */
	char *hostname;
	struct listen_spec listen[CONFIG_MAX_LISTEN];
	int nlisten;
	char *user;                     /* unprivileged account (root mode) */
	char *queue_dir;
	char *db_dir;
	char *db_source_dir;
	char *run_dir;
	char *home_base;                /* single-user mode: ~ of account X is home_base/X */
	uint64_t max_message_size;
	uint64_t max_sessions;
	uint64_t max_sessions_per_client;   /* per IP address; 0 = no limit */
	uint64_t max_recipients;        /* per transaction */
	uint64_t session_timeout;       /* seconds */
	char *default_delivery;         /* one rules instruction, e.g. "maildir ~/Maildir/" */
	uint64_t workers_per_user;
	uint64_t worker_batch_size;     /* jobs a worker holds at once (1..WORKER_BATCH_MAX) */
	uint64_t worker_idle_timeout;   /* seconds */
	int delivery_nice;              /* added to the nice value of the qmgr, the spawner
	                                 * (so its workers) and the relay: 0 to 19 */
	char *relay_host;
	uint64_t retry_schedule[CONFIG_MAX_RETRIES]; /* seconds */
	int nretry;
	uint64_t max_queue_lifetime;    /* seconds */
	char recipient_delimiter;       /* '\0' when none */
	uint64_t max_workers;
	uint64_t minimum_uid;           /* root mode: no worker runs with a lower uid */
	uint64_t max_active_messages;   /* messages the qmgr holds in memory */
	uint64_t pipe_timeout;
	uint64_t body_match_limit;      /* decoded body text `body` conditions see */
	uint64_t delay_warning_time;    /* 0 = none */
	int spam_engine;                /* 0 none, 1 spamassassin */
	int spam_network_tests;
	uint64_t spam_max_size;
	uint64_t spam_timeout;
	uint64_t spam_max_checks;
	uint64_t spam_learn_sync;
	uint64_t spam_concurrency;      /* checks at once, all users; 0 = one per core */
	char *mail_spool_group;         /* root mode: the group of /var/mail, for lock
	                                 * files there; NULL = none */
	uint64_t mbox_lock_timeout;     /* seconds an mbox delivery waits for its locks */
	uint64_t stop_grace_time;       /* seconds work in flight may go on after SIGTERM */
	uint64_t queue_scan_interval;   /* seconds between the qmgr's rescans of the queue */
	uint64_t relay_idle_timeout;    /* seconds a relay connection stays open without work */
	/* the policy service (issue 10) */
	char *state_dir;                /* owned by user: policy.mdb, greylist.mdb;
	                                 * default db_dir/state */
	uint64_t policy_sync_interval;  /* seconds between scans of users' policy files; 0 = off */
	uint64_t greylist_delay;        /* seconds a new triplet waits */
	uint64_t greylist_max_age;      /* a retry later than this starts over */
	uint64_t greylist_auto_allow;   /* passes after which a client skips greylisting; 0 = never */
	char *redis_host;               /* policy_state redis:HOST:PORT, else NULL (lmdb) */
	char *redis_port;
	/* mailing lists (issue 11) */
	int members_source;             /* MEMBERS_NONE, MEMBERS_FILE, MEMBERS_MAILMAN3 */
	char *members_url;              /* mailman3: the REST root, e.g. http://127.0.0.1:8001/3.1 */
	char *members_credentials;      /* mailman3: USER:PASSWORD (HTTP basic auth) */
	uint64_t members_sync_interval; /* seconds between fetches of the members */
	uint64_t generation;            /* 0 at start, +1 at each reload (not a setting) */
	int set_line[64];               /* line each setting of the table was set on; 0 = default */
};

#define CONFIG_MAX_SIZE (1024 * 1024)
#define CONFIG_DEFAULT_PATH "/etc/mailprocd/mailprocd.conf"

/* Fill c with the defaults. */
void config_defaults(struct config *c);
/* Parse a file over the defaults.  Returns the number of errors; each one is
 * printed through `report` (default: stderr) as "file:line: message". */
int config_load(struct config *c, const char *path,
    void (*report)(const char *msg));
/* The same from the text in fd (read with pread from offset 0; at most
 * CONFIG_MAX_SIZE bytes), errors named after `name`: what a child parses
 * when the master hands it the file it validated at a reload. */
int config_load_fd(struct config *c, int fd, const char *name,
    void (*report)(const char *msg));
/* The line of the file where key was set (the last listen for listen), or
 * 0 when it kept its default: for checks made after parsing. */
int config_line(const struct config *c, const char *key);
/* Free the listen lines' strings; nlisten becomes 0. */
void config_free_listen(struct config *c);
void config_free(struct config *c);

#endif
