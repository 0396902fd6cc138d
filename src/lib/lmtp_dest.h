/*
 * lmtp_dest.h - a mailing list manager's LMTP destination, as written in
 * the lists source: `lmtp:HOST:PORT` (HOST a name, an IPv4 address or
 * `[IPv6]`) or `lmtp:unix:/absolute/path`.  Checked by the database
 * compiler, parsed again by the relay that connects to it.
 */
#ifndef MP_LMTP_DEST_H
#define MP_LMTP_DEST_H

#include <stddef.h>

#define LMTP_DEST_HOST_MAX 256
#define LMTP_DEST_PATH_MAX 108  /* sizeof(sun_path) */

struct lmtp_dest {
	int is_unix;
	char host[LMTP_DEST_HOST_MAX];  /* without the brackets of [IPv6] */
	char port[8];
	char path[LMTP_DEST_PATH_MAX];
};

/* 0, or -1 with the reason in err. */
int lmtp_dest_parse(const char *text, struct lmtp_dest *out, char *err, size_t errlen);

#endif
