/*
 * monitor.c - mailmond's event loop (see monitor.h).
 */
#include "mailmond/monitor.h"
#include "mailmond/alert.h"
#include "mailmond/alert_queue.h"
#include "mailmond/mm_expose.h"
#include "mailmond/probe_state.h"
#include "mailmond/sender.h"
#include "mailmond/watcher.h"
#include "metrics/metrics_http.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct monitor;
/* What a probe's timers get: the monitor and the probe's index. */
struct slot {
	struct monitor *m;
	int i;
};

struct monitor {
	const struct mm_config *c;
	struct slot slot[MM_MAX_PROBES];
	struct event_base *base;
	struct probe probes[MM_MAX_PROBES];
	struct event *send_ev[MM_MAX_PROBES];
	struct event *check_ev[MM_MAX_PROBES];
	struct alert_queue alerts[MM_MAX_PROBES];
	struct event *alert_ev[MM_MAX_PROBES];     /* alert_timeout */
	int n;
	char run[PROBE_RUN_LEN + 1];
	struct watcher *watcher;
	struct metrics_http *http;
};

static uint64_t mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t wall_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static struct timeval tv_usec(uint64_t usec)
{
	return (struct timeval){ .tv_sec = (time_t)(usec / 1000000),
		.tv_usec = (suseconds_t)(usec % 1000000) };
}

/* Start probe i's next waiting alert unless one runs. */
static void start_alert(struct monitor *m, int i)
{
	struct alert_queue *q = &m->alerts[i];
	struct alert_change a;
	const char *name = m->probes[i].conf->name;

	while (alert_queue_next(q, &a)) {
		q->pid = alert_run(m->c->alert_command, name, a.state, a.delay);
		if (q->pid < 0)
			continue;       /* not started (logged): the next one */
		log_debug("probe %s: alert_command (%s) started, pid %ld", name, a.state,
		    (long)q->pid);
		struct timeval tv = tv_usec(m->c->alert_timeout_usec);
		evtimer_add(m->alert_ev[i], &tv);
	}
}

static void on_change(struct probe *p, const char *state, double delay, void *arg)
{
	struct monitor *m = arg;
	int i = (int)(p - m->probes);
	log_info("probe %s: %s (delay %.3fs)", p->conf->name, state, delay);
	if (m->c->alert_command == NULL)
		return;
	struct alert_queue *q = &m->alerts[i];
	alert_queue_push(q, state, delay);
	if (q->dropped > 0) {
		log_warn("probe %s: %d alerts waiting for alert_command (pid %ld): the oldest "
		    "waiting one not run", p->conf->name, ALERT_QUEUE_MAX, (long)q->pid);
		q->dropped = 0;
	}
	if (q->pid > 0)
		log_info("probe %s: alert (%s) waits for the one running (%s, pid %ld)",
		    p->conf->name, state, q->running.state, (long)q->pid);
	start_alert(m, i);
}

/* An alert ran alert_timeout: kill its process group (reap() goes on). */
static void on_alert_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;
	struct alert_queue *q = &s->m->alerts[s->i];
	if (q->pid <= 0)
		return;
	log_warn("probe %s: alert_command (%s, pid %ld) still running after %.3fs "
	    "(alert_timeout): killing its process group", s->m->probes[s->i].conf->name,
	    q->running.state, (long)q->pid, (double)s->m->c->alert_timeout_usec / 1e6);
	q->timed_out = 1;
	kill(-q->pid, SIGKILL);
}

