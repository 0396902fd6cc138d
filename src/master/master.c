/*
 * master.c - supervisor of the receiver, qmgr, spawner, relay, (with a
 * `listen policy` line) the policy service and (with a `listen metrics`
 * line) the metrics service.
 *
 * The master keeps the listening sockets and the socketpairs between its
 * children, so a child that dies is simply forked again with the same
 * descriptors (after a back-off that grows while it keeps dying).  Signals
 * are blocked and taken synchronously with sigtimedwait(): no handler runs
 * at an arbitrary point.  A reload (SIGHUP) restarts nothing: each child
 * gets the checked configuration on its own socketpair (reload.c).
 *
 * The master also keeps the memfds of the figures' regions (metrics.h),
 * created before any child: each owner gets its own region's descriptor,
 * the metrics service and the qmgr read-only ones; nobody else any.
 */
#include "master/master.h"
#include "master/fd_limit.h"
#include "master/listen.h"
#include "master/reload.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/privsep.h"
#include "lib/proctitle.h"
#include "lists/lists_sync.h"
#include "metrics/metrics.h"
#include "metrics/service.h"
#include "policy/service.h"
#include "policy/sync.h"
#include "qmgr/qmgr.h"
#include "queue/qfile.h"
#include "receiver/receiver.h"
#include "relay/relay.h"
#include "spawner/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/ipc.h"

enum child_kind {
	CHILD_RECEIVER,
	CHILD_QMGR,
	CHILD_SPAWNER,
	CHILD_RELAY,
	CHILD_POLSYNC,          /* only with a `listen policy` line */
	CHILD_POLICY,           /* only with a `listen policy` line */
	CHILD_LISTSYNC,         /* only with members_source mailman3 */
	CHILD_METRICS,          /* only with a `listen metrics` line */
	CHILD_COUNT
};

static const char *const child_names[CHILD_COUNT] = {
	"receiver", "qmgr", "spawner", "relay", "policy sync", "policy", "lists sync",
	"metrics",
};

struct child {
	pid_t pid;
	time_t started;
	time_t restart_at;      /* when a dead child may be forked again */
	unsigned backoff;       /* seconds */
};

struct master {
	struct daemon_ctx *d;
	int listen_fds[CONFIG_MAX_LISTEN];
	int recv_qmgr[2];       /* [0] receiver end, [1] qmgr end */
	int qmgr_spawner[2];    /* [0] qmgr end, [1] spawner end */
	int qmgr_relay[2];      /* [0] qmgr end, [1] relay end */
	int config_link[CHILD_COUNT][2];        /* [0] master end, [1] the child's: reloads */
	int control_fd;         /* run_dir/control.sock, for the qmgr */
	int metrics_rw[METRICS_REGION_COUNT];   /* each for its owner only */
	int metrics_ro[METRICS_REGION_COUNT];   /* for the metrics service and the qmgr */
	char control_path[4096];
	struct child child[CHILD_COUNT];
	int stopping;
	char pidfile[4096];
};

static sigset_t master_sigs;

static int has_listener(const struct config *cfg, enum listen_proto proto)
{
	for (int i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].proto == proto)
			return 1;
	return 0;
}

/* Whether this configuration runs a child of that kind at all: the
 * policy service and its sync only with a `listen policy` line, the
 * metrics service only with a `listen metrics` line. */
static int child_wanted(const struct master *m, enum child_kind kind)
{
	if (kind == CHILD_POLICY || kind == CHILD_POLSYNC)
		return has_listener(&m->d->cfg, LISTEN_POLICY);
	if (kind == CHILD_METRICS)
		return has_listener(&m->d->cfg, LISTEN_METRICS);
	if (kind == CHILD_LISTSYNC)
		return m->d->cfg.members_source == MEMBERS_MAILMAN3;
	return 1;
}

/* The listening sockets a child serves: SMTP and LMTP for the receiver,
 * policy for the policy service, metrics for the metrics service, none
 * for the others.  The rest are
 * closed (and -1 in the child's copy). */
