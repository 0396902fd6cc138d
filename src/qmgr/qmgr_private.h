/*
 * qmgr_private.h - the qmgr's state, shared by its files:
 *   qmgr.c       process entry, event loop, signals, queue scans
 *   scheduler.c  messages, recipients, jobs, results, retries
 *   workers.c    the worker pool: spawn requests, job hand-off, idle retirement
 */
#ifndef MP_QMGR_PRIVATE_H
#define MP_QMGR_PRIVATE_H

#include <sys/queue.h>
#include <sys/types.h>
#include <time.h>

#include "conf/config.h"
#include "deliver/deliver.h"
#include "queue/qfile.h"

struct event;
struct event_base;
struct db;
struct strmap;
struct user;

/* Where a message's file is; incoming/ only until the qmgr takes it. */
enum qdir { QDIR_ACTIVE, QDIR_DEFERRED, QDIR_INCOMING, QDIR_COUNT };

struct qmsg {
	char qid[QID_MAX];
	enum qdir dir;
	struct qfile qf;
	unsigned char *busy;    /* per recipient: part of a job not finished */
	int njobs;              /* jobs waiting or running */
	struct event *retry_ev; /* while deferred */
	time_t next_retry;
};

struct job_rcpt {
	size_t index;
	char *extension;
	char *home;
	void *rules;
	size_t rules_len;
	int have_result;
	struct delivery_result result;
	char *where;
};

struct job {
	TAILQ_ENTRY(job) entry;
	struct qmsg *msg;
	struct user *user;
	size_t n;
	struct job_rcpt *rcpt;
};
TAILQ_HEAD(job_list, job);

struct worker {
	TAILQ_ENTRY(worker) entry;
	pid_t pid;
	int fd;
	struct event *read_ev;
	struct event *idle_ev;
	struct user *user;
	struct job *job;        /* NULL when idle */
	time_t idle_since;
	int dead;               /* a send failed: no more jobs */
};
TAILQ_HEAD(worker_list, worker);

/* A delivery identity: one account with one uid/gid. */
struct user {
	TAILQ_ENTRY(user) ring;
	int in_ring;
	char *key;
	uid_t uid;
	gid_t gid;
	char *account;
	char *home;
	struct job_list waiting;
	struct worker_list workers;
	int nworkers;
	int spawning;
};
TAILQ_HEAD(user_list, user);

struct spawn_req {
	TAILQ_ENTRY(spawn_req) entry;
	uint32_t id;
	struct user *user;
	time_t sent;
};
TAILQ_HEAD(spawn_list, spawn_req);

struct qmgr {
	const struct config *cfg;
	int root_mode;
	struct event_base *base;
	struct db *db;
	int spawner_fd;
	struct strmap *msgs;            /* qid -> struct qmsg */
	struct strmap *users;           /* key -> struct user */
	struct user_list ring;          /* users with waiting jobs, round-robin */
	struct spawn_list spawns;
	uint32_t next_spawn_id;
	int nworkers;                   /* all users */
	int nspawning;
	int stopping;
	int queue_dirfd[QDIR_COUNT];    /* active/, deferred/, incoming/ */
	char *self_home;                /* single-user mode: the daemon user's home */
};

extern struct qmgr Q;

/* scheduler.c */
void sched_load(const char *qid, enum qdir dir);
void sched_job_finished(struct job *job);
void sched_retry_all_now(void);
void sched_free_all(void);
void job_free(struct job *job);

/* workers.c */
void workers_dispatch(void);
void workers_spawn_reply(int ok, uint32_t id, pid_t pid, int fd, const char *reason);
void workers_check_spawn_timeouts(void);
void workers_close_all(void);
int workers_busy(void);
void user_enqueue(struct user *u, struct job *job);

#endif