/* Alert pid ended with status: log how, start the next one. */
static int alert_reaped(struct monitor *m, pid_t pid, int status)
{
	int i;
	for (i = 0; i < m->n; i++) {
		if (m->alerts[i].pid == pid)
			break;
	}
	if (i == m->n)
		return 0;
	struct alert_queue *q = &m->alerts[i];
	const char *name = m->probes[i].conf->name;
	if (q->timed_out)
		log_warn("probe %s: alert_command (%s, pid %ld) killed after alert_timeout", name,
		    q->running.state, (long)pid);
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		log_warn("probe %s: alert_command (%s, pid %ld) exited with status %d", name,
		    q->running.state, (long)pid, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		log_warn("probe %s: alert_command (%s, pid %ld) killed by signal %d", name,
		    q->running.state, (long)pid, WTERMSIG(status));
	else
		log_info("probe %s: alert_command (%s, pid %ld) done", name, q->running.state,
		    (long)pid);
	evtimer_del(m->alert_ev[i]);
	alert_queue_done(q);
	start_alert(m, i);
	return 1;
}

/* Arm the probe's check timer for the next send that turns late or lost. */
static void schedule_check(struct monitor *m, int i)
{
	uint64_t next = probe_next_check(&m->probes[i], m->c->late_after_usec,
	    m->c->lost_after_usec);
	if (next == UINT64_MAX) {
		evtimer_del(m->check_ev[i]);
		return;
	}
	uint64_t now = mono_usec();
	/* a millisecond more, so that the timer never fires just before */
	struct timeval tv = tv_usec((next > now ? next - now : 0) + 1000);
	evtimer_add(m->check_ev[i], &tv);
}

static void on_check(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;
	struct monitor *m = s->m;
	int i = s->i;
	/* a send turns late or lost now: first look whether it arrived
	 * unseen (one readdir; its arrival reschedules this timer) */
	watcher_rescan(m->watcher, m->probes[i].conf->maildir);
	probe_check(&m->probes[i], mono_usec(), m->c->late_after_usec, m->c->lost_after_usec,
	    on_change, m);
	schedule_check(m, i);
}

static void send_probe(struct monitor *m, int i)
{
	struct probe *p = &m->probes[i];
	struct probe_id id = { 0 };

	if (p->sender_pid > 0) {
		log_warn("probe %s: the send of seq %llu is still running: not sending another",
		    p->conf->name, (unsigned long long)p->sender_seq);
		return;
	}
	snprintf(id.name, sizeof(id.name), "%s", p->conf->name);
	memcpy(id.run, m->run, sizeof(id.run));
	id.seq = p->next_seq++;
	id.sent_usec = wall_usec();
	probe_send_started(p, id.seq, mono_usec());
	pid_t pid = sender_start(m->c, p->conf, &id, &p->sender_fd);
	if (pid < 0) {
		probe_send_failed(p, id.seq, mono_usec(), on_change, m);
	} else {
		p->sender_pid = pid;
		p->sender_seq = id.seq;
		log_debug("probe %s seq %llu: sending to %s (pid %ld)", p->conf->name,
		    (unsigned long long)id.seq, p->conf->target, (long)pid);
	}
	schedule_check(m, i);
}

static void on_send(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;
	send_probe(s->m, s->i);
}

static void reap(struct monitor *m)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int i;
		for (i = 0; i < m->n; i++) {
			if (m->probes[i].sender_pid == pid)
				break;
		}
		if (i == m->n) {
			(void)alert_reaped(m, pid, status);
			continue;
		}
		struct probe *p = &m->probes[i];
		char why[1100];
		p->sender_pid = -1;
		if (sender_result(status, p->sender_fd, m->c, why, sizeof(why)) == 0) {
			probe_send_accepted(p, p->sender_seq);
			log_debug("probe %s seq %llu: sent", p->conf->name,
			    (unsigned long long)p->sender_seq);
		} else {
			log_warn("probe %s seq %llu: not sent: %s", p->conf->name,
			    (unsigned long long)p->sender_seq, why);
			probe_send_failed(p, p->sender_seq, mono_usec(), on_change, m);
		}
		p->sender_fd = -1;
		schedule_check(m, i);
	}
}

static void on_arrival(const struct probe_id *id, uint64_t arrival_mono,
    uint64_t arrival_wall, const char *dir, const char *file, void *arg)
{
	struct monitor *m = arg;
	int i;

	for (i = 0; i < m->n; i++) {
		if (strcmp(m->probes[i].conf->name, id->name) == 0)
			break;
	}
	if (strcmp(id->run, m->run) != 0 || i == m->n) {
		log_info("%s/new/%s: stale probe %s seq %llu (run %s, not %s): removed", dir, file,
		    id->name, (unsigned long long)id->seq, id->run,
		    i == m->n ? "a probe of this configuration" : "this run");
		return;
	}
	/* by the header's wall-clock send time: for the logs, and for a send
	 * this run no longer waits for */
	double wall_diff = ((double)arrival_wall - (double)id->sent_usec) / 1e6;
	double wall_delay = wall_diff > 0 ? wall_diff : 0.0;
	double delay = probe_delay(&m->probes[i], id->seq, arrival_mono, arrival_wall,
	    id->sent_usec);
	switch (probe_arrival_kind(&m->probes[i], id->seq)) {
	case PROBE_ARRIVED_AGAIN:
		log_info("%s/new/%s: probe %s seq %llu arrived again (delay %.3fs): removed, not "
		    "counted", dir, file, id->name, (unsigned long long)id->seq, wall_delay);
		return;
	case PROBE_ARRIVED_NEVER_SENT:
		log_warn("%s/new/%s: probe %s seq %llu was never sent by this run: removed, not "
		    "counted", dir, file, id->name, (unsigned long long)id->seq);
		return;
	}
	log_info("probe %s seq %llu arrived: delay %.3fs", id->name, (unsigned long long)id->seq,
	    delay);
	if (wall_diff - delay > 1.0 || delay - wall_diff > 1.0)
		log_warn("probe %s seq %llu: by the wall clock its delay is %.3fs: the clock was "
		    "set in between (the monotonic %.3fs counts)", id->name,
		    (unsigned long long)id->seq, wall_diff, delay);
	probe_arrived(&m->probes[i], id->seq, delay, on_change, m);
	schedule_check(m, i);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct monitor *m = arg;
	switch (sig) {
	case SIGCHLD:
		reap(m);
		break;
	case SIGHUP:
		log_info("SIGHUP: mailmond does not reload; restart it for a new configuration");
		break;
	default:
		log_info("signal %d: stopping", (int)sig);
		event_base_loopbreak(m->base);
	}
}