static void keep_listeners(struct master *m, enum child_kind kind)
{
	struct config *cfg = &m->d->cfg;

	for (int i = 0; i < cfg->nlisten; i++) {
		enum listen_proto proto = cfg->listen[i].proto;
		int mail = proto == LISTEN_SMTP || proto == LISTEN_LMTP;
		int keep = (kind == CHILD_RECEIVER && mail) ||
		    (kind == CHILD_POLICY && proto == LISTEN_POLICY) ||
		    (kind == CHILD_METRICS && proto == LISTEN_METRICS);
		if (keep || m->listen_fds[i] < 0)
			continue;
		close(m->listen_fds[i]);
		m->listen_fds[i] = -1;
	}
}

/* Everything a child must do before it runs: its name, default signal
 * dispositions, no descriptors of the others, its identity, and death with
 * the master. */
/* The region a child owns (writes), or -1. */
static int owned_region(enum child_kind kind)
{
	switch (kind) {
	case CHILD_RECEIVER: return METRICS_RECEIVER;
	case CHILD_QMGR: return METRICS_QMGR;
	case CHILD_POLICY: return METRICS_POLICY;
	default: return -1;
	}
}

/* A child keeps the read-write descriptor of its own region; the metrics
 * service the read-only ones of all, the qmgr those of the others (for
 * `mailprocctl status`).  Every other region descriptor is closed. */
static void keep_regions(struct master *m, enum child_kind kind)
{
	for (int k = 0; k < METRICS_REGION_COUNT; k++) {
		int keep_ro = kind == CHILD_METRICS || (kind == CHILD_QMGR && k != METRICS_QMGR);
		if (k != owned_region(kind) && m->metrics_rw[k] >= 0) {
			close(m->metrics_rw[k]);
			m->metrics_rw[k] = -1;
		}
		if (!keep_ro && m->metrics_ro[k] >= 0) {
			close(m->metrics_ro[k]);
			m->metrics_ro[k] = -1;
		}
	}
}

/* The processes that deliver (the qmgr, the spawner and so its workers,
 * the relay) run delivery_nice lower than those that answer clients and
 * peers: a client waiting for a reply goes first; deliveries take the CPU
 * left over and, waiting for it, more messages at a time. */
static void lower_delivery_priority(const struct config *cfg, enum child_kind kind)
{
	if (cfg->delivery_nice == 0 ||
	    (kind != CHILD_QMGR && kind != CHILD_SPAWNER && kind != CHILD_RELAY))
		return;
	errno = 0;
	if (nice(cfg->delivery_nice) == -1 && errno != 0)
		log_warn("delivery_nice %d: %s", cfg->delivery_nice, strerror(errno));
}

static void child_setup(struct master *m, enum child_kind kind)
{
	struct daemon_ctx *d = m->d;
	char ident[64];

	snprintf(ident, sizeof(ident), "mailprocd/%s", kind == CHILD_POLSYNC ? "polsync" :
	    kind == CHILD_LISTSYNC ? "listsync" : child_names[kind]);
	log_set_ident(ident);
	proctitle_set("mailprocd: %s", child_names[kind]);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN);       /* a file size limit is EFBIG, not death */
	signal(SIGCHLD, SIG_DFL);
	sigprocmask(SIG_UNBLOCK, &master_sigs, NULL);

	keep_listeners(m, kind);
	keep_regions(m, kind);
	if (kind != CHILD_RECEIVER)
		close(m->recv_qmgr[0]);
	if (kind != CHILD_QMGR) {
		close(m->recv_qmgr[1]);
		close(m->qmgr_spawner[0]);
		close(m->qmgr_relay[0]);
		if (m->control_fd >= 0)
			close(m->control_fd);
	}
	if (kind != CHILD_SPAWNER)
		close(m->qmgr_spawner[1]);
	if (kind != CHILD_RELAY)
		close(m->qmgr_relay[1]);
	for (int k = 0; k < CHILD_COUNT; k++) {
		close(m->config_link[k][0]);
		if (k != (int)kind)
			close(m->config_link[k][1]);
	}

	/* while still root in root mode: it may raise the hard limit too */
	if (kind == CHILD_RECEIVER || kind == CHILD_POLICY)
		raise_fd_limit(&d->cfg, 0);
	lower_delivery_priority(&d->cfg, kind);
	/* the spawner and the policy sync stay root: they fork processes
	 * that become users */
	if (d->root_mode && kind != CHILD_SPAWNER && kind != CHILD_POLSYNC)
		privsep_become_or_die(d->user_uid, d->user_gid, d->cfg.user);
	/* after the credential change, which clears it */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(1);
}

