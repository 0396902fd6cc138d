/*
 * qmgr.c - the queue manager process: start-up, event loop, signals.
 *
 * At start it lists the messages in deferred/, active/ and (committed)
 * incoming/ a slice at a time (backlog.c), serving meanwhile, and loads
 * them up to max_active_messages (the active set).  New messages are
 * announced by the receiver (MSG_QUEUE_NEW) and taken from incoming/ into
 * active/; a rescan every queue_scan_interval catches any announcement
 * that was lost.  What does not fit in the active set stays on disk, in
 * an index, and is loaded as room frees (a refill), new mail and due
 * deferred mail in turns so that neither starves the other; a file in
 * deferred/ is due when its mtime (set when its message was put back to
 * disk) has come.  SIGUSR1 (from
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

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <malloc.h>
#include <pwd.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_SECONDS 5
/* The active set shrank by this many messages since the last trim: trim. */
#define TRIM_AFTER_MESSAGES 1000

struct qmgr Q;

static struct ipc_msg rmsg;
/* The rescan of the queue every queue_scan_interval, and the interval it
 * runs at (to re-arm it when a reload changes the setting). */
static struct event *rescan_ev;
static uint64_t rescan_interval;

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
			backlog_put_file(qid, QDIR_INCOMING, NULL);
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

/* Give the memory of messages gone back to the system: after a burst
 * filled the active set and went to disk (or was delivered), malloc keeps
 * the freed chunks, scattered, and the qmgr stays at its peak. */
static void trim_memory(void)
{
	static size_t loaded_at_trim;
	size_t now = strmap_count(Q.msgs);

	if (now + TRIM_AFTER_MESSAGES <= loaded_at_trim)
		malloc_trim(0);
	if (now + TRIM_AFTER_MESSAGES <= loaded_at_trim || now > loaded_at_trim)
		loaded_at_trim = now;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	trim_memory();
	open_db();
	workers_check_spawn_timeouts();
	checks_watchdog();
	relay_check_timeouts();
	stop_check();
}

/* Every queue_scan_interval: list what waits on disk (files added or
 * removed by hand), count corrupt files, try again to remove finished
 * files that could not be. */
static void on_rescan(evutil_socket_t fd, short what, void *arg)
{
	if (!Q.stopping) {
		backlog_scan();
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

/* finished/ (the master makes it): -1 if it cannot be opened, and
 * finished files are unlinked in place. */
static int open_finished_dir(void)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/finished", Q.cfg->queue_dir);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		log_warn("cannot open %s: %s (finished files are removed in place)", path,
		    strerror(errno));
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
	TAILQ_INIT(&Q.all_workers);
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
	removals_start(open_finished_dir());
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
	backlog_init();
	relay_init(relay_fd);
	control_init(control_fd);
	Q.started = time(NULL);

	open_db();
	rescan_arm();
	log_info("started: listing the queue");
	backlog_scan();

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
	backlog_free();
	sched_free_all();
	removals_close();
	if (Q.db)
		db_close(Q.db);
	event_base_free(Q.base);
	return 0;
}
