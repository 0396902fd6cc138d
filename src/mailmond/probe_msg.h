/*
 * probe_msg.h - the probe message: built by the sender, recognised by the
 * maildir watcher.  Each probe carries one header
 *
 *   X-Mailmond-Probe: name=NAME; seq=SEQ; sent=USEC; run=RUN
 *
 * NAME the probe's name, SEQ its sequence number in this run, USEC the
 * wall-clock send time in microseconds since the epoch and RUN 16 hex
 * digits drawn at start-up, so that probes of an earlier run or of
 * another mailmond are told apart.
 */
#ifndef MM_PROBE_MSG_H
#define MM_PROBE_MSG_H

#include "mailmond/mm_config.h"

#include <stddef.h>
#include <stdint.h>

struct buf;

#define PROBE_HEADER_NAME "X-Mailmond-Probe"
/* The watcher reads at most this much of a file to find the header. */
#define PROBE_READ_MAX (64 * 1024)
#define PROBE_RUN_LEN 16

struct probe_id {
	char name[MM_PROBE_NAME_MAX + 1];
	uint64_t seq;
	uint64_t sent_usec;
	char run[PROBE_RUN_LEN + 1];
};

/* The whole message with CRLF line ends, ready for DATA (no line starts
 * with '.'; the end-of-data line is not included). */
void probe_msg_build(struct buf *out, const struct probe_id *id, const char *from,
    const char *to, const char *helo);

enum probe_parse_result {
	PROBE_FOUND,    /* *out filled */
	PROBE_NONE,     /* no probe header: not a probe */
	PROBE_BAD,      /* a probe header that does not parse (*why says why) */
};

/* Look for the probe header in the header section at the start of
 * text[0..len) (a bounded prefix of a file; LF or CRLF line ends; folded
 * lines are unfolded).  The header section ends at the first empty line
 * or at the end of the text. */
enum probe_parse_result probe_msg_parse(const char *text, size_t len, struct probe_id *out,
    const char **why);

#endif