/* An owner maps its region read-write before its main loop counts
 * anything; the qmgr also maps the others' read-only for its status. */
static void attach_regions(struct master *m, enum child_kind kind)
{
	int own = owned_region(kind);

	if (own >= 0 && m->metrics_rw[own] >= 0) {
		metrics_attach((enum metrics_region_kind)own, m->metrics_rw[own]);
		close(m->metrics_rw[own]);
		m->metrics_rw[own] = -1;
	}
	if (kind == CHILD_QMGR)
		metrics_view_map(&metrics_status_view, m->metrics_ro);
}

static int run_child(struct master *m, enum child_kind kind)
{
	struct config *cfg = &m->d->cfg;
	int link = m->config_link[kind][1];

	attach_regions(m, kind);
	switch (kind) {
	case CHILD_RECEIVER:
		return receiver_main(cfg, m->listen_fds, m->recv_qmgr[0], link);
	case CHILD_QMGR:
		return qmgr_main(cfg, m->recv_qmgr[1], m->qmgr_spawner[0], m->qmgr_relay[0],
		    m->control_fd, link, m->d->root_mode);
	case CHILD_SPAWNER:
		return spawner_main(cfg, m->qmgr_spawner[1], link, m->d->root_mode);
	case CHILD_RELAY:
		return relay_main(m->qmgr_relay[1], cfg, link);
	case CHILD_POLSYNC: {
		struct polsync_identity id = { m->d->root_mode, m->d->user_uid, m->d->user_gid };
		return polsync_main(cfg, link, &id);
	}
	case CHILD_POLICY:
		return policy_service_main(cfg, m->listen_fds, link);
	case CHILD_LISTSYNC:
		return lists_sync_main(cfg, link);
	case CHILD_METRICS:
		return metrics_service_main(cfg, m->listen_fds, m->metrics_ro, link);
	default:
		panic("run_child: kind %d", (int)kind);
	}
}

static void start_child(struct master *m, enum child_kind kind)
{
	pid_t pid = fork();
	if (pid < 0) {
		log_warn("fork %s: %s", child_names[kind], strerror(errno));
		m->child[kind].restart_at = time(NULL) + 1;
		return;
	}
	if (pid == 0) {
		child_setup(m, kind);
		int status = run_child(m, kind);
		exit(status);
	}
	m->child[kind].pid = pid;
	m->child[kind].started = time(NULL);
	log_debug("started %s pid %ld", child_names[kind], (long)pid);
}

/* At a stop, once the qmgr is gone for good: the master's copies of the
 * qmgr's ends of its links.  A worker the spawner started just before the
 * stop travels to the qmgr as a descriptor in a message the qmgr never
 * read; while the master keeps that end open, the message and so the
 * worker's socket stay alive, the worker never sees the qmgr go, and the
 * spawner waits for it until stop_grace_time runs out.  Closing the end
 * drops the message. */
static void close_qmgr_ends(struct master *m)
{
	int *ends[] = { &m->recv_qmgr[1], &m->qmgr_spawner[0], &m->qmgr_relay[0] };

	for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
		if (*ends[i] >= 0)
			close(*ends[i]);
		*ends[i] = -1;
	}
}

