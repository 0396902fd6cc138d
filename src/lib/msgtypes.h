/*
 * msgtypes.h - the IPC message types between mailprocd processes, and the
 * fields of each (in order).  See lib/ipc.h for the encoding.
 */
#ifndef MP_MSGTYPES_H
#define MP_MSGTYPES_H

enum msg_type {
	/* receiver -> qmgr */
	MSG_QUEUE_NEW = 1,      /* str qid: a message was committed to incoming/ */

	/* qmgr -> spawner: a worker for uid/gid/account, which address
	 * resolves to (part: 0xffffffff its entry's account, else the number
	 * of a uid=/gid= instruction of its entry).  The spawner resolves the
	 * address in the databases itself and refuses when they give another
	 * identity (or a uid below minimum_uid, or gid 0); the worker's home
	 * comes from the databases too. */
	MSG_SPAWN_REQ = 10,     /* u32 reqid, u32 uid, u32 gid, str account,
	                         * str address, u32 part */
	/* spawner -> qmgr */
	MSG_SPAWN_OK,           /* u32 reqid, u32 pid; fd = qmgr's end of the worker socket */
	MSG_SPAWN_FAIL,         /* u32 reqid, str reason */
	/* qmgr -> spawner: a worker whose spam check overran; the spawner
	 * kills it only if it is one of its own children */
	MSG_KILL_WORKER,        /* u32 pid */

	/* qmgr -> worker; fd = the queue file, read-only.  The worker reads
	 * each recipient's address from the queue file and its rules entry
	 * from the databases itself, and runs the part only when the entry is
	 * still the one of this version and the part runs as the worker's own
	 * uid/gid (else a temporary failure).  The qmgr fills a job up to
	 * IPC_MAX_PAYLOAD bytes (qmgr/workers.c, job_part_bytes). */
	MSG_JOB = 20,           /* str qid, u32 spam_skip (1: an earlier check of this
	                         * message for this user was stopped: do not check),
	                         * u32 n, then n x (u32 index, u64 rules_version
	                         * (qfile_rules_version of the entry run was made from),
	                         * str run, u32 verdict, u32 is_spam, i64 score
	                         * (x 1000), str headers).
	                         * verdict...headers: the primary part's spam verdict,
	                         * for an "only:" part (which does not check itself;
	                         * VERDICT_NONE and "" for the others).
	                         * run: "all" instructions (single-user mode),
	                         * "primary" or "primary:except:N,M" (root mode:
	                         * all but those, which other accounts' parts run,
	                         * plus the default delivery), or "only:N,M" (a
	                         * uid=/gid= account's part: those instructions);
	                         * on a retry, the instructions an earlier attempt
	                         * delivered are left out: "all:except:N,M",
	                         * added to the except list, removed from only) */
	/* A worker may hold several MSG_JOBs: the qmgr sends up to
	 * worker_batch_size (one at a time, each with its queue file) before
	 * the first is answered, only to a worker of the same user that holds
	 * deliveries only and is of the current configuration.  The worker
	 * answers them in the order sent: each job's MSG_RESULTs, then its
	 * MSG_JOB_DONE (the qmgr takes results for the first job it has not
	 * heard MSG_JOB_DONE of).  It holds a result until the copy it
	 * reports is durable (the maildir copies of the jobs it has read are
	 * committed together), and reports all it has before MSG_CHECK_WAIT,
	 * so that a check stopped by the watchdog is the first job's.  A
	 * worker that leaves (retiring after MSG_JOB_DONE, or killed) leaves
	 * the jobs it did not answer to the qmgr: retiring, those it never
	 * read go back to the queue; killed, they are temporary failures. */
	/* worker -> qmgr */
	MSG_RESULT,             /* str qid, u32 index, u32 status (enum delivery_status),
	                         * str dsn ("2.0.0"), str text, str where,
	                         * str forward (addresses, comma-separated, or ""),
	                         * str done (the maildir/mbox/pipe instructions,
	                         * "N,M" as in MSG_JOB's run, that delivered, or ""),
	                         * u32 verdict, u32 is_spam, i64 score (x 1000),
	                         * str headers (a primary part's spam verdict, which
	                         * the qmgr hands its uid=/gid= parts),
	                         * u32 action (enum result_action: the kind of the
	                         * instruction whose outcome is the result; the
	                         * qmgr refuses a result with one it does not know) */
	MSG_JOB_DONE,           /* str qid, u32 retiring (the worker leaves now),
	                         * u32 spam checks done so far */
	/* qmgr -> worker; fd = the message (LF line ends), read-only */
	MSG_LEARN,              /* u32 is_spam */
	/* worker -> qmgr */
	MSG_LEARN_DONE,         /* u32 ok, str text */
	/* worker -> qmgr: a spam check (or learn) is about to start; the
	 * worker waits for MSG_CHECK_GO (spam_concurrency) */
	MSG_CHECK_WAIT,         /* (empty) */
	/* qmgr -> worker */
	MSG_CHECK_GO,           /* (empty) */
	/* worker -> qmgr: the check is over */
	MSG_CHECK_END,          /* (empty) */

