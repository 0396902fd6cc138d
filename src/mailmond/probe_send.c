/*
 * probe_send.c - the client side of one SMTP/LMTP transaction (RFC 5321,
 * RFC 2033): greeting, EHLO or LHLO, MAIL, RCPT, DATA, the message, QUIT.
 * Replies are assembled by the relay's bounded reply parser
 * (relay/smtp_client_reply.h), since the server may be anything.
 */
#include "mailmond/probe_send.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "relay/smtp_client_reply.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct conn {
	int fd;
	char in[4096];
	size_t len, off;
	struct smtp_client_reply reply;
	char *err;
	size_t errlen;
};

static int connect_target(const struct mm_probe_conf *pr, char *err, size_t errlen)
{
	if (pr->dest.is_unix) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", pr->dest.path);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			snprintf(err, errlen, "connect to %s: %s", pr->target, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		return fd;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	int r = getaddrinfo(pr->dest.host, pr->dest.port, &hints, &res);
	if (r != 0) {
		snprintf(err, errlen, "%s: %s", pr->target, gai_strerror(r));
		return -1;
	}
	int fd = -1, saved = 0;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		saved = errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(err, errlen, "connect to %s: %s", pr->target, strerror(saved));
	return fd;
}

/* Read one whole reply into c->reply; its code, or -1. */
static int read_reply(struct conn *c, const char *after)
{
	for (;;) {
		if (c->off == c->len) {
			ssize_t n = read(c->fd, c->in, sizeof(c->in));
			if (n <= 0) {
				snprintf(c->err, c->errlen, "connection closed after %s%s%s", after,
				    n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
				return -1;
			}
			c->off = 0;
			c->len = (size_t)n;
		}
		size_t used;
		enum smtp_client_status st = smtp_client_reply_feed(&c->reply, c->in + c->off,
		    c->len - c->off, &used);
		c->off += used;
		if (st == SMTP_CLIENT_DONE)
			return c->reply.code;
		if (st == SMTP_CLIENT_BAD) {
			snprintf(c->err, c->errlen, "bad reply after %s: %s", after, c->reply.error);
			return -1;
		}
	}
}

/* Send a command (or, with cmd NULL, nothing) and expect a reply of class
 * want (2 or 3).  0, or -1 with the reason. */
static int step(struct conn *c, const char *cmd, const char *what, int want)
{
	if (cmd != NULL && write_all(c->fd, cmd, strlen(cmd)) < 0) {
		snprintf(c->err, c->errlen, "sending %s: %s", what, strerror(errno));
		return -1;
	}
	int code = read_reply(c, what);
	if (code < 0)
		return -1;
	if (code / 100 != want) {
		snprintf(c->err, c->errlen, "%s refused: %s", what, c->reply.text);
		return -1;
	}
	return 0;
}

int probe_send(const struct mm_probe_conf *pr, const char *helo, const char *from,
    const struct buf *msg, char *err, size_t errlen)
{
	struct conn c = { .err = err, .errlen = errlen };
	char cmd[600];
	int rc = -1;

	smtp_client_reply_init(&c.reply);
	c.fd = connect_target(pr, err, errlen);
	if (c.fd < 0)
		return -1;
	if (step(&c, NULL, "the greeting", 2) < 0)
		goto out;
	snprintf(cmd, sizeof(cmd), "%s %s\r\n", pr->lmtp ? "LHLO" : "EHLO", helo);
	if (step(&c, cmd, pr->lmtp ? "LHLO" : "EHLO", 2) < 0)
		goto out;
	snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>\r\n", from);
	if (step(&c, cmd, "MAIL FROM", 2) < 0)
		goto out;
	snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", pr->to);
	if (step(&c, cmd, "RCPT TO", 2) < 0)
		goto out;
	if (step(&c, "DATA\r\n", "DATA", 3) < 0)
		goto out;
	/*
	 * The message and its end in one write: written apart, the small
	 * ".\r\n" waits (Nagle) for the peer's delayed ACK of the message,
	 * about 40 ms on Linux, and that wait would be counted in every
	 * probe's delay.
	 */
	struct buf data = BUF_INIT;
	buf_append(&data, msg->data, msg->len);
	buf_append(&data, ".\r\n", 3);
	int wrote = write_all(c.fd, data.data, data.len);
	buf_free(&data);
	if (wrote < 0) {
		snprintf(err, errlen, "sending the message: %s", strerror(errno));
		goto out;
	}
	/* LMTP answers once per recipient: there is one */
	if (step(&c, NULL, "the message", 2) < 0)
		goto out;
	rc = 0;
	(void)step(&c, "QUIT\r\n", "QUIT", 2);
out:
	close(c.fd);
	return rc;
}
