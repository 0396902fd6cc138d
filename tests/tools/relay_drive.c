/*
 * relay_drive.c - test driver for the relay process: plays the qmgr.
 *
 * Forks relay_main() on one end of a SOCK_SEQPACKET socketpair, submits
 * jobs for one message file and prints what comes back:
 *
 *   result JOB INDEX STATUS DSN TEXT
 *   done JOB
 *   relay-exit CODE SECONDS     (after closing its socket)
 *
 * The message is stored in a temporary file between a header and a
 * trailer, as in a queue file, so that the relay must honour the offset
 * and size it is given; the file's own offset is moved and checked to be
 * untouched at the end.
 *
 * usage: relay_drive [-n JOBS] [-s SENDER] [-r RCPT]... [-8] [-0] [-S] [-k|-w]
 *            [-d SECONDS] [-i SECONDS] [-I SECONDS] [-t SECONDS] [-H HELO] [-v]
 *            HOST:PORT MESSAGE-FILE
 *   -n  jobs to submit (default 1)      -S  one at a time (wait for done)
 *   -s  envelope sender ("" = <>)       -r  recipient (repeatable)
 *   -8  mark the message 8BITMIME       -0  malformed jobs: no recipients
 *   -k  close the socket right after submitting (the relay must drop
 *       what is in flight and exit)
 *   -w  shut down writing right after submitting, then read results until
 *       the relay closes (queued jobs fail, jobs in flight finish)
 *   -d  wait SECONDS after submitting before reading results (the relay's
 *       results pile up) or before -k / -w (jobs are in flight)
 *   -i  wait SECONDS after the last done before closing (idle connections)
 *   -I  the relay's relay_idle_timeout in whole SECONDS (default 30)
 *   -t  give up after SECONDS (default 120)  -v  relay debug log on stderr
 * Exit 0 when every job got its done (or, with -k, the relay exited 0).
 */
#include "conf/config.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "relay/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RCPTS 100
#define HEADER "V MPQ1 header of the queue file\n.leading junk\n"
#define TRAILER "\nD 0 trailing state record\n"

static struct ipc_msg m;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: relay_drive [-n JOBS] [-s SENDER] [-r RCPT]... [-8] [-0] [-S] "
	    "[-k|-w] [-d SECONDS] [-i SECONDS] [-I SECONDS] [-t SECONDS] [-H HELO] [-v] HOST:PORT MESSAGE-FILE\n");
	exit(2);
}

static void write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t k = write(fd, c, n);
		if (k < 0) {
			perror("write");
			exit(2);
		}
		c += k;
		n -= (size_t)k;
	}
}

/* The spool file: header, message, trailer.  Returns its fd (read-only)
 * and the message's offset and size. */
static int make_spool(const char *path, uint64_t *offset, uint64_t *size)
{
	char tmp[] = "/tmp/relay_drive.XXXXXX";
	int in = open(path, O_RDONLY), out = mkstemp(tmp);
	char buf[65536];
	ssize_t n;

	if (in < 0 || out < 0) {
		fprintf(stderr, "relay_drive: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	write_all(out, HEADER, strlen(HEADER));
	*offset = strlen(HEADER);
	*size = 0;
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		write_all(out, buf, (size_t)n);
		*size += (uint64_t)n;
	}
	write_all(out, TRAILER, strlen(TRAILER));
	close(in);
	close(out);
	int fd = open(tmp, O_RDONLY);
	unlink(tmp);
	if (fd < 0 || lseek(fd, 5, SEEK_SET) != 5) {
		perror("relay_drive: spool");
		exit(2);
	}
	return fd;
}

static void submit(int sock, uint64_t id, const char *sender, uint64_t off, uint64_t size,
    int eightbit, const char **rcpts, int nrcpt, int spool)
{
	ipc_init(&m, MSG_RELAY_JOB);
	ipc_add_u64(&m, id);
	ipc_add_str(&m, sender);
	ipc_add_u64(&m, off);
	ipc_add_u64(&m, size);
	ipc_add_u32(&m, (uint32_t)eightbit);
	ipc_add_u32(&m, (uint32_t)nrcpt);
	for (int i = 0; i < nrcpt; i++)
		ipc_add_str(&m, rcpts[i]);
	ipc_add_str(&m, "");            /* to relay_host */
	ipc_add_str(&m, "DRIVE");       /* queue id */
	ipc_set_fd(&m, spool);
	if (ipc_send(sock, &m) < 0) {
		perror("relay_drive: submit");
		exit(2);
	}
}

/* Read one message (waiting until deadline).  1: got one, 0: EOF. */
static int receive(int sock, double deadline)
{
	for (;;) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		int left = (int)((deadline - now()) * 1000);
		if (left <= 0) {
			fprintf(stderr, "relay_drive: timeout\n");
			exit(1);
		}
		if (poll(&p, 1, left) < 0 && errno != EINTR) {
			perror("poll");
			exit(2);
		}
		if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		int r = ipc_recv(sock, &m);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r < 0) {
			perror("relay_drive: recv");
			exit(1);
		}
		return r;
	}
}

