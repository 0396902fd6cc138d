/*
 * ipc.h - the one message format every mailprocd process speaks.
 *
 * Messages travel over SOCK_SEQPACKET socketpairs, so one send is one
 * message.  A message is a type, a payload built from typed fields and at
 * most one file descriptor (SCM_RIGHTS).  Readers take fields back in the
 * same order with strict checks and finish with ipc_end(), which fails if
 * anything is left over: a malformed message is detected, never guessed at.
 */
#ifndef MP_IPC_H
#define MP_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IPC_MAX_PAYLOAD (64 * 1024)

struct ipc_msg {
	uint32_t type;
	size_t len;             /* bytes of payload */
	size_t pos;             /* read position */
	int fd;                 /* -1 when none */
	int bad;                /* a get or add failed */
	unsigned char data[IPC_MAX_PAYLOAD];
};

/* Create a SOCK_SEQPACKET socketpair with close-on-exec. */
int ipc_socketpair(int fds[2]);

void ipc_init(struct ipc_msg *m, uint32_t type);
void ipc_add_u32(struct ipc_msg *m, uint32_t v);
void ipc_add_u64(struct ipc_msg *m, uint64_t v);
void ipc_add_i64(struct ipc_msg *m, int64_t v);
void ipc_add_str(struct ipc_msg *m, const char *s);      /* NULL sends "" */
void ipc_add_blob(struct ipc_msg *m, const void *p, size_t len);
/* Attach a descriptor; it is not closed by ipc_send. */
void ipc_set_fd(struct ipc_msg *m, int fd);

/* 0 on success, -1 with errno set (EMSGSIZE when an add overflowed). */
int ipc_send(int sock, struct ipc_msg *m);
/* 1 = a message, 0 = end of file, -1 = error (errno; EAGAIN when
 * non-blocking and empty, EBADMSG when malformed).  A received fd is in
 * m->fd and belongs to the caller. */
int ipc_recv(int sock, struct ipc_msg *m);

/* Getters return 0 on success, -1 (and set m->bad) on a short payload. */
int ipc_get_u32(struct ipc_msg *m, uint32_t *v);
int ipc_get_u64(struct ipc_msg *m, uint64_t *v);
int ipc_get_i64(struct ipc_msg *m, int64_t *v);
/* Strings point into the message; valid until the next ipc_recv/ipc_init. */
int ipc_get_str(struct ipc_msg *m, const char **s);
int ipc_get_blob(struct ipc_msg *m, const void **p, size_t *len);
/* 0 when every field was read and no getter failed; -1 otherwise. */
int ipc_end(struct ipc_msg *m);

#endif
