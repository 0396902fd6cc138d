/*
 * expose_qmgr.c - the qmgr's figures (qmgr_figures.h) as exposition text:
 * the queue, deliveries and their delays, spam checks, workers, bounces.
 */
#include "metrics/expose.h"
#include "metrics/prom_text.h"
#include "metrics/qmgr_figures.h"

static const char *const queue_states[FQ_COUNT] = { "active", "deferred", "corrupt" };
static const char *const statuses[FD_COUNT] = { "delivered", "deferred", "bounced" };
static const char *const actions[FA_COUNT] = {
	"maildir", "mbox", "pipe", "forward", "list", "discard", "none"
};
static const char *const stages[FS_COUNT] = { "queue", "worker", "total" };
static const char *const verdicts[FV_COUNT] = { "spam", "ham", "unchecked" };
static const char *const worker_states[FW_COUNT] = {
	"starting", "idle", "busy", "waiting", "checking"
};

static void queue(struct buf *out, const struct metrics_qmgr *q, uint64_t now_usec)
{
	prom_family(out, "mailprocd_queue_messages", "gauge", "Messages in the queue, by state.");
	for (int s = 0; s < FQ_COUNT; s++)
		prom_sample(out, "mailprocd_queue_messages", (const char *[]){ "state",
		    queue_states[s], NULL }, (double)metrics_gauge_read(&q->queue_messages[s]));
	uint64_t oldest = metrics_read(&q->queue_oldest_arrival_usec);
	prom_family(out, "mailprocd_queue_oldest_age_seconds", "gauge",
	    "Age of the oldest message in the queue (0 when it is empty).");
	prom_sample(out, "mailprocd_queue_oldest_age_seconds", NULL,
	    oldest != 0 && now_usec > oldest ? (double)(now_usec - oldest) / 1e6 : 0);
}

static void deliveries(struct buf *out, const struct metrics_qmgr *q)
{
	prom_family(out, "mailprocd_deliveries_total", "counter",
	    "Results of delivery attempts per recipient, by status and action "
	    "(a deferral counts at each attempt).");
	for (int s = 0; s < FD_COUNT; s++)
		for (int a = 0; a < FA_COUNT; a++)
			prom_sample_u64(out, "mailprocd_deliveries_total", (const char *[]){
			    "status", statuses[s], "action", actions[a], NULL },
			    metrics_read(&q->deliveries[s][a]));
	prom_family(out, "mailprocd_delivery_delay_seconds", "histogram",
	    "Delay of each recipient's final result (delivered or bounced), by stage: "
	    "queue (arrival to the last attempt), worker (that attempt), total.");
	for (int s = 0; s < FS_COUNT; s++)
		prom_histogram(out, "mailprocd_delivery_delay_seconds", (const char *[]){
		    "stage", stages[s], NULL }, &q->delay[s], &metrics_delay_bounds);
	prom_family(out, "mailprocd_bounces_total", "counter", "Delivery status notifications queued.");
	prom_sample_u64(out, "mailprocd_bounces_total", NULL, metrics_read(&q->bounces_sent));
}

static void spam_and_workers(struct buf *out, const struct metrics_qmgr *q)
{
	prom_family(out, "mailprocd_spam_checks_total", "counter", "Spam checks, by verdict.");
	for (int v = 0; v < FV_COUNT; v++)
		prom_sample_u64(out, "mailprocd_spam_checks_total", (const char *[]){
		    "verdict", verdicts[v], NULL }, metrics_read(&q->spam_checks[v]));
	prom_family(out, "mailprocd_spam_check_duration_seconds", "histogram",
	    "Duration of spam checks.");
	prom_histogram(out, "mailprocd_spam_check_duration_seconds", NULL, &q->spam_duration,
	    &metrics_spam_bounds);
	prom_family(out, "mailprocd_workers", "gauge", "Worker processes, by state.");
	for (int w = 0; w < FW_COUNT; w++)
		prom_sample(out, "mailprocd_workers", (const char *[]){ "state", worker_states[w],
		    NULL }, (double)metrics_gauge_read(&q->workers[w]));
}

void expose_qmgr(struct buf *out, const struct metrics_qmgr *q, uint64_t now_usec)
{
	queue(out, q, now_usec);
	deliveries(out, q);
	spam_and_workers(out, q);
}
