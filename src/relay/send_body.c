/*
 * send_body.c - streams a stored message (LF line ends, not dot-stuffed)
 * as SMTP DATA: CRLF line ends, dot-stuffing, end-of-data.
 */
#include "relay/send_body.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

void send_body_init(struct send_body *b, int fd, uint64_t offset, uint64_t size)
{
	b->fd = fd;
	b->off = offset;
	b->left = size;
	b->at_bol = 1;
	b->done = 0;
}

size_t send_body_convert(const char *in, size_t n, int *at_bol, char *out)
{
	size_t o = 0;
	int bol = *at_bol;

	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (bol && c == '.')
			out[o++] = '.';
		if (c == '\n') {
			out[o++] = '\r';
			bol = 1;
		} else {
			bol = 0;
		}
		out[o++] = c;
	}
	*at_bol = bol;
	return o;
}

size_t send_body_finish(int at_bol, char *out)
{
	static const char tail[] = "\r\n.\r\n";
	const char *t = at_bol ? tail + 2 : tail;
	size_t n = strlen(t);

	memcpy(out, t, n);
	return n;
}

ssize_t send_body_next(struct send_body *b, char *out)
{
	static char in[SEND_BODY_CHUNK];
	size_t o = 0;

	if (b->done)
		return 0;
	if (b->left > 0) {
		size_t want = b->left < sizeof(in) ? (size_t)b->left : sizeof(in);
		ssize_t n;
		do {
			n = pread(b->fd, in, want, (off_t)b->off);
		} while (n < 0 && errno == EINTR);
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		b->off += (uint64_t)n;
		b->left -= (uint64_t)n;
		o = send_body_convert(in, (size_t)n, &b->at_bol, out);
	}
	if (b->left == 0) {
		o += send_body_finish(b->at_bol, out + o);
		b->done = 1;
	}
	return (ssize_t)o;
}
