/*
 * mm_expose.h - mailmond's figures in the Prometheus text exposition
 * format 0.0.4 (the mailmond_* families, label `probe`).
 */
#ifndef MM_EXPOSE_H
#define MM_EXPOSE_H

#include "mailmond/probe_state.h"

struct buf;

void mm_expose(struct buf *out, const struct probe *probes, int n);

#endif