static void child_exited(struct master *m, pid_t pid, int status)
{
	for (int k = 0; k < CHILD_COUNT; k++) {
		struct child *c = &m->child[k];
		if (c->pid != pid)
			continue;
		c->pid = 0;
		if (m->stopping) {
			if (k == CHILD_QMGR)
				close_qmgr_ends(m);
			return;
		}
		if (!child_wanted(m, (enum child_kind)k) && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0) {
			/* a reload took away what it served (members_source) */
			log_info("%s (pid %ld) ended: the configuration no longer needs it",
			    child_names[k], (long)pid);
			return;
		}
		if (WIFSIGNALED(status))
			log_warn("%s (pid %ld) killed by signal %d; restarting",
			    child_names[k], (long)pid, WTERMSIG(status));
		else
			log_warn("%s (pid %ld) exited with status %d; restarting",
			    child_names[k], (long)pid, WEXITSTATUS(status));
		time_t now = time(NULL);
		/* A child that ran for a while gets restarted at once; one that
		 * keeps dying waits longer each time, up to a minute. */
		if (now - c->started > 60)
			c->backoff = 0;
		else
			c->backoff = c->backoff ? (c->backoff * 2 > 60 ? 60 : c->backoff * 2) : 1;
		c->restart_at = now + c->backoff;
		return;
	}
}

static void reap_children(struct master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		child_exited(m, pid, status);
}

static int children_alive(const struct master *m)
{
	int n = 0;
	for (int k = 0; k < CHILD_COUNT; k++)
		n += m->child[k].pid > 0;
	return n;
}

static void signal_children(struct master *m, int sig)
{
	for (int k = 0; k < CHILD_COUNT; k++)
		if (m->child[k].pid > 0)
			kill(m->child[k].pid, sig);
}

/* Seconds the master waits beyond stop_grace_time before it kills what is
 * left: the children cut what still runs at stop_grace_time and need a
 * moment to log it and leave. */
#define STOP_KILL_MARGIN 10

/* SIGTERM: the receiver finishes its transactions, the qmgr its jobs, the
 * relay its transactions, within stop_grace_time.  Whatever is still
 * running after that and a margin is killed. */
static void stop_all(struct master *m)
{
	const int grace = (int)m->d->cfg.stop_grace_time + STOP_KILL_MARGIN;
	struct timespec ts = { .tv_sec = 1 };

	m->stopping = 1;
	signal_children(m, SIGTERM);
	for (int waited = 0; children_alive(m) > 0 && waited < grace; waited++) {
		siginfo_t si;
		sigtimedwait(&master_sigs, &si, &ts);
		reap_children(m);
	}
	if (children_alive(m) > 0) {
		log_warn("children still running after %d s; killing them", grace);
		signal_children(m, SIGKILL);
		while (children_alive(m) > 0 && waitpid(-1, NULL, 0) > 0)
			reap_children(m);
	}
}

/* SIGHUP: check the file and swap it in here, then in every running child
 * (one that is not running gets it when it is forked).  Nothing stops:
 * listeners, workers, deliveries and relay transactions go on. */
static void reload(struct master *m)
{
	int memfd = reload_prepare(&m->d->cfg);
	int sent = 0;

	/* the spawner first: workers the qmgr asks for after its reload must
	 * get the new settings (the spawner reads the master's socket before
	 * the qmgr's) */
	static const enum child_kind order[CHILD_COUNT] = {
		CHILD_SPAWNER, CHILD_RELAY, CHILD_QMGR, CHILD_RECEIVER, CHILD_POLSYNC, CHILD_POLICY,
		CHILD_LISTSYNC, CHILD_METRICS,
	};

	if (memfd < 0)
		return;
	for (int i = 0; i < CHILD_COUNT; i++) {
		enum child_kind k = order[i];
		if (m->child[k].pid > 0 &&
		    reload_send(m->config_link[k][0], child_names[k], &m->d->cfg, memfd) == 0)
			sent++;
	}
	close(memfd);
	/* max_sessions may have grown: the running receiver's limit follows,
	 * and the policy service's */
	if (m->child[CHILD_RECEIVER].pid > 0)
		raise_fd_limit(&m->d->cfg, m->child[CHILD_RECEIVER].pid);
	if (m->child[CHILD_POLICY].pid > 0)
		raise_fd_limit(&m->d->cfg, m->child[CHILD_POLICY].pid);
	log_info("reloaded %s (configuration %llu, sent to %d process%s)", m->d->cfg.path,
	    (unsigned long long)m->d->cfg.generation, sent, sent == 1 ? "" : "es");
}

