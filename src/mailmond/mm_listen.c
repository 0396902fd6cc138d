/*
 * mm_listen.c - listening sockets for the metrics endpoint (see
 * mm_listen.h).
 */
#include "mailmond/mm_listen.h"
#include "lib/log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int open_one(const struct mm_listen *l)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res;
	int fd = -1, one = 1;
	int r = getaddrinfo(l->host, l->port, &hints, &res);

	if (r != 0) {
		log_warn("listen metrics %s:%s: %s", l->host, l->port, gai_strerror(r));
		return -1;
	}
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
			break;
		log_warn("listen metrics %s:%s: %s", l->host, l->port, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
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
