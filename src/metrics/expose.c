/*
 * expose.c - the whole exposition: the daemon's build and start time, the
 * session families (they span the receiver's and the policy service's
 * regions, and one family must be one group of lines), then each owner's
 * families through its renderer.
 */
#include "metrics/expose.h"
#include "metrics/policy_figures.h"
#include "metrics/prom_text.h"
#include "metrics/qmgr_figures.h"
#include "metrics/receiver_figures.h"

static const char *const protocol_names[FP_COUNT] = { "smtp", "lmtp" };

/* The creation time of the first region there is: the master's start. */
static uint64_t start_usec(const struct metrics_view *v)
{
	if (v->receiver != NULL && v->receiver->hdr.created_usec)
		return v->receiver->hdr.created_usec;
	if (v->qmgr != NULL && v->qmgr->hdr.created_usec)
		return v->qmgr->hdr.created_usec;
	if (v->policy != NULL && v->policy->hdr.created_usec)
		return v->policy->hdr.created_usec;
	return 0;
}

/* mailprocd_sessions and mailprocd_sessions_started_total (not
 * mailprocd_sessions_total, which OpenMetrics parsers would take for the
 * gauge's counter): SMTP and LMTP from the receiver, policy from the
 * policy service. */
static void expose_sessions(struct buf *out, const struct metrics_view *v)
{
	const char *labels[] = { "protocol", NULL, NULL };

	prom_family(out, "mailprocd_sessions", "gauge", "Sessions open now, by protocol.");
	for (int p = 0; p < FP_COUNT && v->receiver != NULL; p++) {
		labels[1] = protocol_names[p];
		prom_sample(out, "mailprocd_sessions", labels,
		    (double)metrics_gauge_read(&v->receiver->sessions[p]));
	}
	if (v->policy != NULL) {
		labels[1] = "policy";
		prom_sample(out, "mailprocd_sessions", labels,
		    (double)metrics_gauge_read(&v->policy->sessions));
	}
	prom_family(out, "mailprocd_sessions_started_total", "counter",
	    "Sessions accepted since the daemon started, by protocol.");
	for (int p = 0; p < FP_COUNT && v->receiver != NULL; p++) {
		labels[1] = protocol_names[p];
		prom_sample_u64(out, "mailprocd_sessions_started_total", labels,
		    metrics_read(&v->receiver->sessions_total[p]));
	}
	if (v->policy != NULL) {
		labels[1] = "policy";
		prom_sample_u64(out, "mailprocd_sessions_started_total", labels,
		    metrics_read(&v->policy->sessions_total));
	}
}

void expose_all(struct buf *out, const struct metrics_view *v, uint64_t now_usec)
{
	prom_family(out, "mailprocd_build_info", "gauge",
	    "Always 1; the version of mailprocd in its label.");
	prom_sample(out, "mailprocd_build_info", (const char *[]){ "version", MP_VERSION, NULL }, 1);
	uint64_t start = start_usec(v);
	if (start != 0) {
		prom_family(out, "mailprocd_start_time_seconds", "gauge",
		    "When the daemon started, in seconds since the Unix epoch.");
		prom_sample(out, "mailprocd_start_time_seconds", NULL, (double)(start / 1000000u));
	}
	if (v->receiver != NULL || v->policy != NULL)
		expose_sessions(out, v);
	if (v->receiver != NULL)
		expose_receiver(out, v->receiver, now_usec);
	if (v->qmgr != NULL)
		expose_qmgr(out, v->qmgr, now_usec);
	if (v->policy != NULL)
		expose_policy(out, v->policy, now_usec);
}
