/*
 * qmgr_private.h - the qmgr's state, shared by its files:
 *   qmgr.c       process entry, event loop, signals, queue scans
 *   scheduler.c  messages, recipients, jobs, results, retries
 *   workers.c    the worker pool: spawn requests, job hand-off, idle retirement
 *   relay_link.c jobs for the relay (forwards and bounces) and its results
 *   outbound.c   new queue files the qmgr writes: forwards, bounces and delay
 *                warnings (DSNs)
 *   checks.c     spam check turns (spam_concurrency) and their watchdog
 *   verdicts.c   uid=/gid= parts waiting for their primary part's spam verdict
 *   stop.c       the graceful stop: the grace time, what was cut short
 *   backlog.c    what waits on disk, not loaded: its index (diskindex.c),
 *                the scans of the queue, the refill of the active set
 *   figures.c    the qmgr's metrics: queue, deliveries, delays, spam checks,
 *                workers (metrics/qmgr_figures.h)
 */
#ifndef MP_QMGR_PRIVATE_H
#define MP_QMGR_PRIVATE_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "conf/config.h"
#include "deliver/deliver.h"
#include "lib/buf.h"
#include "queue/qfile.h"

struct event;
struct event_base;
struct db;
struct strmap;
struct user;

/* Where a message's file is; incoming/ only until the qmgr takes it. */
enum qdir { QDIR_ACTIVE, QDIR_DEFERRED, QDIR_INCOMING, QDIR_COUNT };

/* The results of a recipient's parts so far, while others still run. */
struct rcpt_partial {
	struct delivery_result result;  /* the worst so far */
	struct buf where;
	char *forward;
	struct buf done;        /* the parts' done lists, "N,M" */
	uint64_t started_usec;  /* when the first part's attempt began (0: none did) */
};

struct qmsg {
	char qid[QID_MAX];
	enum qdir dir;
	struct qfile qf;
	unsigned char *busy;    /* per recipient: parts in jobs not finished */
	unsigned char *unrecorded;      /* per recipient: its result is in memory,
	                         * not yet in the queue file (msg_record) */
	struct rcpt_partial **partial;  /* per recipient, while busy > 1; lazily */
	int njobs;              /* jobs waiting or running */
	struct event *retry_ev; /* while deferred (retries and the delay warning) */
	struct event *settle_ev;        /* waiting to try again to record its results
	                         * or queue its bounce (disk full) */
	int bounced;            /* its bounce is queued (or none was needed) */
	int unremovable;        /* finished, but its file cannot be removed: kept,
	                         * never delivered again (logged once) */
	time_t due;             /* while waiting in deferred/: when its timer fires */
	TAILQ_ENTRY(qmsg) waiting;      /* in Q.waiting while in_waiting */
	int in_waiting;
	time_t next_retry;
	int retry_now;          /* the next retry is due at once, not by retry_schedule */
	time_t warn_retry;      /* its delay warning could not be queued: not before then */
	struct user **spam_stopped;     /* users whose check of it was stopped */
	size_t nspam_stopped;
	struct job **held;      /* jobs of uid=/gid= parts waiting for verdicts */
	size_t nheld;
	size_t fig_heap;        /* figures.c: its place in the arrival heap + 1 */
	int fig_state;          /* figures.c: the queue state it is counted in */
	uint32_t lane_tag;      /* backlog.c: its user's tag (0: not known) */
};

/* The spam verdict of a recipient's primary part, which its uid=/gid=
 * parts run with (they do not check the message themselves). */
struct part_verdict {
	int state;              /* VERDICT_NONE, _UNCHECKED, _CHECKED (msgtypes.h) */
	int is_spam;
	int64_t score_milli;
	char *headers;          /* the lines the primary's copy got, or NULL */
};

struct job_rcpt {
	size_t index;
	uint64_t rules_version;  /* of the entry run was made from (qfile_rules_version);
	                          * the worker reads the entry itself and runs it only
	                          * when it is still this one */
	int have_result;
	struct delivery_result *result; /* NULL until it has one (job_rcpt_result):
	                         * a waiting job's recipients hold none */
	char *where;
	char *forward;          /* addresses the rules forward to, comma-separated */
	char *run;              /* which instructions: "all", "primary", "only:N,..." */
	char *done;             /* of those, the maildir/mbox/pipe instructions
	                         * that delivered ("N,M"), or NULL */
	int awaiting_verdict;   /* a uid=/gid= part waiting for the primary's verdict */
	struct part_verdict verdict;    /* uid=/gid= parts: what they run with */
};

enum job_kind { JOB_DELIVER = 0, JOB_LEARN };

