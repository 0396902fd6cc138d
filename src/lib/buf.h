/*
 * buf.h - a growable byte buffer with overflow-checked growth.  Always
 * NUL-terminated after its contents so it can be used as a C string.
 */
#ifndef MP_BUF_H
#define MP_BUF_H

#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Hand the contents to the caller (NUL-terminated); the buffer is emptied. */
char *buf_steal(struct buf *b);

#endif
