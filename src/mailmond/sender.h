/*
 * sender.h - sending one probe from a short-lived child process, so that
 * a slow or hung server never stalls the loop that timestamps arrivals.
 * The child has a timer (the config's `timeout`) that ends it; it writes
 * why a send failed into a pipe the parent reads when it reaps it.
 */
#ifndef MM_SENDER_H
#define MM_SENDER_H

#include "mailmond/mm_config.h"
#include "mailmond/probe_msg.h"

#include <stddef.h>
#include <sys/types.h>

/* Fork the child that sends probe id along pr.  Returns its pid and the
 * read end of its reason pipe in *reason_fd (close-on-exec), or -1
 * (logged). */
pid_t sender_start(const struct mm_config *c, const struct mm_probe_conf *pr,
    const struct probe_id *id, int *reason_fd);

/* After the child was reaped with wait status `status`: 0 when the probe
 * was accepted, else -1 with the reason in why.  Closes reason_fd. */
int sender_result(int status, int reason_fd, const struct mm_config *c, char *why,
    size_t whylen);

#endif
