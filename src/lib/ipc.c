/*
 * ipc.c - typed messages with fd passing over SOCK_SEQPACKET.
 *
 * Wire format: u32 type, u32 payload length, payload.  Fields are
 * little-endian fixed-size integers; strings and blobs are a u32 length
 * followed by the bytes (strings carry a trailing NUL that is checked).
 */
#include "lib/ipc.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int ipc_socketpair(int fds[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
}

void ipc_init(struct ipc_msg *m, uint32_t type)
{
	m->type = type;
	m->len = 0;
	m->pos = 0;
	m->fd = -1;
	m->bad = 0;
}

static void add_raw(struct ipc_msg *m, const void *p, size_t len)
{
	if (m->bad || len > IPC_MAX_PAYLOAD - m->len) {
		m->bad = 1;
		return;
	}
	if (len == 0)
		return;
	memcpy(m->data + m->len, p, len);
	m->len += len;
}

void ipc_add_u32(struct ipc_msg *m, uint32_t v)
{
	add_raw(m, &v, sizeof(v));
}

void ipc_add_u64(struct ipc_msg *m, uint64_t v)
{
	add_raw(m, &v, sizeof(v));
}

void ipc_add_i64(struct ipc_msg *m, int64_t v)
{
	add_raw(m, &v, sizeof(v));
}

void ipc_add_blob(struct ipc_msg *m, const void *p, size_t len)
{
	if (len > UINT32_MAX) {
		m->bad = 1;
		return;
	}
	ipc_add_u32(m, (uint32_t)len);
	add_raw(m, p, len);
}

void ipc_add_str(struct ipc_msg *m, const char *s)
{
	if (s == NULL)
		s = "";
	ipc_add_blob(m, s, strlen(s) + 1);
}

void ipc_set_fd(struct ipc_msg *m, int fd)
{
	m->fd = fd;
}

int ipc_send(int sock, struct ipc_msg *m)
{
	if (m->bad) {
		errno = EMSGSIZE;
		return -1;
	}
	uint32_t hdr[2] = { m->type, (uint32_t)m->len };
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = m->data, .iov_len = m->len },
	};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };

	if (m->fd >= 0) {
		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = sizeof(cbuf.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &m->fd, sizeof(int));
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n >= 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

int ipc_recv(int sock, struct ipc_msg *m)
{
	uint32_t hdr[2];
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = m->data, .iov_len = IPC_MAX_PAYLOAD },
	};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct msghdr msg = {
		.msg_iov = iov, .msg_iovlen = 2,
		.msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf),
	};
	ssize_t n;

	ipc_init(m, 0);
	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if (n == 0)
		return 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&m->fd, CMSG_DATA(c), sizeof(int));
	}
	if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < sizeof(hdr) ||
	    hdr[1] != (size_t)n - sizeof(hdr)) {
		if (m->fd >= 0)
			close(m->fd);
		m->fd = -1;
		errno = EBADMSG;
		return -1;
	}
	m->type = hdr[0];
	m->len = hdr[1];
	return 1;
}

static int get_raw(struct ipc_msg *m, void *p, size_t len)
{
	if (m->bad || len > m->len - m->pos) {
		m->bad = 1;
		return -1;
	}
	memcpy(p, m->data + m->pos, len);
	m->pos += len;
	return 0;
}

int ipc_get_u32(struct ipc_msg *m, uint32_t *v)
{
	return get_raw(m, v, sizeof(*v));
}

int ipc_get_u64(struct ipc_msg *m, uint64_t *v)
{
	return get_raw(m, v, sizeof(*v));
}

int ipc_get_i64(struct ipc_msg *m, int64_t *v)
{
	return get_raw(m, v, sizeof(*v));
}

int ipc_get_blob(struct ipc_msg *m, const void **p, size_t *len)
{
	uint32_t l;
	if (ipc_get_u32(m, &l) < 0)
		return -1;
	if (l > m->len - m->pos) {
		m->bad = 1;
		return -1;
	}
	*p = m->data + m->pos;
	*len = l;
	m->pos += l;
	return 0;
}

int ipc_get_str(struct ipc_msg *m, const char **s)
{
	const void *p;
	size_t len;
	if (ipc_get_blob(m, &p, &len) < 0)
		return -1;
	/* exactly one NUL, at the end */
	if (len == 0 || ((const char *)p)[len - 1] != '\0' || memchr(p, '\0', len) != (const char *)p + len - 1) {
		m->bad = 1;
		return -1;
	}
	*s = p;
	return 0;
}

int ipc_end(struct ipc_msg *m)
{
	return (m->bad || m->pos != m->len) ? -1 : 0;
}
