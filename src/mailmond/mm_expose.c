/*
 * mm_expose.c - rendering each probe's figures (see mm_expose.h).
 */
#include "mailmond/mm_expose.h"
#include "metrics/prom_text.h"

#include <stddef.h>

static void counter(struct buf *out, const struct probe *probes, int n, const char *name,
    const char *help, size_t offset)
{
	prom_family(out, name, "counter", help);
	for (int i = 0; i < n; i++) {
		const uint64_t *v = (const uint64_t *)((const char *)&probes[i] + offset);
		prom_sample_u64(out, name, (const char *[]){ "probe", probes[i].conf->name, NULL },
		    *v);
	}
}

void mm_expose(struct buf *out, const struct probe *probes, int n)
{
	prom_family(out, "mailmond_probe_delay_seconds", "histogram",
	    "How long probes took from the start of sending to their arrival in the maildir.");
	for (int i = 0; i < n; i++)
		prom_histogram(out, "mailmond_probe_delay_seconds",
		    (const char *[]){ "probe", probes[i].conf->name, NULL }, &probes[i].delay,
		    &metrics_delay_bounds);

	prom_family(out, "mailmond_probe_last_delay_seconds", "gauge",
	    "The delay of the probe that arrived last (0 before the first).");
	for (int i = 0; i < n; i++)
		prom_sample(out, "mailmond_probe_last_delay_seconds",
		    (const char *[]){ "probe", probes[i].conf->name, NULL }, probes[i].last_delay);

	counter(out, probes, n, "mailmond_probes_sent_total",
	    "Probes the server accepted.", offsetof(struct probe, sent));
	counter(out, probes, n, "mailmond_probe_send_failures_total",
	    "Probes that could not be sent (refused, no connection, timeout).",
	    offsetof(struct probe, send_failures));
	counter(out, probes, n, "mailmond_probes_received_total",
	    "Probes of this run that arrived in the maildir.", offsetof(struct probe, received));
	counter(out, probes, n, "mailmond_probes_late_total",
	    "Probes not seen by late_after, or not sent at all.", offsetof(struct probe, late));
	counter(out, probes, n, "mailmond_probes_lost_total",
	    "Probes not seen by lost_after.", offsetof(struct probe, lost));

	prom_family(out, "mailmond_probe_state", "gauge",
	    "The probe's state: 1 for the current one of ok, late and lost.");
	for (int i = 0; i < n; i++) {
		for (int s = PROBE_OK; s <= PROBE_LOST; s++)
			prom_sample_u64(out, "mailmond_probe_state",
			    (const char *[]){ "probe", probes[i].conf->name, "state",
				probe_state_name(s), NULL }, probes[i].state == (enum probe_state)s);
	}
}
