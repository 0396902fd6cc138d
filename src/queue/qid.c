/*
 * qid.c - queue ids: generation and validation.
 *
 * An id is 20 base-36 characters [0-9A-Z], fixed width so that ids sort by
 * time as plain strings:
 *
 *   seconds (7) | microseconds (4) | pid (5) | per-process counter (4)
 *
 * Two processes never share a pid at the same time, and one process never
 * repeats (microsecond, counter), so an id is unique within the host,
 * across restarts, unless the clock is stepped back onto the very
 * microsecond at which an earlier process with the same pid made an id.
 * qwriter_open() (O_EXCL) and the commit rename (RENAME_NOREPLACE) catch
 * even that case.
 */
#include "queue/qfile.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define QID_LEN_MAX (QID_MAX - 1)

static const char qid_digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/* Write v in base 36 into exactly width characters (higher digits dropped). */
static void put_base36(char *out, uint64_t v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		out[i] = qid_digits[v % 36];
		v /= 36;
	}
}

void qid_generate(char out[QID_MAX])
{
	/* atomic: the receiver's commit threads make ids too (spares) */
	static atomic_uint_least32_t counter;
	struct timeval tv;

	gettimeofday(&tv, NULL);
	uint32_t n = (uint32_t)atomic_fetch_add(&counter, 1) + 1;
	put_base36(out, (uint64_t)tv.tv_sec, 7);        /* until year 4453 */
	put_base36(out + 7, (uint64_t)tv.tv_usec, 4);    /* 36^4 > 10^6 */
	put_base36(out + 11, (uint64_t)getpid(), 5);     /* 36^5 > pid_max 2^22 */
	put_base36(out + 16, n, 4);                     /* 1.6M per microsecond */
	out[20] = '\0';
}

int qid_valid(const char *qid)
{
	size_t n = 0;

	if (qid == NULL)
		return 0;
	for (; qid[n] != '\0'; n++) {
		if (n >= QID_LEN_MAX)
			return 0;
		if (!((qid[n] >= '0' && qid[n] <= '9') || (qid[n] >= 'A' && qid[n] <= 'Z')))
			return 0;
	}
	return n > 0;
}
