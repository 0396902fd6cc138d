/*
 * qmgr.c - the queue manager process: start-up, event loop, signals.
 *
 * At start it loads the messages in deferred/, active/ and (committed)
 * incoming/, up to max_active_messages (the active set).  New messages are
 * announced by the receiver (MSG_QUEUE_NEW) and taken from incoming/ into
 * active/; a rescan every minute catches any announcement that was lost.
 * What does not fit in the active set stays on disk and is loaded as room
 * frees (a refill), new mail and due deferred mail in turns so that
 * neither starves the other; a file in deferred/ is due when its mtime
 * (set when its message was put back to disk) has come.  SIGUSR1 (from
 * `mailprocctl queue flush` through the master) retries deferred mail now.
 * SIGTERM stops handing out jobs, waits for the jobs in flight at the
 * workers and the relay (stop.c), and exits.
 */
#include "qmgr/qmgr.h"
#include "qmgr/qmgr_private.h"
#include "conf/config_swap.h"
#include "db/db.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/strmap.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_SECONDS 5

struct qmgr Q;

static struct ipc_msg rmsg;
/* The rescan of the queue every queue_scan_interval, and the interval it
 * runs at (to re-arm it when a reload changes the setting). */
static struct event *rescan_ev;
static uint64_t rescan_interval;

static struct event *refill_ev;
/* Whose turn it is at the next room in the active set: due deferred mail
 * (1) or new mail (0).  Kept across refills: when room frees one message
 * at a time, a refill that always began with new mail would never load
 * deferred mail while new mail waits. */
static int deferred_turn;

/* Queue ids on disk not loaded yet, each with the time it is due: the
 * mtime of a file in deferred/ (only those due by now are taken), the
 * arrival order of new mail (its queue id begins with the time). */
struct qid_list {
	struct qid_entry {
		char qid[QID_MAX];
		enum qdir dir;
		time_t due;
	} *v;
	size_t n, cap;
};

/* Files on disk not loaded and not listed (deferred, not due yet; all of
 * them when there is no list), for the figures: how many, and the oldest
 * arrival (0: none). */
struct disk_left {
	size_t n;
	uint64_t oldest_usec;
};

static void disk_left_add(struct disk_left *left, const char *qid)
{
	uint64_t a = figures_qid_usec(qid);
	left->n++;
	if (a != 0 && (left->oldest_usec == 0 || a < left->oldest_usec))
		left->oldest_usec = a;
}

