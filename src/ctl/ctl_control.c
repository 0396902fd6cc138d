/*
 * ctl_control.c - the commands that talk to the running daemon over
 * run_dir/control.sock: `learn --spam|--ham ADDRESS < message` (the user's
 * own worker teaches that user's Bayes data) and `status` (processes,
 * workers, counters).  One request, one reply (see lib/msgtypes.h).
 */
#include "conf/config.h"
#include "ctl/ctl.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/ipc.h"
#include "lib/msgtypes.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Learning waits for a worker, which may have to start (a second or two
 * with SpamAssassin) and finish the user's earlier jobs first. */
#define CONTROL_REPLY_TIMEOUT_MS (300 * 1000)

static struct ipc_msg msg;

static int control_connect(const struct config *cfg)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/control.sock",
	    cfg->run_dir) >= sizeof(sun.sun_path)) {
		ctl_error("run_dir is too long");
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		ctl_error("%s: %s (is mailprocd running?)", sun.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Send msg (with its fd, if any), print the reply.  CTL_OK or CTL_ERROR. */
static int ask(const struct config *cfg)
{
	int fd = control_connect(cfg);
	if (fd < 0)
		return CTL_ERROR;
	if (ipc_send(fd, &msg) < 0) {
		ctl_error("sending the request: %s", strerror(errno));
		close(fd);
		return CTL_ERROR;
	}
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r = poll(&p, 1, CONTROL_REPLY_TIMEOUT_MS);
	uint32_t ok;
	const char *text;
	if (r <= 0 || ipc_recv(fd, &msg) <= 0 || msg.type != MSG_CTL_REPLY ||
	    ipc_get_u32(&msg, &ok) < 0 || ipc_get_str(&msg, &text) < 0 || ipc_end(&msg) < 0) {
		ctl_error("no valid answer from mailprocd%s", r == 0 ? " (timed out)" : "");
		close(fd);
		return CTL_ERROR;
	}
	close(fd);
	if (!ok) {
		ctl_error("%s", text);
		return CTL_ERROR;
	}
	fputs(text, stdout);
	if (text[0] && text[strlen(text) - 1] != '\n')
		putchar('\n');
	return CTL_OK;
}

/* The message from stdin in an anonymous file, CRLF made LF. */
static int message_file(const struct config *cfg)
{
	size_t len;
	char *text = ctl_read_message("learn", cfg->max_message_size, &len);
	int fd = -1;

	if (text == NULL)
		return -1;
	if (len == 0)
		ctl_error("learn: no message on standard input");
	else if ((fd = memfd_create("mailprocctl-learn", MFD_CLOEXEC)) < 0)
		ctl_error("memfd_create: %s", strerror(errno));
	else if (write_all(fd, text, len) < 0) {
		ctl_error("learn: %s", strerror(errno));
		close(fd);
		fd = -1;
	}
	free(text);
	return fd;
}

int ctl_learn(const struct config *cfg, char **args, int nargs)
{
	int is_spam;

	if (nargs != 2 || (strcmp(args[0], "--spam") != 0 && strcmp(args[0], "--ham") != 0)) {
		ctl_error("usage: mailprocctl learn --spam|--ham ADDRESS < message");
		return CTL_USAGE;
	}
	is_spam = strcmp(args[0], "--spam") == 0;
	int mfd = message_file(cfg);
	if (mfd < 0)
		return CTL_ERROR;
	ipc_init(&msg, MSG_CTL_LEARN);
	ipc_add_str(&msg, args[1]);
	ipc_add_u32(&msg, (uint32_t)is_spam);
	ipc_set_fd(&msg, mfd);
	int r = ask(cfg);
	close(mfd);
	return r;
}

int ctl_status(const struct config *cfg, char **args, int nargs)
{
	ipc_init(&msg, MSG_CTL_STATUS);
	return ask(cfg);
}