struct job {
	TAILQ_ENTRY(job) entry;
	enum job_kind kind;
	struct qmsg *msg;       /* NULL for a learn job */
	struct user *user;      /* NULL for a relay job */
	int ctl_fd;             /* learn: the mailprocctl connection to answer */
	int learn_fd;           /* learn: the message */
	int learn_spam;
	uint64_t relay_id;      /* relay jobs: the id the relay answers with */
	char *lmtp_dest;        /* relay jobs for a list manager: its LMTP
	                         * destination ("lmtp:HOST:PORT", "lmtp:unix:PATH");
	                         * NULL: SMTP to relay_host */
	time_t relay_sent;
	uint64_t started_usec;  /* wall clock when it went to the worker or the
	                         * relay (0: it never did): the attempt's start */
	int spam_counted;       /* its spam verdict is in the figures */
	size_t n;
	struct job_rcpt *rcpt;
	size_t bytes;           /* delivery jobs: the MSG_JOB payload so far */
	int for_verdicts;       /* holds uid=/gid= parts that wait for verdicts
	                         * (never mixed with parts that do not: two users'
	                         * jobs could wait for each other) */
	int held;               /* parts still waiting (verdicts.c) */
};
TAILQ_HEAD(job_list, job);

struct worker {
	TAILQ_ENTRY(worker) entry;
	TAILQ_ENTRY(worker) all_entry;  /* in Q.all_workers */
	pid_t pid;
	int fd;
	struct event *read_ev;
	struct event *idle_ev;
	struct user *user;
	struct job *job;        /* the first of held (whose results come next),
	                         * NULL when idle */
	struct job_list held;   /* jobs handed over and not yet done, in the
	                         * order sent: up to worker_batch_size */
	unsigned nheld;
	time_t idle_since;
	time_t started;
	unsigned long jobs;     /* jobs done */
	unsigned long checks;   /* spam checks done, as the worker last said */
	int dead;               /* a send failed: no more jobs */
	enum { CHECK_NONE, CHECK_WAITING, CHECK_RUNNING } check;
	TAILQ_ENTRY(worker) check_entry;        /* in Q.checks while not CHECK_NONE */
	struct timespec check_since;    /* when it began waiting, then running */
	int check_stopped;      /* the watchdog asked the spawner to kill it */
	uint64_t generation;    /* of the configuration it was forked with */
	int fig_state;          /* figures.c: the state it is counted in + 1 */
};
TAILQ_HEAD(worker_list, worker);
TAILQ_HEAD(check_list, worker);

/* A delivery identity: one account with one uid/gid. */
struct user {
	TAILQ_ENTRY(user) ring;
	int in_ring;
	char *key;
	uid_t uid;
	gid_t gid;
	char *account;
	char *home;
	/* an address (and part: DB_PART_PRIMARY or a uid=/gid= instruction)
	 * that resolves to this identity, the last one seen: a spawn request
	 * names it, for the spawner checks the identity in the databases */
	char *witness;
	uint32_t witness_part;
	struct job_list waiting;
	struct worker_list workers;
	int nworkers;
	int spawning;
	int checks_running;
	uint32_t lane_tag;      /* backlog.c: its tag (backlog_tag; 0: not yet) */
};
TAILQ_HEAD(user_list, user);

struct spawn_req {
	TAILQ_ENTRY(spawn_req) entry;
	uint32_t id;
	struct user *user;
	time_t sent;
};
TAILQ_HEAD(spawn_list, spawn_req);
TAILQ_HEAD(qmsg_list, qmsg);

struct qmgr {
	const struct config *cfg;       /* swapped in place by a reload */
	int root_mode;
	struct event_base *base;
	struct db *db;
	int spawner_fd;
	struct strmap *msgs;            /* qid -> struct qmsg: the active set */
	size_t peak_msgs;               /* the most messages loaded at once */
	struct qmsg_list waiting;       /* deferred, waiting for a timer: the ones that
	                                 * make room when the active set is full */
	int backlog;                    /* messages left on disk for lack of room */
	unsigned long evicted;          /* waiting messages put back to disk */
	struct strmap *users;           /* key -> struct user */
	struct user_list ring;          /* users with waiting jobs, round-robin */
	struct spawn_list spawns;
	uint32_t next_spawn_id;
	int nworkers;                   /* all users */
	struct worker_list all_workers; /* every user's, linked by all_entry:
	                                 * make_room looks at workers, not at
	                                 * every user that ever had mail */
	int nspawning;
	struct check_list checks;       /* workers waiting for a check turn or checking */
	int checks_running;
	int check_slots;                /* spam_concurrency, resolved */
	int stopping;
	int queue_dirfd[QDIR_COUNT];    /* active/, deferred/, incoming/ */
	char *self_home;                /* single-user mode: the daemon user's home */
	time_t started;
};

extern struct qmgr Q;