static void render(struct buf *out, void *arg)
{
	struct monitor *m = arg;
	mm_expose(out, m->probes, m->n);
}

static void make_run_id(char *run)
{
	unsigned char r[PROBE_RUN_LEN / 2];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		/* never expected; the time and pid still tell runs apart */
		uint64_t t = wall_usec() ^ ((uint64_t)getpid() << 40);
		memcpy(r, &t, sizeof(r));
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(run + 2 * i, 3, "%02x", r[i]);
}

int monitor_run(const struct mm_config *c, int *listen_fds)
{
	struct monitor *m = xcalloc(1, sizeof(*m));
	static const int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP };
	struct event *sig_ev[4];
	int status = 0;

	signal(SIGPIPE, SIG_IGN);
	m->c = c;
	m->n = c->nprobe;
	make_run_id(m->run);
	m->base = event_base_new();
	if (m->base == NULL)
		fatal("event_base_new failed");
	for (int i = 0; i < 4; i++) {
		sig_ev[i] = evsignal_new(m->base, sigs[i], on_signal, m);
		evsignal_add(sig_ev[i], NULL);
	}
	m->watcher = watcher_new(m->base, on_arrival, m);
	if (m->watcher == NULL) {
		status = 1;
		goto out;
	}
	for (int i = 0; i < m->n; i++) {
		probe_init(&m->probes[i], &c->probe[i]);
		m->slot[i] = (struct slot){ m, i };
		m->send_ev[i] = event_new(m->base, -1, EV_PERSIST, on_send, &m->slot[i]);
		m->check_ev[i] = evtimer_new(m->base, on_check, &m->slot[i]);
		alert_queue_init(&m->alerts[i]);
		m->alert_ev[i] = evtimer_new(m->base, on_alert_timeout, &m->slot[i]);
		if (watcher_add(m->watcher, c->probe[i].maildir) < 0)
			status = 1;
	}
	if (status != 0)
		goto out;
	watcher_scan_all(m->watcher);
	if (c->nlisten > 0) {
		m->http = metrics_http_start(m->base, listen_fds, c->nlisten, render, m);
		if (m->http == NULL) {
			status = 1;
			goto out;
		}
	}
	for (int i = 0; i < m->n; i++) {
		struct timeval iv = tv_usec(c->interval_usec);
		event_add(m->send_ev[i], &iv);
		send_probe(m, i);       /* the first one now */
	}
	log_info("mailmond started: %d probe%s, run %s", m->n, m->n == 1 ? "" : "s", m->run);
	event_base_dispatch(m->base);

out:
	/* senders still running: stop them (they hold nothing of ours) */
	for (int i = 0; i < m->n; i++) {
		struct probe *p = &m->probes[i];
		if (p->sender_pid > 0) {
			kill(p->sender_pid, SIGTERM);
			waitpid(p->sender_pid, NULL, 0);
			close(p->sender_fd);
		}
	}
	/* alerts still running: killed (their process groups), reaped */
	for (int i = 0; i < m->n; i++) {
		struct alert_queue *q = &m->alerts[i];
		if (q->pid > 0) {
			kill(-q->pid, SIGKILL);
			waitpid(q->pid, NULL, 0);
			log_warn("probe %s: alert_command (%s, pid %ld) killed: mailmond stops",
			    m->probes[i].conf->name, q->running.state, (long)q->pid);
		}
		if (q->n > 0)
			log_warn("probe %s: %zu alert%s not run: mailmond stops",
			    m->probes[i].conf->name, q->n, q->n == 1 ? "" : "s");
	}
	if (m->http != NULL)
		metrics_http_free(m->http);
	watcher_free(m->watcher);
	for (int i = 0; i < m->n; i++) {
		if (m->send_ev[i] != NULL)
			event_free(m->send_ev[i]);
		if (m->check_ev[i] != NULL)
			event_free(m->check_ev[i]);
		if (m->alert_ev[i] != NULL)
			event_free(m->alert_ev[i]);
		probe_free(&m->probes[i]);
	}
	for (int i = 0; i < 4; i++)
		event_free(sig_ev[i]);
	event_base_free(m->base);
	free(m);
	log_info("mailmond stopped");
	return status;
}
