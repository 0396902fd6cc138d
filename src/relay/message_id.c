/*
 * message_id.c - Mailman 3 refuses a message without a Message-ID, so the
 * copy a list manager gets has one: when the header section has no
 * Message-ID field, "Message-ID: <QUEUEID.mailprocd@HOSTNAME>" goes before
 * the message.  Made of the queue id alone, it is the same on every
 * attempt, so a retry is the same message to the list manager.
 */
#include "relay/relay_private.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCAN_CHUNK 8192

static const char field[] = "message-id:";

/* 1 when the header section of the stored message (LF line ends) has a
 * Message-ID field, 0 when not, -1 on a read error. */
static int has_message_id(int fd, uint64_t offset, uint64_t size)
{
	char buf[SCAN_CHUNK];
	int bol = 1, match = 0;

	for (uint64_t done = 0; done < size;) {
		size_t want = size - done < sizeof(buf) ? (size_t)(size - done) : sizeof(buf);
		ssize_t n = pread(fd, buf, want, (off_t)(offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		for (ssize_t i = 0; i < n; i++) {
			char ch = buf[i];
			if (bol) {
				if (ch == '\n')
					return 0;       /* the end of the header section */
				match = 0;
			}
			if (match >= 0) {
				if (tolower((unsigned char)ch) != field[match])
					match = -1;
				else if (field[++match] == '\0')
					return 1;
			}
			bol = ch == '\n';
		}
		done += (uint64_t)n;
	}
	return 0;
}

/* Letters, digits, '.', '-' and '_' only: it goes into a header field. */
static int word_ok(const char *s)
{
	if (s == NULL || *s == '\0' || strlen(s) > 255)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '-' && *s != '_')
			return 0;
	return 1;
}

int message_id_prepare(struct relay_job *job, const char *hostname)
{
	int has = has_message_id(job->fd, job->msg_offset, job->msg_size);
	if (has != 0)
		return has < 0 ? -1 : 0;
	job->add_header = xasprintf("Message-ID: <%s.mailprocd@%s>\r\n",
	    word_ok(job->qid) ? job->qid : "unknown",
	    word_ok(hostname) ? hostname : "localhost");
	return 0;
}