/* scheduler.c */
/* Load qid from dir and schedule it.  0 when it is loaded, was already, or
 * is not to be loaded (gone, not committed, not due: see sched_due); -1
 * when the active set is full (max_active_messages): it stays on disk and
 * Q.backlog is set. */
int sched_load(const char *qid, enum qdir dir);
/* Whether the active set has room for one more message, making it by
 * putting a waiting deferred message back to disk if need be. */
int sched_room(void);
/* Try again to remove the finished files that could not be removed. */
void sched_retry_unremovable(void);
void sched_job_finished(struct job *job);
/* A delivery job could not run (or ended early): its recipients without a
 * result get a temporary failure with reason, then as sched_job_finished. */
void sched_job_failed(struct job *job, const char *reason);
void sched_retry_all_now(void);
void sched_free_all(void);
void sched_job_free(struct job *job);
/* jr's result, made (zeroed) when it is first needed. */
struct delivery_result *job_rcpt_result(struct job_rcpt *jr);
/* jr's result is a temporary failure (4.3.0) for reason. */
void job_rcpt_tempfail(struct job_rcpt *jr, const char *reason);

/* backlog.c */
void backlog_init(void);
void backlog_free(void);
/* List the queue directories into the index, a slice at a time (again
 * after the one under way, if one is). */
void backlog_scan(void);
/* Messages left on disk for lack of room: load them as room frees, new
 * mail (incoming/, active/) and due deferred mail in turns. */
void qmgr_refill_soon(void);
/* m, deferred, goes back to disk until m->due. */
void backlog_put_msg(const struct qmsg *m);
/* A file left on disk for lack of room (st: a deferred one's, for its
 * due time and tag; NULL for new mail). */
void backlog_put_file(const char *qid, enum qdir dir, const struct stat *st);
/* qid is loaded: no longer on disk only. */
void backlog_loaded(const char *qid);
/* The tag of u's deferred mail (NULL: mail for the relay): a number from
 * its key, 1..999999, kept in the nanoseconds of the mtime of its files
 * put back to disk (backlog_mtime_nsec), so that a scan after a restart
 * puts them in u's lane again. */
uint32_t backlog_tag(struct user *u);
long backlog_mtime_nsec(const struct qmsg *m);
void backlog_status(struct buf *b);
/* A flush: the files of deferred/ not loaded are due now, and retried
 * at once when loaded (their mtime set to QMGR_MTIME_FLUSHED). */
void qmgr_flush_disk(void);
#define QMGR_MTIME_FLUSHED 0

/* removals.c */
/* Empty finished/ (finished_fd, owned; -1: there is none and files are
 * unlinked in place), start the thread that makes removals durable. */
void removals_start(int finished_fd);
/* Take the finished file qid out of dir now (into finished/); its removal
 * is made durable (an fsync of dir) soon after, with the others made
 * meanwhile, and the file unlinked then, without waiting for either.  -1
 * with errno when it could not be removed. */
int removals_remove(enum qdir dir, const char *qid);
/* At the end: wait until every removal is durable, stop the thread. */
void removals_close(void);

/* workers.c */
void workers_dispatch(void);
void workers_spawn_reply(int ok, uint32_t id, pid_t pid, int fd, const char *reason);
void workers_check_spawn_timeouts(void);
void workers_close_all(void);
int workers_busy(void);
/* After a reload: idle workers forked with an older configuration leave
 * now, busy ones after their job (new ones get the new settings). */
void workers_retire_stale(void);
/* Take the first job w holds (its results came, or it is cut short);
 * w->job becomes the next one, NULL when none is left. */
struct job *worker_take_job(struct worker *w);
void user_enqueue(struct user *u, struct job *job);
/* The size of a MSG_JOB for m without recipients, and what each recipient
 * part with this run list adds: the scheduler fills jobs up to
 * IPC_MAX_PAYLOAD. */
size_t job_head_bytes(const struct qmsg *m);
size_t job_part_bytes(const char *run, int for_verdict);

/* verdicts.c: the uid=/gid= parts of a recipient whose entry wants a spam
 * verdict wait for the primary part's, and run with it. */
/* A job of such parts (job->held of them): queued once all came. */
void verdicts_hold(struct qmsg *m, struct job *job);
/* The primary part of recipient index reported its verdict. */
void verdicts_got(struct qmsg *m, size_t index, const struct part_verdict *v);
/* job ended: parts still waiting for a verdict from one of its recipients
 * will not get one; they fail (temporarily) without running. */
void verdicts_job_over(struct job *job);
/* m is freed: its held jobs go too. */
void verdicts_free(struct qmsg *m);
void part_verdict_free(struct part_verdict *v);

/* The delivery identity of a resolved address (NULL, err set, when it has
 * no account in root mode). */
