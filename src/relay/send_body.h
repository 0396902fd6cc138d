/*
 * send_body.h - the message as it goes out after DATA: read from the queue
 * file in chunks (pread; the descriptor's offset is shared and never
 * used), LF line ends turned into CRLF, a '.' at the start of a line
 * doubled (RFC 5321 4.5.2), and the end-of-data sequence added.  Memory is
 * one chunk, whatever the size of the message.
 */
#ifndef MP_SEND_BODY_H
#define MP_SEND_BODY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Message bytes read per chunk. */
#define SEND_BODY_CHUNK (64 * 1024)
/* Output room one chunk may need: every byte doubled at worst, plus the
 * CRLF that ends a last line without LF and ".\r\n". */
#define SEND_BODY_OUT_MAX (2 * SEND_BODY_CHUNK + 8)

struct send_body {
	int fd;
	uint64_t off;           /* next byte to read */
	uint64_t left;          /* bytes still to read */
	int at_bol;             /* the next byte starts a line */
	int done;               /* the end-of-data sequence was produced */
};

void send_body_init(struct send_body *b, int fd, uint64_t offset, uint64_t size);

/* Convert n message bytes; *at_bol is the line state carried between
 * calls (1 at the start of the message).  out must hold 2 * n bytes.
 * Returns the bytes written. */
size_t send_body_convert(const char *in, size_t n, int *at_bol, char *out);

/* The end-of-data sequence for the line state: "\r\n.\r\n" after a last
 * line without LF, ".\r\n" otherwise.  out: at least 6 bytes.  Returns
 * its length. */
size_t send_body_finish(int at_bol, char *out);

/* Produce the next piece of output (at most SEND_BODY_OUT_MAX bytes) into
 * out: a converted chunk, and the end-of-data sequence once the message
 * is all read (then b->done is set).  Returns the length, 0 when done
 * before the call, or -1 with errno on a read error (EIO for a file
 * shorter than announced). */
ssize_t send_body_next(struct send_body *b, char *out);

#endif
