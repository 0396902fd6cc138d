/*
 * metrics.c - the shared memory regions that hold the daemon's figures
 * (one memfd per owner, created by the master), mapping them read-write in
 * the owner and read-only elsewhere, histogram observations and their
 * bucket bounds.  See metrics.h.
 */
#include "metrics/metrics.h"
#include "metrics/policy_figures.h"
#include "metrics/qmgr_figures.h"
#include "metrics/receiver_figures.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

const struct metrics_bounds metrics_delay_bounds = {
	16, { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400 }
};
const struct metrics_bounds metrics_spam_bounds = {
	12, { 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120 }
};

/* Where the figures go until the owner attaches its region (and for good
 * in programs that have none). */
static struct metrics_receiver private_receiver;
static struct metrics_qmgr private_qmgr;
static struct metrics_policy private_policy;

struct metrics_receiver *metrics_receiver = &private_receiver;
struct metrics_qmgr *metrics_qmgr = &private_qmgr;
struct metrics_policy *metrics_policy = &private_policy;

struct metrics_view metrics_status_view;

static const char *const region_names[METRICS_REGION_COUNT] = { "receiver", "qmgr", "policy" };

static size_t region_size(enum metrics_region_kind kind)
{
	switch (kind) {
	case METRICS_RECEIVER: return sizeof(struct metrics_receiver);
	case METRICS_QMGR: return sizeof(struct metrics_qmgr);
	case METRICS_POLICY: return sizeof(struct metrics_policy);
	default: return 0;
	}
}

void metrics_observe(struct metrics_hist *h, const struct metrics_bounds *b, double seconds)
{
	if (!(seconds > 0))             /* negative, zero or NaN */
		seconds = 0;
	for (int i = 0; i < b->n && i < METRICS_MAX_BUCKETS; i++) {
		if (seconds <= b->le[i]) {
			metrics_inc(&h->bucket[i], 1);
			break;
		}
	}
	/* beyond every bound: only the +Inf bucket, which is the count */
	double usec = seconds * 1e6;
	metrics_inc(&h->sum_usec, usec >= 1.8e19 ? UINT64_MAX / 2 : (uint64_t)usec);
	metrics_inc(&h->count, 1);
}

static uint64_t wall_usec(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* One region: a sealed memfd of the struct's size, zero but for its
 * header.  The seals keep anybody from shrinking it under a reader's
 * mapping (which would be SIGBUS there). */
static int region_create(enum metrics_region_kind kind, uint64_t now)
{
	char name[64];
	struct metrics_region_header hdr = {
		.magic = METRICS_MAGIC,
		.version = METRICS_LAYOUT_VERSION,
		.kind = (uint32_t)kind,
		.size = (uint32_t)region_size(kind),
		.created_usec = now,
	};

	snprintf(name, sizeof(name), "mailprocd-metrics-%s", region_names[kind]);
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		log_warn("metrics: memfd_create %s: %s", name, strerror(errno));
		return -1;
	}
	/* 0400: a process given a read-only descriptor cannot open it again
	 * for writing through /proc (only the owner's descriptor writes) */
	if (fchmod(fd, 0400) < 0 || ftruncate(fd, (off_t)hdr.size) < 0 ||
	    pwrite(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		log_warn("metrics: cannot prepare region %s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int metrics_regions_create(int fds[METRICS_REGION_COUNT])
{
	uint64_t now = wall_usec();

	for (int k = 0; k < METRICS_REGION_COUNT; k++)
		fds[k] = -1;
	for (int k = 0; k < METRICS_REGION_COUNT; k++) {
		fds[k] = region_create((enum metrics_region_kind)k, now);
		if (fds[k] < 0) {
			for (int j = 0; j < k; j++) {
				close(fds[j]);
				fds[j] = -1;
			}
			return -1;
		}
	}
	return 0;
}

int metrics_region_reopen_ro(int fd)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, O_RDONLY | O_CLOEXEC);
}

/* Map fd (prot: PROT_READ, with PROT_WRITE for the owner) and check that
 * it is a region of that kind; NULL (logged) if not. */
static void *region_map(enum metrics_region_kind kind, int fd, int prot)
{
	size_t size = region_size(kind);
	struct stat st;

	if (size == 0) {
		log_warn("metrics: no region kind %d", (int)kind);
		return NULL;
	}
	if (fd < 0 || fstat(fd, &st) < 0) {
		log_warn("metrics: %s region: bad descriptor %d", region_names[kind], fd);
		return NULL;
	}
	if ((size_t)st.st_size != size) {
		log_warn("metrics: %s region: %lld bytes, expected %zu", region_names[kind],
		    (long long)st.st_size, size);
		return NULL;
	}
	void *p = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		log_warn("metrics: %s region: mmap: %s", region_names[kind], strerror(errno));
		return NULL;
	}
	const struct metrics_region_header *h = p;
	if (h->magic != METRICS_MAGIC || h->version != METRICS_LAYOUT_VERSION ||
	    h->kind != (uint32_t)kind || h->size != size) {
		log_warn("metrics: descriptor %d is not a %s region", fd, region_names[kind]);
		munmap(p, size);
		return NULL;
	}
	return p;
}

int metrics_attach(enum metrics_region_kind kind, int fd)
{
	void *p = region_map(kind, fd, PROT_READ | PROT_WRITE);

	if (p == NULL)
		return -1;
	switch (kind) {
	case METRICS_RECEIVER: metrics_receiver = p; break;
	case METRICS_QMGR: metrics_qmgr = p; break;
	case METRICS_POLICY: metrics_policy = p; break;
	default: break;
	}
	return 0;
}

const void *metrics_map_ro(enum metrics_region_kind kind, int fd)
{
	return region_map(kind, fd, PROT_READ);
}

void metrics_view_map(struct metrics_view *v, int fds[METRICS_REGION_COUNT])
{
	v->receiver = fds[METRICS_RECEIVER] >= 0 ?
	    metrics_map_ro(METRICS_RECEIVER, fds[METRICS_RECEIVER]) : NULL;
	v->qmgr = fds[METRICS_QMGR] >= 0 ? metrics_map_ro(METRICS_QMGR, fds[METRICS_QMGR]) : NULL;
	v->policy = fds[METRICS_POLICY] >= 0 ?
	    metrics_map_ro(METRICS_POLICY, fds[METRICS_POLICY]) : NULL;
	for (int k = 0; k < METRICS_REGION_COUNT; k++) {
		if (fds[k] >= 0)
			close(fds[k]);
		fds[k] = -1;
	}
}