struct db_resolution;
struct user *sched_user_for(const struct db_resolution *r, char *err, size_t errlen);

/* checks.c */
void checks_init(void);
/* spam_concurrency (again, after a reload). */
void checks_set_slots(void);
/* MSG_CHECK_WAIT from w: it gets its turn now or when one is free. */
void checks_wait(struct worker *w);
/* MSG_CHECK_END from w. */
void checks_end(struct worker *w);
/* w is going away: whatever turn it held or waited for is given up. */
void checks_forget(struct worker *w);
/* From the periodic timer: stop the checks that overran spam_timeout. */
void checks_watchdog(void);
/* Whether m's check for u was stopped (its next job skips the check). */
int checks_skip(const struct qmsg *m, const struct user *u);

/* figures.c: the qmgr's figures in its metrics region (see there) */
/* At start: the gauges begin from zero (the counters go on). */
void figures_start(void);
/* m came into the active set, moved between active/ and deferred/
 * (m->dir), or leaves it: to disk to wait (figures_msg_to_disk) or
 * for good. */
void figures_msg_in(struct qmsg *m);
void figures_msg_moved(struct qmsg *m);
void figures_msg_out(struct qmsg *m);
void figures_msg_to_disk(struct qmsg *m);
/* A message stays on disk for lack of room (counted until the next scan
 * counts again). */
void figures_msg_left_on_disk(const char *qid, enum qdir dir);
/* A scan of the queue directories begins: messages put back to disk from
 * now on are added to what it counts, figures_disk. */
void figures_scan_begin(void);
/* What the last scan of the queue left on disk, not loaded; oldest_usec 0
 * when nothing. */
void figures_disk(size_t active, size_t deferred, uint64_t oldest_usec);
/* The arrival time in a queue id (qid.c), 0 when it has none. */
uint64_t figures_qid_usec(const char *qid);
/* corrupt/: counted now, or one more moved there. */
void figures_corrupt_scan(const char *queue_dir);
void figures_corrupt_add(void);
/* One recipient's result (r->action its kind), of the attempt that began
 * at started_usec (0: none, it failed before a worker or the relay had it);
 * a final one (delivered, bounced) also gives one delay per stage. */
void figures_result(const struct qmsg *m, const struct delivery_result *r,
    uint64_t started_usec);
/* A recipient expired (bounced without an attempt). */
void figures_expired(const struct qmsg *m);
void figures_bounce(void);
uint64_t figures_now_usec(void);
/* A job's spam verdict (VERDICT_UNCHECKED or _CHECKED), once per job; the
 * duration of a check turn that began at since (CLOCK_MONOTONIC). */
void figures_spam_verdict(uint32_t verdict, int is_spam);
void figures_spam_duration(const struct timespec *since);
/* w's state may have changed (job, check turn); w is removed; the number
 * of spawn requests in flight changed. */
void figures_worker(struct worker *w);
void figures_worker_gone(struct worker *w);
void figures_spawning(void);

/* control.c */
void control_init(int listen_fd);
void control_close(void);
/* A learn job is done (or failed): answer mailprocctl, free the job. */
void control_learn_done(struct job *job, int ok, const char *text);

/* relay_link.c */
void relay_init(int fd);
void relay_enqueue(struct job *job);
void relay_dispatch(void);
void relay_check_timeouts(void);
/* Jobs handed to the relay and not answered yet. */
int relay_inflight(void);
void relay_close(void);

/* stop.c */
/* SIGTERM: no new jobs; those in flight get stop_grace_time. */
void stop_begin(void);
/* Stopping and nothing in flight (or the grace time over, what was cut
 * logged): end the loop. */
void stop_check(void);
void stop_free(void);

/* outbound.c */
/* Queue a copy of m for the relay to addrs (n of them) with the original
 * envelope sender and "Delivered-To: <rcpt>" on top, where rcpt is
 * recipient index of m, the one that forwards.  Its queue id is m's, 'F'
 * and index: when that is queued already (a second try after a crash),
 * nothing is written.  0, or -1 (logged) when it could not be made
 * durable. */
int outbound_forward(const struct qmsg *m, size_t index, const char *const *addrs, size_t n);
/* Queue one delivery status notification to m's sender listing every
 * recipient that bounced or expired.  0 when done or not needed (null
 * sender, nothing failed), -1 (logged) when it could not be made durable. */
int outbound_bounce(const struct qmsg *m);
/* Queue one delay warning (a DSN with Action: delayed) to m's sender
 * listing every recipient still pending, with the status of its last
 * error.  0 when done or not needed (null sender, nothing pending), -1
 * (logged) when it could not be made durable. */
int outbound_delay_warning(const struct qmsg *m);

#endif