/* Print one message from the relay; returns 1 for a done. */
static int report(void)
{
	uint64_t id;
	uint32_t index, status;
	const char *dsn, *text;

	if (m.fd >= 0) {
		fprintf(stderr, "relay_drive: unexpected descriptor\n");
		exit(1);
	}
	if (m.type == MSG_RELAY_RESULT && ipc_get_u64(&m, &id) == 0 &&
	    ipc_get_u32(&m, &index) == 0 && ipc_get_u32(&m, &status) == 0 &&
	    ipc_get_str(&m, &dsn) == 0 && ipc_get_str(&m, &text) == 0 && ipc_end(&m) == 0) {
		printf("result %" PRIu64 " %u %u %s %s\n", id, index, status, dsn, text);
		return 0;
	}
	if (m.type == MSG_RELAY_DONE && ipc_get_u64(&m, &id) == 0 && ipc_end(&m) == 0) {
		printf("done %" PRIu64 "\n", id);
		return 1;
	}
	if (m.type == MSG_RELAY_HELLO && ipc_get_u64(&m, &id) == 0 && ipc_end(&m) == 0)
		return 0;       /* the relay's greeting at start */
	fprintf(stderr, "relay_drive: malformed message type %u from the relay\n", m.type);
	exit(1);
}

static int wait_child(pid_t pid, double deadline)
{
	int st;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (now() > deadline) {
			fprintf(stderr, "relay_drive: relay did not exit; killing it\n");
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(10000);
	}
}

int main(int argc, char **argv)
{
	const char *rcpts[MAX_RCPTS], *sender = "sender@example.test", *helo = "relay-drive.test";
	int nrcpt = 0, jobs = 1, eightbit = 0, sequential = 0, kill_early = 0, half_close = 0;
	int verbose = 0, malformed = 0, opt, fds[2];
	double timeout = 120, delay = 0, idle = 0;
	int idle_timeout = 0;

	while ((opt = getopt(argc, argv, "n:s:r:80Skwd:i:I:t:H:v")) != -1) {
		switch (opt) {
		case 'n': jobs = atoi(optarg); break;
		case 's': sender = optarg; break;
		case 'r':
			if (nrcpt == MAX_RCPTS)
				usage();
			rcpts[nrcpt++] = optarg;
			break;
		case '8': eightbit = 1; break;
		case '0': malformed = 1; break;
		case 'S': sequential = 1; break;
		case 'k': kill_early = 1; break;
		case 'w': half_close = 1; break;
		case 'd': delay = atof(optarg); break;
		case 'i': idle = atof(optarg); break;
		case 'I': idle_timeout = atoi(optarg); break;
		case 't': timeout = atof(optarg); break;
		case 'H': helo = optarg; break;
		case 'v': verbose = 1; break;
		default: usage();
		}
	}
	if (argc - optind != 2 || jobs < 1)
		usage();
	if (nrcpt == 0)
		rcpts[nrcpt++] = "rcpt@example.test";

	struct config cfg;
	uint64_t off, size;
	config_defaults(&cfg);
	free(cfg.relay_host);
	cfg.relay_host = strdup(argv[optind]);
	cfg.hostname = strdup(helo);
	if (idle_timeout > 0)
		cfg.relay_idle_timeout = (uint64_t)idle_timeout;
	int spool = make_spool(argv[optind + 1], &off, &size);
	double deadline = now() + timeout;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (ipc_socketpair(fds) < 0) {
		perror("socketpair");
		return 2;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		close(fds[0]);
		close(spool);
		log_init("relay", 1, verbose);
		int rc = relay_main(fds[1], &cfg, -1);
		config_free(&cfg);
		exit(rc == 0 ? 0 : 1);          /* exit: leak checks run */
	}
	close(fds[1]);
	config_free(&cfg);

	int dones = 0, submitted = 0;
	while (submitted < jobs) {
		submit(fds[0], (uint64_t)submitted + 1, sender, off, size, eightbit, rcpts,
		    malformed ? 0 : nrcpt, spool);
		submitted++;
		if (sequential)
			while (dones < submitted) {
				if (receive(fds[0], deadline) == 0) {
					fprintf(stderr, "relay_drive: relay closed early\n");
					return 1;
				}
				dones += report();
			}
	}
	if (delay > 0)
		usleep((useconds_t)(delay * 1e6));
	if (kill_early) {
		double t0 = now();
		close(fds[0]);
		int code = wait_child(pid, deadline);
		printf("relay-exit %d %.2f\n", code, now() - t0);
		return code == 0 ? 0 : 1;
	}
	if (half_close)
		shutdown(fds[0], SHUT_WR);
	while (dones < jobs) {
		if (receive(fds[0], deadline) == 0) {
			fprintf(stderr, "relay_drive: relay closed with %d of %d jobs done\n",
			    dones, jobs);
			return 1;
		}
		dones += report();
	}
	if (lseek(spool, 0, SEEK_CUR) != 5) {
		fprintf(stderr, "relay_drive: the spool file's offset moved\n");
		return 1;
	}
	if (idle > 0)
		usleep((useconds_t)(idle * 1e6));
	double t0 = now();
	if (half_close) {
		while (receive(fds[0], deadline) == 1)     /* until the relay closes */
			report();
	}
	close(fds[0]);
	int code = wait_child(pid, deadline + 30);
	printf("relay-exit %d %.2f\n", code, now() - t0);
	return code == 0 ? 0 : 1;
}