static int write_pidfile(struct master *m)
{
	snprintf(m->pidfile, sizeof(m->pidfile), "%s/mailprocd.pid", m->d->cfg.run_dir);
	char *old = read_file(m->pidfile, 64, NULL);
	if (old != NULL) {
		long pid = strtol(old, NULL, 10);
		free(old);
		if (pid > 1 && pid != getpid() && kill((pid_t)pid, 0) == 0) {
			log_warn("another mailprocd is running (pid %ld, %s)", pid, m->pidfile);
			return -1;
		}
	}
	char tmp[4200], line[32];
	snprintf(tmp, sizeof(tmp), "%s.tmp", m->pidfile);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	if (fd < 0 || write_all(fd, line, (size_t)n) < 0 || close(fd) < 0 ||
	    rename(tmp, m->pidfile) < 0) {
		log_warn("cannot write %s: %s", m->pidfile, strerror(errno));
		return -1;
	}
	return 0;
}

/* Unmarked files in incoming/ belong to a receiver that is gone (the
 * master starts a new one only after the old one exited): they were never
 * acknowledged, their clients were told nothing and will send again.
 * Marked ones are accepted mail that the qmgr takes. */
static void purge_incoming(struct master *m)
{
	int purged = queue_purge_incoming(m->d->cfg.queue_dir);
	if (purged < 0)
		log_warn("cannot clean %s/incoming: %s", m->d->cfg.queue_dir, strerror(errno));
	else if (purged > 0)
		log_info("removed %d unfinished message%s from incoming/", purged, purged == 1 ? "" : "s");
}

static int prepare_dirs(struct master *m)
{
	struct daemon_ctx *d = m->d;
	uid_t owner = d->root_mode ? d->user_uid : (uid_t)-1;
	gid_t group = d->root_mode ? d->user_gid : (gid_t)-1;

	char err[512];

	if (queue_dirs_create(d->cfg.queue_dir, owner, group) < 0) {
		log_warn("cannot prepare queue_dir %s: %s", d->cfg.queue_dir, strerror(errno));
		return -1;
	}
	if (d->cfg.state_dir != NULL &&
	    policy_state_dir_prepare(d->cfg.state_dir, owner, group, err, sizeof(err)) < 0) {
		log_warn("%s", err);
		return -1;
	}
	return 0;
}