	/* qmgr -> relay; fd = the queue file, read-only (pread only) */
	MSG_RELAY_JOB = 30,     /* u64 job_id, str sender ("" = <>), u64 msg_offset,
	                         * u64 msg_size, u32 eightbit, u32 n, then n x str rcpt,
	                         * str dest ("" = SMTP to relay_host, else a list
	                         * manager's "lmtp:HOST:PORT" / "lmtp:unix:PATH"),
	                         * str qid (for the Message-ID added when missing) */
	/* relay -> qmgr, one per recipient, then MSG_RELAY_DONE */
	MSG_RELAY_RESULT,       /* u64 job_id, u32 rcpt_index, u32 status (0 sent,
	                         * 1 temporary, 2 permanent), str dsn, str text */
	MSG_RELAY_DONE,         /* u64 job_id */
	MSG_RELAY_HELLO,        /* u64 nonce: 0 when a relay starts (jobs an earlier
	                         * relay held are lost), or the nonce of the
	                         * MSG_RELAY_PING it answers */
	/* qmgr -> relay, at the qmgr's start: jobs go out only after the relay
	 * answered, so a HELLO from the relay's own start that waited in the
	 * socket cannot be taken for a restart that lost them */
	MSG_RELAY_PING,         /* u64 nonce (unique per qmgr) */
};

/* master -> receiver, qmgr, spawner, relay (each on its own socketpair):
 * a reload.  The text is the configuration file as the master read and
 * validated it; a child swaps it in (conf/config_swap.h) when generation
 * is newer than its own (a child forked after the reload has it already). */
enum master_msg_type {
	MSG_CONFIG = 50,        /* u64 generation; fd = a sealed memfd with the text */
};

/* mailprocctl <-> qmgr, on run_dir/control.sock; one request, one reply */
enum ctl_msg_type {
	MSG_CTL_LEARN = 40,     /* str address, u32 is_spam; fd = the message (LF ends) */
	MSG_CTL_STATUS,         /* (empty) */
	MSG_CTL_REPLY,          /* u32 ok, str text */
};

/* policy sync (root side) <-> its unprivileged writer, one per round
 * (src/policy/sync_round.c, sync_writer.c) */
enum polsync_msg_type {
	MSG_POLSYNC_LIST = 60,  /* (empty): send what policy.mdb knows */
	MSG_POLSYNC_KNOWN,      /* str account ("" ends the list), u32 uid,
	                         * i64 mtime_sec, u32 mtime_nsec, u64 ino, u64 size */
	MSG_POLSYNC_FILE,       /* str account, u32 uid, i64 mtime_sec, u32 mtime_nsec,
	                         * u64 ino, u64 size; fd = the read end of the pipe
	                         * the reader (running as uid) writes its result to */
	MSG_POLSYNC_GONE,       /* str account: no file (or no account) any more */
	MSG_POLSYNC_COMMIT,     /* (empty): write the round */
	MSG_POLSYNC_DONE,       /* u32 changed, u32 broken, u32 removed, str error ("" ok) */
};

/* A part's spam verdict (MSG_RESULT of a primary part, MSG_JOB of a
 * uid=/gid= part): none (no check wanted, or the part did not get that
 * far), wanted but not checked (headers: the note saying why), checked. */
enum { VERDICT_NONE = 0, VERDICT_UNCHECKED, VERDICT_CHECKED };
/* MSG_RESULT's action: what delivered, or tried to and decided the
 * status (the worst instruction's, the first among equals; metrics count
 * deliveries by it).  RESULT_ACTION_NONE: no instruction ran (a reject by
 * the rules, a refused job, a loop) or none applies.  LIST is the qmgr's
 * own, for the relay's deliveries to list managers; a worker never sends
 * it. */
enum result_action {
	RESULT_ACTION_NONE = 0, RESULT_ACTION_MAILDIR, RESULT_ACTION_MBOX, RESULT_ACTION_PIPE,
	RESULT_ACTION_FORWARD, RESULT_ACTION_LIST, RESULT_ACTION_DISCARD, RESULT_ACTION_COUNT
};
/* The longest verdict header lines passed on to uid=/gid= parts; longer
 * ones are not passed on (those copies get no X-Spam-* lines). */
#define MSG_VERDICT_HEADERS_MAX 4096

/* Recipients in one MSG_JOB: the qmgr splits larger groups, the worker
 * refuses more. */
#define MSG_JOB_MAX_RCPTS 50
/* Forward addresses one recipient's rules may name (all instructions). */
#define MSG_FORWARD_MAX 100
/* Recipients in one MSG_RELAY_JOB (one SMTP transaction; RFC 5321 4.5.3.1.8
 * servers take at least 100): the qmgr splits larger groups, the relay
 * refuses more. */
#define MSG_RELAY_MAX_RCPTS 100

#endif