static void collect_dir(enum qdir dir, time_t now, struct qid_list *l, struct disk_left *left)
{
	int fd = dup(Q.queue_dirfd[dir]);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	struct stat st;

	if (d == NULL) {
		log_warn("cannot scan the queue: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		time_t due = 0;
		if (len >= QID_MAX || !qid_valid(de->d_name) || strmap_get(Q.msgs, de->d_name) != NULL)
			continue;
		if (l == NULL) {
			disk_left_add(left, de->d_name);
			continue;
		}
		if (dir == QDIR_DEFERRED) {
			if (fstatat(Q.queue_dirfd[dir], de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			if (st.st_mtime > now) {
				if (left != NULL)
					disk_left_add(left, de->d_name);
				continue;
			}
			due = st.st_mtime;
		}
		if (l->n == l->cap) {
			l->cap = l->cap ? 2 * l->cap : 256;
			l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
		}
		memcpy(l->v[l->n].qid, de->d_name, len + 1);
		l->v[l->n].dir = dir;
		l->v[l->n++].due = due;
	}
	closedir(d);
}

/* Oldest first: by due time, then by queue id (arrival). */
static int entry_cmp(const void *a, const void *b)
{
	const struct qid_entry *x = a, *y = b;
	if (x->due != y->due)
		return x->due < y->due ? -1 : 1;
	return strcmp(x->qid, y->qid);
}

static uint64_t oldest_of(uint64_t a, uint64_t b)
{
	return a == 0 || (b != 0 && b < a) ? b : a;
}

/* For the figures, when nothing is to be loaded: what waits on disk. */
static void count_disk(time_t now)
{
	struct disk_left fresh = { 0 }, deferred = { 0 };

	figures_scan_begin();
	collect_dir(QDIR_ACTIVE, now, NULL, &fresh);
	collect_dir(QDIR_INCOMING, now, NULL, &fresh);
	collect_dir(QDIR_DEFERRED, now, NULL, &deferred);
	figures_disk(fresh.n, deferred.n, oldest_of(fresh.oldest_usec, deferred.oldest_usec));
}

/* Load what is on disk and not in memory, as far as the active set has
 * room, oldest first: new mail (active/ and incoming/: mail taken before a
 * restart, and mail the receiver announced while there was no room) in
 * turns with the due files of deferred/.  count: with no room, count what
 * waits on disk all the same (the rescan every queue_scan_interval). */
static void refill(int count)
{
	size_t limit = Q.cfg->max_active_messages, loaded = strmap_count(Q.msgs);
	size_t room = (loaded < limit ? limit - loaded : 0);
	struct qmsg *m;
	struct qid_list fresh = { 0 }, due = { 0 };
	struct disk_left left_deferred = { 0 };
	time_t now = time(NULL);

	TAILQ_FOREACH(m, &Q.waiting, waiting)
		room += m->due > now;   /* each can make room (sched_room) */
	Q.backlog = 0;
	if (room == 0) {
		Q.backlog = 1;          /* do not know: look when room frees */
		if (count)
			count_disk(now);
		return;
	}
	figures_scan_begin();  /* what loading puts back to disk is not in the lists */
	collect_dir(QDIR_ACTIVE, now, &fresh, NULL);
	collect_dir(QDIR_INCOMING, now, &fresh, NULL);
	collect_dir(QDIR_DEFERRED, now, &due, &left_deferred);
	if (fresh.n > 1)
		qsort(fresh.v, fresh.n, sizeof(*fresh.v), entry_cmp);
	if (due.n > 1)
		qsort(due.v, due.n, sizeof(*due.v), entry_cmp);
	size_t f = 0, g = 0;
	while (f < fresh.n || g < due.n) {
		int take_due = g < due.n && (deferred_turn || f == fresh.n);
		struct qid_entry *e = take_due ? &due.v[g] : &fresh.v[f];
		if (sched_load(e->qid, e->dir) < 0)
			break;          /* no room: the turn stays with its side */
		*(take_due ? &g : &f) += 1;
		deferred_turn = !take_due;
	}
	if (f < fresh.n || g < due.n)
		Q.backlog = 1;
	/* the figures: what stays on disk */
	struct disk_left left_fresh = { 0 };
	for (; f < fresh.n; f++)
		disk_left_add(&left_fresh, fresh.v[f].qid);
	for (; g < due.n; g++)
		disk_left_add(&left_deferred, due.v[g].qid);
	figures_disk(left_fresh.n, left_deferred.n,
	    oldest_of(left_fresh.oldest_usec, left_deferred.oldest_usec));
	free(fresh.v);
	free(due.v);
}

static void refill_fire(evutil_socket_t fd, short what, void *arg)
{
	if (!Q.stopping)
		refill(0);
}

void qmgr_flush_disk(void)
{
	struct qid_list l = { 0 };
	struct timespec times[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = QMGR_MTIME_FLUSHED } };

	collect_dir(QDIR_DEFERRED, (time_t)INT64_MAX, &l, NULL);
	for (size_t i = 0; i < l.n; i++)
		if (utimensat(Q.queue_dirfd[QDIR_DEFERRED], l.v[i].qid, times, AT_SYMLINK_NOFOLLOW) < 0 &&
		    errno != ENOENT)
			log_warn("qid=%s: cannot mark it for the flush: %s", l.v[i].qid, strerror(errno));
	if (l.n > 0)
		log_info("flush: %zu deferred message%s on disk retried as room frees", l.n,
		    l.n == 1 ? "" : "s");
	free(l.v);
	refill(0);
}

void qmgr_refill_soon(void)
{
	/* at once while the active set is far from full; else at most once a
	 * second, so that a large backlog is not scanned per message */
	size_t limit = Q.cfg->max_active_messages;
	int far = strmap_count(Q.msgs) < limit - limit / 4;
	struct timeval tv = { .tv_sec = far ? 0 : 1 };

	/* a pending one-second refill is brought forward once room is large */
	if (refill_ev != NULL && (far || !evtimer_pending(refill_ev, NULL)))
		evtimer_add(refill_ev, &tv);
}

static void open_db(void)
{
	char err[256];
	if (Q.db != NULL)
		return;
	if (db_open(Q.cfg->db_dir, &Q.db, err, sizeof(err)) < 0) {
		log_warn("databases: %s (retrying)", err);
		Q.db = NULL;
	}
}

static void on_receiver(evutil_socket_t fd, short what, void *arg)
{
	for (;;) {
		int r = ipc_recv(fd, &rmsg);
		const char *qid;
		if (r <= 0)
			return;
		if (rmsg.fd >= 0) {
			close(rmsg.fd);
			rmsg.fd = -1;
		}
		if (rmsg.type != MSG_QUEUE_NEW || ipc_get_str(&rmsg, &qid) < 0 || ipc_end(&rmsg) < 0) {
			log_warn("malformed message from the receiver");
			continue;
		}
		open_db();
		/* with mail left on disk, the refill takes turns */
		if (Q.backlog) {
			figures_msg_left_on_disk(qid, QDIR_INCOMING);
			qmgr_refill_soon();
		} else {
			sched_load(qid, QDIR_INCOMING);
		}
	}
}

static void on_spawner(evutil_socket_t fd, short what, void *arg)
{
	for (;;) {
		int r = ipc_recv(fd, &rmsg);
		uint32_t id, pid;
		const char *reason;
		if (r <= 0)
			return;
		int wfd = rmsg.fd;
		rmsg.fd = -1;
		if (rmsg.type == MSG_SPAWN_OK && ipc_get_u32(&rmsg, &id) == 0 &&
		    ipc_get_u32(&rmsg, &pid) == 0 && ipc_end(&rmsg) == 0 && wfd >= 0) {
			workers_spawn_reply(1, id, (pid_t)pid, wfd, NULL);
		} else if (rmsg.type == MSG_SPAWN_FAIL && ipc_get_u32(&rmsg, &id) == 0 &&
		    ipc_get_str(&rmsg, &reason) == 0 && ipc_end(&rmsg) == 0) {
			if (wfd >= 0)
				close(wfd);
			workers_spawn_reply(0, id, -1, -1, reason);
		} else {
			if (wfd >= 0)
				close(wfd);
			log_warn("malformed message from the spawner");
		}
		stop_check();
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	open_db();
	workers_check_spawn_timeouts();
	checks_watchdog();
	relay_check_timeouts();
	stop_check();
}

/* Every queue_scan_interval: load what waits on disk, count corrupt
 * files, try again to remove finished files that could not be. */
static void on_rescan(evutil_socket_t fd, short what, void *arg)
{
	if (!Q.stopping) {
		refill(1);
		figures_corrupt_scan(Q.cfg->queue_dir);
		sched_retry_unremovable();
	}
	stop_check();
}

/* (Re)start the rescan timer when queue_scan_interval is new. */
static void rescan_arm(void)
{
	if (rescan_interval == Q.cfg->queue_scan_interval)
		return;
	rescan_interval = Q.cfg->queue_scan_interval;
	struct timeval tv = { .tv_sec = (time_t)rescan_interval };
	event_del(rescan_ev);
	event_add(rescan_ev, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGUSR1) {
		sched_retry_all_now();
		return;
	}
	stop_begin();
	stop_check();
}

/* A reload from the master: the configuration is swapped in place (Q.cfg
 * points to it); what was computed from it is computed again.  Jobs and
 * retry timers already set go on; the next ones use the new settings, and
 * the workers forked before retire once idle (the spawner forks new ones
 * with the new settings). */
static void on_master(evutil_socket_t fd, short what, void *arg)
{
	struct config *cfg = arg;
	struct event *self = event_base_get_running_event(Q.base);
	int swapped = config_swap_receive(fd, cfg);

	if (swapped < 0 && self != NULL) {
		event_del(self);        /* the master is gone; so are we soon */
		return;
	}
	if (swapped <= 0)
		return;
	checks_set_slots();
	rescan_arm();
	log_info("configuration %llu in use", (unsigned long long)cfg->generation);
	workers_retire_stale();
	workers_dispatch();
	relay_dispatch();
}

static int open_queue_dir(const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", Q.cfg->queue_dir, name);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		fatal("cannot open %s: %s", path, strerror(errno));
	return fd;
}

int qmgr_main(struct config *cfg, int receiver_fd, int spawner_fd, int relay_fd,
    int control_fd, int master_fd, int root_mode)
{
	struct passwd *pw = getpwuid(getuid());

	Q.cfg = cfg;
	Q.root_mode = root_mode;
	Q.spawner_fd = spawner_fd;
	Q.msgs = strmap_new();
	Q.users = strmap_new();
	Q.self_home = xstrdup(pw ? pw->pw_dir : "/");
	TAILQ_INIT(&Q.ring);
	TAILQ_INIT(&Q.spawns);
	TAILQ_INIT(&Q.waiting);
	checks_init();
	figures_start();
	figures_corrupt_scan(cfg->queue_dir);
	Q.queue_dirfd[QDIR_ACTIVE] = open_queue_dir("active");
	Q.queue_dirfd[QDIR_DEFERRED] = open_queue_dir("deferred");
	Q.queue_dirfd[QDIR_INCOMING] = open_queue_dir("incoming");
	fcntl(receiver_fd, F_SETFL, fcntl(receiver_fd, F_GETFL) | O_NONBLOCK);
	fcntl(spawner_fd, F_SETFL, fcntl(spawner_fd, F_GETFL) | O_NONBLOCK);

	Q.base = event_base_new();
	if (Q.base == NULL)
		fatal("event_base_new failed");
	removals_start();
	struct event *ev_recv = event_new(Q.base, receiver_fd, EV_READ | EV_PERSIST, on_receiver, NULL);
	struct event *ev_spawn = event_new(Q.base, spawner_fd, EV_READ | EV_PERSIST, on_spawner, NULL);
	struct event *ev_tick = event_new(Q.base, -1, EV_PERSIST, on_tick, NULL);
	rescan_ev = event_new(Q.base, -1, EV_PERSIST, on_rescan, NULL);
	struct event *ev_term = evsignal_new(Q.base, SIGTERM, on_signal, NULL);
	struct event *ev_int = evsignal_new(Q.base, SIGINT, on_signal, NULL);
	struct event *ev_usr1 = evsignal_new(Q.base, SIGUSR1, on_signal, NULL);
	struct event *ev_master = event_new(Q.base, master_fd, EV_READ | EV_PERSIST, on_master, cfg);
	struct timeval tick = { .tv_sec = TICK_SECONDS };
	event_add(ev_recv, NULL);
	event_add(ev_spawn, NULL);
	event_add(ev_tick, &tick);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	event_add(ev_usr1, NULL);
	event_add(ev_master, NULL);
	refill_ev = evtimer_new(Q.base, refill_fire, NULL);
	relay_init(relay_fd);
	control_init(control_fd);
	Q.started = time(NULL);

	open_db();
	rescan_arm();
	refill(1);
	log_info("started: %zu message%s in the queue%s", strmap_count(Q.msgs),
	    strmap_count(Q.msgs) == 1 ? "" : "s", Q.backlog ? " (more on disk)" : "");

	event_base_dispatch(Q.base);

	workers_close_all();
	relay_close();
	stop_free();
	control_close();
	event_free(ev_recv);
	event_free(ev_spawn);
	event_free(ev_tick);
	event_free(rescan_ev);
	rescan_ev = NULL;
	rescan_interval = 0;
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_usr1);
	event_free(ev_master);
	event_free(refill_ev);
	refill_ev = NULL;
	sched_free_all();
	removals_close();
	if (Q.db)
		db_close(Q.db);
	event_base_free(Q.base);
	return 0;
}