int master_run(struct daemon_ctx *d)
{
	struct master m = { .d = d };
	struct timespec tick = { .tv_sec = 1 };

	sigemptyset(&master_sigs);
	sigaddset(&master_sigs, SIGCHLD);
	sigaddset(&master_sigs, SIGTERM);
	sigaddset(&master_sigs, SIGINT);
	sigaddset(&master_sigs, SIGHUP);
	sigaddset(&master_sigs, SIGUSR1);
	sigprocmask(SIG_BLOCK, &master_sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (mkdir_p(d->cfg.run_dir, 0755) < 0) {
		log_warn("cannot create run_dir %s: %s", d->cfg.run_dir, strerror(errno));
		return 1;
	}
	/* the pid file first: a second instance must not touch the queue */
	if (write_pidfile(&m) < 0)
		return 1;
	if (prepare_dirs(&m) < 0) {
		unlink(m.pidfile);
		return 1;
	}
	if (listen_open_all(&d->cfg, m.listen_fds) < 0) {
		unlink(m.pidfile);
		return 1;
	}
	m.control_fd = listen_open_control(d->cfg.run_dir, m.control_path, sizeof(m.control_path));
	if (m.control_fd >= 0 && d->root_mode) {
		/* the administrator's; the qmgr only accepts on it */
		if (chown(m.control_path, 0, 0) < 0)
			log_warn("%s: chown: %s", m.control_path, strerror(errno));
	}
	/* before any child: the figures outlive each of them */
	if (metrics_regions_create(m.metrics_rw) < 0)
		log_warn("running without figures (no `listen metrics` output)");
	for (int k = 0; k < METRICS_REGION_COUNT; k++) {
		m.metrics_ro[k] = m.metrics_rw[k] >= 0 ? metrics_region_reopen_ro(m.metrics_rw[k]) : -1;
		if (m.metrics_rw[k] >= 0 && m.metrics_ro[k] < 0)
			log_warn("metrics: cannot open a region read-only: %s", strerror(errno));
	}
	if (ipc_socketpair(m.recv_qmgr) < 0 || ipc_socketpair(m.qmgr_spawner) < 0 ||
	    ipc_socketpair(m.qmgr_relay) < 0)
		fatal("socketpair: %s", strerror(errno));
	for (int k = 0; k < CHILD_COUNT; k++) {
		if (ipc_socketpair(m.config_link[k]) < 0)
			fatal("socketpair: %s", strerror(errno));
		/* the master never waits for a child; a child polls its end */
		for (int e = 0; e < 2; e++)
			fcntl(m.config_link[k][e], F_SETFL, fcntl(m.config_link[k][e], F_GETFL) | O_NONBLOCK);
	}

	log_info("starting (%s mode, pid %ld)", d->root_mode ? "root" : "single-user", (long)getpid());
	/* spawner first, so the qmgr's first request finds it */
	start_child(&m, CHILD_SPAWNER);
	start_child(&m, CHILD_RELAY);
	start_child(&m, CHILD_QMGR);
	purge_incoming(&m);
	start_child(&m, CHILD_RECEIVER);
	if (child_wanted(&m, CHILD_POLSYNC))
		start_child(&m, CHILD_POLSYNC);
	if (child_wanted(&m, CHILD_POLICY))
		start_child(&m, CHILD_POLICY);
	if (child_wanted(&m, CHILD_LISTSYNC))
		start_child(&m, CHILD_LISTSYNC);
	if (child_wanted(&m, CHILD_METRICS))
		start_child(&m, CHILD_METRICS);

	while (!m.stopping) {
		siginfo_t si;
		int sig = sigtimedwait(&master_sigs, &si, &tick);
		switch (sig) {
		case SIGCHLD:
			reap_children(&m);
			break;
		case SIGTERM:
		case SIGINT:
			log_info("stopping on signal %d", sig);
			stop_all(&m);
			break;
		case SIGHUP:
			reload(&m);
			break;
		case SIGUSR1:
			if (m.child[CHILD_QMGR].pid > 0)
				kill(m.child[CHILD_QMGR].pid, SIGUSR1);
			break;
		default:
			break;
		}
		reap_children(&m);
		time_t now = time(NULL);
		for (int k = 0; k < CHILD_COUNT && !m.stopping; k++) {
			if (m.child[k].pid != 0 || now < m.child[k].restart_at ||
			    !child_wanted(&m, (enum child_kind)k))
				continue;
			if (k == CHILD_RECEIVER)
				purge_incoming(&m);
			start_child(&m, (enum child_kind)k);
		}
	}
	listen_close_all(&d->cfg, m.listen_fds, 1);
	if (m.control_fd >= 0) {
		close(m.control_fd);
		unlink(m.control_path);
	}
	unlink(m.pidfile);
	log_info("stopped");
	return 0;
}
