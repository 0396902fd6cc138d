/*
 * mm_listen.c - listening sockets for the metrics endpoint (see
 * mm_listen.h).
 */
#include "mailmond/mm_listen.h"
#include "lib/tcp_listen.h"

#include <unistd.h>

static int open_one(const struct mm_listen *l)
{
	return tcp_listen("listen metrics", l->host, l->port, 64);
}

int mm_listen_open(const struct mm_config *c, int *fds)
{
	for (int i = 0; i < c->nlisten; i++) {
		fds[i] = open_one(&c->listen[i]);
		if (fds[i] < 0) {
			while (i-- > 0)
				close(fds[i]);
			return -1;
		}
	}
	return 0;
}
