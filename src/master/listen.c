/*
 * listen.c - TCP and unix listening sockets for the receiver.
 */
#include "master/listen.h"
#include "lib/log.h"
#include "lib/privsep.h"
#include "lib/tcp_listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG 511

static int open_tcp(const struct listen_spec *l)
{
	return tcp_listen("listen", l->host, l->port, LISTEN_BACKLOG);
}

static int open_unix_socket(const char *path, int type, mode_t mode) __attribute__((nonnull));

/* A unix listener with its configured owner and group (the master runs as
 * root for an owner other than itself: main.c checks that at start-up). */
static int open_unix(const struct listen_spec *l)
{
	int fd = open_unix_socket(l->path, SOCK_STREAM, l->mode);
	uid_t uid = l->owner ? l->owner_uid : (uid_t)-1;
	gid_t gid = (gid_t)-1;

	if (fd < 0 || (l->group == NULL && l->owner == NULL))
		return fd;
	if (l->group != NULL && privsep_lookup_group(l->group, &gid) < 0) {
		log_warn("listen unix:%s: unknown group %s", l->path, l->group);
		goto fail;
	}
	if (chown(l->path, uid, gid) < 0) {
		log_warn("listen unix:%s: cannot give it to %s%s%s: %s", l->path,
		    l->owner ? l->owner : "", l->owner && l->group ? ":" : "",
		    l->group ? l->group : "", strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	unlink(l->path);
	return -1;
}

/* A listening unix socket at path with that mode. */
static int open_unix_socket(const char *path, int type, mode_t mode)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_warn("listen unix:%s: path too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	/* Remove a stale socket left by an unclean stop, but nothing else. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_warn("listen unix:%s: exists and is not a socket", path);
			return -1;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("listen unix:%s: socket: %s", path, strerror(errno));
		return -1;
	}
	mode_t old = umask(0777);       /* no window with a too-open socket */
	int r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		log_warn("listen unix:%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (chmod(path, mode) < 0) {
		log_warn("listen unix:%s: chmod: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

int listen_open_all(const struct config *cfg, int *fds)
{
	for (int i = 0; i < cfg->nlisten; i++)
		fds[i] = -1;
	for (int i = 0; i < cfg->nlisten; i++) {
		const struct listen_spec *l = &cfg->listen[i];
		fds[i] = l->is_unix ? open_unix(l) : open_tcp(l);
		if (fds[i] < 0) {
			listen_close_all(cfg, fds, 1);
			return -1;
		}
	}
	return 0;
}

void listen_close_all(const struct config *cfg, int *fds, int unlink_unix)
{
	for (int i = 0; i < cfg->nlisten; i++) {
		if (fds[i] >= 0) {
			close(fds[i]);
			if (unlink_unix && cfg->listen[i].is_unix)
				unlink(cfg->listen[i].path);
		}
		fds[i] = -1;
	}
}

int listen_open_control(const char *run_dir, char *path, size_t pathlen)
{
	if ((size_t)snprintf(path, pathlen, "%s/control.sock", run_dir) >= pathlen) {
		log_warn("control socket: run_dir too long");
		return -1;
	}
	return open_unix_socket(path, SOCK_SEQPACKET, 0600);
}
