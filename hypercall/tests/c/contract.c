/*
 * Contract tests of the hypercall crate through its C ABI, as a rump
 * kernel calls it. A fake set of upcalls stands in for the kernel: it
 * tracks, per thread, whether a virtual CPU is held, and fails the run if
 * a CPU is released twice, taken twice, or if a blocking call does not
 * release it (or a non-blocking one does).
 *
 * Usage: contract [daemonize]. Exit status 0 when every check passed.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hypercall/rumpuser.h>

/* NetBSD errno values the interface answers with. */
#define NB_ENOENT 2
#define NB_EBADF 9
#define NB_EBUSY 16
#define NB_EINVAL 22
#define NB_ENOSPC 28
#define NB_ERANGE 34
#define NB_EAGAIN 35
#define NB_ETIMEDOUT 60
#define NB_ENOSYS 78

static int failures, checks;

#define CHECK(cond) do {						\
	checks++;							\
	if (!(cond)) {							\
		failures++;						\
		fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	}								\
} while (0)

/* ---- the fake kernel ---- */

struct lwp { int id; };
static struct lwp lwps[64];
static atomic_int nextlwp = 1;

static _Thread_local int have_cpu;
static atomic_int n_unsched, n_sched, n_heavy, n_newlwp, protocol_errors;
static struct rumpuser_mtx *rcpu_mtx;	/* stands in for a CPU's scheduler mutex */

static void
protocol_error(const char *what)
{
	atomic_fetch_add(&protocol_errors, 1);
	fprintf(stderr, "PROTOCOL: %s\n", what);
}

static void
fake_backend_unschedule(int nlocks, int *countp, void *interlock)
{
	if (nlocks != 0)
		protocol_error("host passed nlocks != 0");
	if (!have_cpu)
		protocol_error("CPU released without being held");
	if (interlock != NULL && interlock == (void *)rcpu_mtx)
		rumpuser_mutex_enter_nowrap(rcpu_mtx);
	have_cpu = 0;
	*countp = 3;	/* pretend three giant-lock levels were dropped */
	atomic_fetch_add(&n_unsched, 1);
}

static void
fake_backend_schedule(int nlocks, void *interlock)
{
	if (have_cpu)
		protocol_error("CPU taken while already held");
	if (nlocks != 3 && nlocks != 0)
		protocol_error("lock count not handed back");
	if (interlock != NULL && interlock == (void *)rcpu_mtx)
		rumpuser_mutex_exit(rcpu_mtx);
	have_cpu = 1;
	atomic_fetch_add(&n_sched, 1);
}

static void
fake_schedule(void)
{
	if (have_cpu)
		protocol_error("hyp_schedule while holding a CPU");
	have_cpu = 1;
	atomic_fetch_add(&n_heavy, 1);
}

static void
fake_unschedule(void)
{
	if (!have_cpu)
		protocol_error("hyp_unschedule without a CPU");
	have_cpu = 0;
}

static int
fake_newlwp(pid_t pid)
{
	if (!have_cpu)
		protocol_error("newlwp without a CPU");
	if (pid != 0)
		protocol_error("newlwp not in the kernel process");
	struct lwp *l = &lwps[atomic_fetch_add(&nextlwp, 1) % 64];
	if (rumpuser_curlwp() != NULL)
		rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, rumpuser_curlwp());
	rumpuser_curlwpop(RUMPUSER_LWP_SET, l);
	atomic_fetch_add(&n_newlwp, 1);
	return 0;
}

static struct lwp *
fake_curlwp(void)
{
	return rumpuser_curlwp();
}

static const struct rumpuser_hyperup fake = {
	.hyp_schedule = fake_schedule,
	.hyp_unschedule = fake_unschedule,
	.hyp_backend_unschedule = fake_backend_unschedule,
	.hyp_backend_schedule = fake_backend_schedule,
	.hyp_lwproc_newlwp = fake_newlwp,
	.hyp_lwproc_curlwp = fake_curlwp,
};

/* A kernel thread entering: bind an LWP and take a CPU. */
static void
enter_kernel(struct lwp *l)
{
	rumpuser_curlwpop(RUMPUSER_LWP_SET, l);
	have_cpu = 1;
}

static void
leave_kernel(void)
{
	rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, rumpuser_curlwp());
	have_cpu = 0;
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Counter snapshot: expect exactly (du) releases and (ds) re-takes. */
struct snap { int u, s; };
static struct snap
snap(void)
{
	return (struct snap){ atomic_load(&n_unsched), atomic_load(&n_sched) };
}
#define RELEASED(sn, k) (atomic_load(&n_unsched) - (sn).u == (k) && atomic_load(&n_sched) - (sn).s == (k))

/* ---- init and parameters ---- */

static void
test_init_and_params(void)
{
	char buf[256];

	CHECK(rumpuser_init(16, &fake) != 0);
	CHECK(rumpuser_init(RUMPUSER_VERSION, &fake) == 0);

	CHECK(rumpuser_getparam(RUMPUSER_PARAM_NCPU, buf, sizeof(buf)) == 0);
	CHECK(atoi(buf) >= 1);
	setenv("RUMP_NCPU", "3", 1);
	CHECK(rumpuser_getparam(RUMPUSER_PARAM_NCPU, buf, sizeof(buf)) == 0 && strcmp(buf, "3") == 0);
	CHECK(rumpuser_getparam(RUMPUSER_PARAM_HOSTNAME, buf, sizeof(buf)) == 0 && strncmp(buf, "rump-", 5) == 0);
	CHECK(rumpuser_getparam("_RUMPUSER_NO_SUCH", buf, sizeof(buf)) == NB_EINVAL);
	unsetenv("RUMP_CONTRACT_UNSET");
	CHECK(rumpuser_getparam("RUMP_CONTRACT_UNSET", buf, sizeof(buf)) == NB_ENOENT);
	setenv("RUMP_CONTRACT_VALUE", "hello", 1);
	CHECK(rumpuser_getparam("RUMP_CONTRACT_VALUE", buf, sizeof(buf)) == 0 && strcmp(buf, "hello") == 0);
	CHECK(rumpuser_getparam("RUMP_CONTRACT_VALUE", buf, 5) == NB_ERANGE);
}

/* ---- mutexes ---- */

struct holder {
	struct rumpuser_mtx *m;
	int ms;
	atomic_int got;
};

static void *
hold_mutex(void *arg)
{
	struct holder *h = arg;
	enter_kernel(&lwps[60]);
	rumpuser_mutex_enter_nowrap(h->m);
	atomic_store(&h->got, 1);
	msleep(h->ms);
	rumpuser_mutex_exit(h->m);
	leave_kernel();
	return NULL;
}

static void *
try_mutex(void *arg)
{
	return (void *)(intptr_t)rumpuser_mutex_tryenter(arg);
}

static void
contend(struct rumpuser_mtx *m, void (*enter)(struct rumpuser_mtx *), int expect_release)
{
	struct holder h = { m, 80, 0 };
	pthread_t t;

	pthread_create(&t, NULL, hold_mutex, &h);
	while (!atomic_load(&h.got))
		msleep(1);
	struct snap sn = snap();
	double t0 = now();
	enter(m);
	CHECK(now() - t0 > 0.03);	/* it really waited */
	CHECK(RELEASED(sn, expect_release));
	CHECK(have_cpu);
	rumpuser_mutex_exit(m);
	pthread_join(t, NULL);
}

static void
test_mutex(void)
{
	struct rumpuser_mtx *m, *spin, *spink;
	struct lwp *owner;
	void *rv;
	pthread_t t;

	rumpuser_mutex_init(&m, RUMPUSER_MTX_KMUTEX);
	rumpuser_mutex_init(&spin, RUMPUSER_MTX_SPIN);
	rumpuser_mutex_init(&spink, RUMPUSER_MTX_SPIN | RUMPUSER_MTX_KMUTEX);
	CHECK(rumpuser_mutex_spin_p(m) == 0);
	CHECK(rumpuser_mutex_spin_p(spin) != 0);

	/* Uncontended enter: owner recorded, CPU kept. */
	struct snap sn = snap();
	rumpuser_mutex_enter(m);
	CHECK(RELEASED(sn, 0));
	rumpuser_mutex_owner(m, &owner);
	CHECK(owner == &lwps[0]);

	/* Held: another thread's tryenter fails with EBUSY. */
	pthread_create(&t, NULL, try_mutex, m);
	pthread_join(t, &rv);
	CHECK((intptr_t)rv == NB_EBUSY);
	rumpuser_mutex_exit(m);
	rumpuser_mutex_owner(m, &owner);
	CHECK(owner == NULL);

	CHECK(rumpuser_mutex_tryenter(m) == 0);
	rumpuser_mutex_owner(m, &owner);
	CHECK(owner == &lwps[0]);
	rumpuser_mutex_exit(m);

	/* Contended: adaptive mutexes release the CPU, spin and nowrap never. */
	contend(m, rumpuser_mutex_enter, 1);
	contend(spin, rumpuser_mutex_enter, 0);
	contend(spink, rumpuser_mutex_enter, 0);
	contend(m, rumpuser_mutex_enter_nowrap, 0);

	rumpuser_mutex_destroy(m);
	rumpuser_mutex_destroy(spin);
	rumpuser_mutex_destroy(spink);
}

/* ---- condition variables ---- */

struct cvpair {
	struct rumpuser_cv *cv;
	struct rumpuser_mtx *m;
	atomic_int state;
	int rc;
};

static void *
cv_waiter(void *arg)
{
	struct cvpair *p = arg;
	enter_kernel(&lwps[61]);
	rumpuser_mutex_enter(p->m);
	atomic_store(&p->state, 1);
	p->rc = rumpuser_cv_timedwait(p->cv, p->m, 5, 0);
	struct lwp *owner;
	rumpuser_mutex_owner(p->m, &owner);
	if (owner != &lwps[61])
		protocol_error("cv wait returned without the mutex owned");
	rumpuser_mutex_exit(p->m);
	atomic_store(&p->state, 2);
	leave_kernel();
	return NULL;
}

static void
test_condvar(void)
{
	struct cvpair p = { 0 };
	struct rumpuser_mtx *spink;
	struct lwp *owner;
	pthread_t t;
	int waiters;

	rumpuser_cv_init(&p.cv);
	rumpuser_mutex_init(&p.m, RUMPUSER_MTX_KMUTEX);

	/* Timeout: relative, ETIMEDOUT, CPU released once, mutex held after. */
	rumpuser_mutex_enter(p.m);
	struct snap sn = snap();
	double t0 = now();
	CHECK(rumpuser_cv_timedwait(p.cv, p.m, 0, 100 * 1000 * 1000) == NB_ETIMEDOUT);
	double waited = now() - t0;
	CHECK(waited >= 0.099 && waited < 2.0);
	CHECK(RELEASED(sn, 1));
	rumpuser_mutex_owner(p.m, &owner);
	CHECK(owner == &lwps[0]);
	rumpuser_mutex_exit(p.m);

	/* Signal wakes a waiter well before its timeout; has_waiters sees it. */
	pthread_create(&t, NULL, cv_waiter, &p);
	while (atomic_load(&p.state) != 1)
		msleep(1);
	do {
		rumpuser_mutex_enter(p.m);
		rumpuser_cv_has_waiters(p.cv, &waiters);
		rumpuser_mutex_exit(p.m);
	} while (waiters == 0 && (msleep(1), 1));
	CHECK(waiters == 1);
	rumpuser_mutex_enter(p.m);
	rumpuser_cv_signal(p.cv);
	rumpuser_mutex_exit(p.m);
	pthread_join(t, NULL);
	CHECK(p.rc == 0);
	rumpuser_cv_has_waiters(p.cv, &waiters);
	CHECK(waiters == 0);

	/* A kernel spin mutex as interlock: the wait re-takes CPU, then mutex. */
	rumpuser_mutex_init(&spink, RUMPUSER_MTX_SPIN | RUMPUSER_MTX_KMUTEX);
	rumpuser_mutex_enter(spink);
	sn = snap();
	CHECK(rumpuser_cv_timedwait(p.cv, spink, 0, 20 * 1000 * 1000) == NB_ETIMEDOUT);
	CHECK(RELEASED(sn, 1));
	rumpuser_mutex_owner(spink, &owner);
	CHECK(owner == &lwps[0]);
	rumpuser_mutex_exit(spink);
	rumpuser_mutex_destroy(spink);

	/*
	 * The scheduler's case: waiting on the CPU's own mutex without
	 * holding it. Releasing the CPU takes the mutex (fake kernel), the
	 * wait drops and re-takes it, taking the CPU back releases it.
	 */
	sn = snap();
	CHECK(rumpuser_cv_timedwait(p.cv, rcpu_mtx, 0, 10 * 1000 * 1000) == NB_ETIMEDOUT);
	CHECK(RELEASED(sn, 1));
	CHECK(rumpuser_mutex_tryenter(rcpu_mtx) == 0);
	rumpuser_mutex_exit(rcpu_mtx);

	rumpuser_cv_destroy(p.cv);
	rumpuser_mutex_destroy(p.m);
}

struct nowrap_arg {
	struct rumpuser_cv *cv;
	struct rumpuser_mtx *m;
	atomic_int done;
};

static void *
nowrap_waiter(void *arg)
{
	struct nowrap_arg *a = arg;
	rumpuser_mutex_enter_nowrap(a->m);
	rumpuser_cv_wait_nowrap(a->cv, a->m);
	rumpuser_mutex_exit(a->m);
	atomic_store(&a->done, 1);
	return NULL;
}

static void
test_condvar_nowrap(void)
{
	struct nowrap_arg a = { 0 };
	pthread_t t;
	int waiters = 0;

	rumpuser_cv_init(&a.cv);
	rumpuser_mutex_init(&a.m, RUMPUSER_MTX_SPIN);
	struct snap sn = snap();
	pthread_create(&t, NULL, nowrap_waiter, &a);	/* holds no CPU at all */
	while (waiters == 0) {
		rumpuser_mutex_enter_nowrap(a.m);
		rumpuser_cv_has_waiters(a.cv, &waiters);
		if (waiters)
			rumpuser_cv_signal(a.cv);
		rumpuser_mutex_exit(a.m);
		msleep(1);
	}
	pthread_join(t, NULL);
	CHECK(atomic_load(&a.done) == 1);
	CHECK(RELEASED(sn, 0));
	rumpuser_cv_destroy(a.cv);
	rumpuser_mutex_destroy(a.m);
}

/* ---- rwlocks ---- */

struct rwtry {
	struct rumpuser_rw *rw;
	int mode;
};

static void *
try_rw(void *arg)
{
	struct rwtry *a = arg;
	int rc = rumpuser_rw_tryenter(a->mode, a->rw);
	if (rc == 0)
		rumpuser_rw_exit(a->rw);
	return (void *)(intptr_t)rc;
}

static int
try_rw_elsewhere(struct rumpuser_rw *rw, int mode)
{
	struct rwtry arg = { rw, mode };
	pthread_t t;
	void *rv;

	pthread_create(&t, NULL, try_rw, &arg);
	pthread_join(t, &rv);
	return (int)(intptr_t)rv;
}

struct rwhold {
	struct rumpuser_rw *rw;
	atomic_int got;
};

static void *
hold_rw_reader(void *arg)
{
	struct rwhold *h = arg;
	enter_kernel(&lwps[62]);
	rumpuser_rw_enter(RUMPUSER_RW_READER, h->rw);
	atomic_store(&h->got, 1);
	msleep(80);
	rumpuser_rw_exit(h->rw);
	leave_kernel();
	return NULL;
}

static void
test_rwlock(void)
{
	struct rumpuser_rw *rw;
	int held;

	rumpuser_rw_init(&rw);
	struct snap sn = snap();
	rumpuser_rw_enter(RUMPUSER_RW_READER, rw);
	rumpuser_rw_enter(RUMPUSER_RW_READER, rw);
	CHECK(RELEASED(sn, 0));
	rumpuser_rw_held(RUMPUSER_RW_READER, rw, &held);
	CHECK(held);
	rumpuser_rw_held(RUMPUSER_RW_WRITER, rw, &held);
	CHECK(!held);
	CHECK(try_rw_elsewhere(rw, RUMPUSER_RW_WRITER) == NB_EBUSY);
	CHECK(try_rw_elsewhere(rw, RUMPUSER_RW_READER) == 0);

	/* Two readers: no upgrade. One reader (us): upgrade. */
	CHECK(rumpuser_rw_tryupgrade(rw) == NB_EBUSY);
	rumpuser_rw_exit(rw);
	CHECK(rumpuser_rw_tryupgrade(rw) == 0);
	rumpuser_rw_held(RUMPUSER_RW_WRITER, rw, &held);
	CHECK(held);
	rumpuser_rw_held(RUMPUSER_RW_READER, rw, &held);
	CHECK(!held);
	CHECK(try_rw_elsewhere(rw, RUMPUSER_RW_READER) == NB_EBUSY);

	/* Downgrade: still held shared, readers get in, writers do not. */
	rumpuser_rw_downgrade(rw);
	rumpuser_rw_held(RUMPUSER_RW_WRITER, rw, &held);
	CHECK(!held);
	rumpuser_rw_held(RUMPUSER_RW_READER, rw, &held);
	CHECK(held);
	CHECK(try_rw_elsewhere(rw, RUMPUSER_RW_READER) == 0);
	CHECK(try_rw_elsewhere(rw, RUMPUSER_RW_WRITER) == NB_EBUSY);
	rumpuser_rw_exit(rw);
	rumpuser_rw_held(RUMPUSER_RW_READER, rw, &held);
	CHECK(!held);

	CHECK(rumpuser_rw_tryenter(RUMPUSER_RW_WRITER, rw) == 0);
	rumpuser_rw_exit(rw);

	/* A writer waiting for a reader releases the CPU. */
	struct rwhold h = { rw, 0 };
	pthread_t t;
	pthread_create(&t, NULL, hold_rw_reader, &h);
	while (!atomic_load(&h.got))
		msleep(1);
	sn = snap();
	rumpuser_rw_enter(RUMPUSER_RW_WRITER, rw);
	CHECK(RELEASED(sn, 1));
	rumpuser_rw_held(RUMPUSER_RW_WRITER, rw, &held);
	CHECK(held);
	rumpuser_rw_exit(rw);
	pthread_join(t, NULL);
	rumpuser_rw_destroy(rw);
}

/* ---- threads and curlwp ---- */

static atomic_int thread_ran;
static char thread_name_seen[32];

static void *
kthread(void *arg)
{
	if (have_cpu)
		protocol_error("new thread started holding a CPU");
	CHECK(rumpuser_curlwp() == NULL);	/* curlwp is per thread */
	pthread_getname_np(pthread_self(), thread_name_seen, sizeof(thread_name_seen));
	atomic_store(&thread_ran, (int)(intptr_t)arg);
	rumpuser_thread_exit();
}

static void
test_threads(void)
{
	void *cookie = NULL;

	CHECK(rumpuser_thread_create(kthread, (void *)7, "ctest-worker", 1, 0, -1, &cookie) == 0);
	CHECK(cookie != NULL);
	struct snap sn = snap();
	CHECK(rumpuser_thread_join(cookie) == 0);
	CHECK(RELEASED(sn, 1));
	CHECK(atomic_load(&thread_ran) == 7);
	CHECK(strcmp(thread_name_seen, "ctest-worker") == 0);

	/* Long names are cut to what the host allows, not refused. */
	CHECK(rumpuser_thread_create(kthread, (void *)9, "a-very-long-kernel-thread-name", 1, 0, -1, &cookie) == 0);
	CHECK(rumpuser_thread_join(cookie) == 0);
	CHECK(atomic_load(&thread_ran) == 9);
	CHECK(strncmp(thread_name_seen, "a-very-long-ker", 15) == 0);

	/* Detached thread: no cookie needed. */
	atomic_store(&thread_ran, 0);
	CHECK(rumpuser_thread_create(kthread, (void *)11, "detached", 0, 0, -1, NULL) == 0);
	for (int i = 0; i < 2000 && atomic_load(&thread_ran) != 11; i++)
		msleep(1);
	CHECK(atomic_load(&thread_ran) == 11);
}

/* ---- clocks ---- */

static void
test_clocks(void)
{
	int64_t s1, s2;
	long ns1, ns2;

	CHECK(rumpuser_clock_gettime(RUMPUSER_CLOCK_ABSMONO, &s1, &ns1) == 0);
	CHECK(rumpuser_clock_gettime(RUMPUSER_CLOCK_RELWALL, &s2, &ns2) == 0);
	CHECK(s2 > 1600000000);	/* a wall clock, after 2020 */
	CHECK(rumpuser_clock_gettime(7, &s2, &ns2) == NB_EINVAL);

	struct snap sn = snap();
	double t0 = now();
	CHECK(rumpuser_clock_sleep(RUMPUSER_CLOCK_RELWALL, 0, 30 * 1000 * 1000) == 0);
	CHECK(now() - t0 >= 0.029);
	CHECK(RELEASED(sn, 1));

	/* ABSMONO sleeps until an absolute monotonic time. */
	CHECK(rumpuser_clock_gettime(RUMPUSER_CLOCK_ABSMONO, &s1, &ns1) == 0);
	ns1 += 40 * 1000 * 1000;
	if (ns1 >= 1000000000) { s1++; ns1 -= 1000000000; }
	t0 = now();
	CHECK(rumpuser_clock_sleep(RUMPUSER_CLOCK_ABSMONO, s1, ns1) == 0);
	CHECK(now() - t0 >= 0.035);
	CHECK(rumpuser_clock_gettime(RUMPUSER_CLOCK_ABSMONO, &s2, &ns2) == 0);
	CHECK(s2 > s1 || (s2 == s1 && ns2 >= ns1));
	/* A deadline in the past returns at once. */
	t0 = now();
	CHECK(rumpuser_clock_sleep(RUMPUSER_CLOCK_ABSMONO, 0, 0) == 0);
	CHECK(now() - t0 < 0.5);
}

/* ---- block I/O ---- */

#define NBIO 64
#define BIOSZ 4096

struct bioslot {
	atomic_int calls;
	size_t done;
	int error;
	int had_cpu;
	pthread_t thread;
};

static struct bioslot slots[NBIO + 8];
static pthread_mutex_t biolock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t biocv = PTHREAD_COND_INITIALIZER;
static int biocount;

static void
biodone(void *arg, size_t done, int error)
{
	struct bioslot *s = arg;
	s->done = done;
	s->error = error;
	s->had_cpu = have_cpu && rumpuser_curlwp() != NULL;
	s->thread = pthread_self();
	atomic_fetch_add(&s->calls, 1);
	pthread_mutex_lock(&biolock);
	biocount++;
	pthread_cond_broadcast(&biocv);
	pthread_mutex_unlock(&biolock);
}

static void
wait_bios(int n)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 20;
	pthread_mutex_lock(&biolock);
	while (biocount < n)
		if (pthread_cond_timedwait(&biocv, &biolock, &dl) != 0)
			break;
	CHECK(biocount == n);
	biocount = 0;
	pthread_mutex_unlock(&biolock);
}

static unsigned char
pattern(long off)
{
	return (unsigned char)((off * 7 + (off >> 12)) & 0xff);
}

static void
test_bio(const char *dir)
{
	char path[512];
	static unsigned char bufs[NBIO][BIOSZ];
	int fd, rofd, fullfd;

	snprintf(path, sizeof(path), "%s/bio.img", dir);
	int hfd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	for (long off = 0; off < NBIO * BIOSZ; off++) {
		unsigned char c = pattern(off);
		if (write(hfd, &c, 1) != 1)
			abort();
	}
	close(hfd);

	CHECK(rumpuser_open(path, RUMPUSER_OPEN_RDWR | RUMPUSER_OPEN_BIO, &fd) == 0);

	/* 64 concurrent reads, in reverse order; each completes once. */
	memset(slots, 0, sizeof(slots));
	for (int i = NBIO - 1; i >= 0; i--)
		rumpuser_bio(fd, RUMPUSER_BIO_READ, bufs[i], BIOSZ, (int64_t)i * BIOSZ, biodone, &slots[i]);
	wait_bios(NBIO);
	int good = 0, once = 0, cpu = 0, offthread = 0;
	for (int i = 0; i < NBIO; i++) {
		int ok = slots[i].done == BIOSZ && slots[i].error == 0;
		for (int j = 0; ok && j < BIOSZ; j++)
			ok = bufs[i][j] == pattern((long)i * BIOSZ + j);
		good += ok;
		once += atomic_load(&slots[i].calls) == 1;
		cpu += slots[i].had_cpu;
		offthread += !pthread_equal(slots[i].thread, pthread_self());
	}
	CHECK(good == NBIO);
	CHECK(once == NBIO);
	CHECK(cpu == NBIO);	/* biodone ran holding a CPU, with an LWP */
	CHECK(offthread == NBIO);

	/* Synchronous writes, then read back through the host. */
	memset(slots, 0, sizeof(slots));
	for (int i = 0; i < 8; i++) {
		memset(bufs[i], 0xa0 + i, BIOSZ);
		rumpuser_bio(fd, RUMPUSER_BIO_WRITE | RUMPUSER_BIO_SYNC, bufs[i], BIOSZ, (int64_t)(i * 2) * BIOSZ, biodone, &slots[i]);
	}
	wait_bios(8);
	hfd = open(path, O_RDONLY);
	int wgood = 0;
	for (int i = 0; i < 8; i++) {
		unsigned char b[BIOSZ];
		int ok = pread(hfd, b, BIOSZ, (off_t)(i * 2) * BIOSZ) == BIOSZ && slots[i].done == BIOSZ && slots[i].error == 0;
		for (int j = 0; ok && j < BIOSZ; j++)
			ok = b[j] == 0xa0 + i;
		wgood += ok;
	}
	close(hfd);
	CHECK(wgood == 8);

	/* Errors arrive as NetBSD errno values in biodone, with 0 bytes. */
	CHECK(rumpuser_open(path, RUMPUSER_OPEN_RDONLY | RUMPUSER_OPEN_BIO, &rofd) == 0);
	CHECK(rumpuser_open("/dev/full", RUMPUSER_OPEN_WRONLY | RUMPUSER_OPEN_BIO, &fullfd) == 0);
	memset(slots, 0, sizeof(slots));
	rumpuser_bio(rofd, RUMPUSER_BIO_WRITE, bufs[0], BIOSZ, 0, biodone, &slots[0]);
	rumpuser_bio(-1, RUMPUSER_BIO_READ, bufs[1], BIOSZ, 0, biodone, &slots[1]);
	rumpuser_bio(fullfd, RUMPUSER_BIO_WRITE, bufs[2], BIOSZ, 0, biodone, &slots[2]);
	rumpuser_bio(fd, RUMPUSER_BIO_READ, bufs[3], BIOSZ, (int64_t)NBIO * BIOSZ, biodone, &slots[3]);
	rumpuser_bio(fd, RUMPUSER_BIO_READ, bufs[4], BIOSZ, -4096, biodone, &slots[4]);
	rumpuser_bio(fd, 0, bufs[5], BIOSZ, 0, biodone, &slots[5]);
	wait_bios(6);
	CHECK(slots[0].error == NB_EBADF && slots[0].done == 0);
	CHECK(slots[1].error == NB_EBADF && slots[1].done == 0);
	CHECK(slots[2].error == NB_ENOSPC && slots[2].done == 0);
	CHECK(slots[3].error == 0 && slots[3].done == 0);	/* end of file: short */
	CHECK(slots[4].error == NB_EINVAL && slots[4].done == 0);
	CHECK(slots[5].error == NB_EINVAL && slots[5].done == 0);
	for (int i = 0; i < 6; i++)
		CHECK(atomic_load(&slots[i].calls) == 1);

	/* Synchronous vectored I/O. */
	char a[5] = "abcd", b[7] = "efghij", ra[5] = { 0 }, rb[7] = { 0 };
	struct rumpuser_iovec wv[2] = { { a, 4 }, { b, 6 } }, rv[2] = { { ra, 4 }, { rb, 6 } };
	size_t n = 0;
	struct snap sn = snap();
	CHECK(rumpuser_iovwrite(fd, wv, 2, 100, &n) == 0 && n == 10);
	CHECK(rumpuser_iovread(fd, rv, 2, 100, &n) == 0 && n == 10);
	CHECK(RELEASED(sn, 2));
	CHECK(memcmp(ra, "abcd", 4) == 0 && memcmp(rb, "efghij", 6) == 0);
	CHECK(rumpuser_iovread(fd, rv, 2, (int64_t)NBIO * BIOSZ - 3, &n) == 0 && n == 3);
	CHECK(rumpuser_iovread(fd, rv, 2, -5, &n) == NB_EINVAL);
	CHECK(rumpuser_syncfd(fd, RUMPUSER_SYNCFD_WRITE, 0, 0) == 0);
	CHECK(rumpuser_syncfd(fd, RUMPUSER_SYNCFD_BARRIER, 0, 0) == NB_EINVAL);

	uint64_t size = 0;
	int ft = -1;
	CHECK(rumpuser_getfileinfo(path, &size, &ft) == 0 && size == NBIO * BIOSZ && ft == RUMPUSER_FT_REG);
	CHECK(rumpuser_getfileinfo(dir, NULL, &ft) == 0 && ft == RUMPUSER_FT_DIR);
	CHECK(rumpuser_getfileinfo("/dev/null", &size, &ft) == 0 && ft == RUMPUSER_FT_CHR);
	CHECK(rumpuser_getfileinfo("/nonexistent/x", &size, &ft) == NB_ENOENT);
	int junk;
	CHECK(rumpuser_open("/nonexistent/x", RUMPUSER_OPEN_RDONLY, &junk) == NB_ENOENT);
	CHECK(rumpuser_open(path, RUMPUSER_OPEN_CREATE | RUMPUSER_OPEN_EXCL | RUMPUSER_OPEN_RDWR, &junk) == 17);
	CHECK(rumpuser_open(path, 0x100, &junk) == NB_EINVAL);
	/* The typed API's direct-I/O extension is not a rumpuser flag. */
	CHECK(rumpuser_open(path, RUMPUSER_OPEN_RDONLY | 0x10000, &junk) == NB_EINVAL);

	CHECK(rumpuser_close(fd) == 0);
	CHECK(rumpuser_close(rofd) == 0);
	CHECK(rumpuser_close(fullfd) == 0);
	CHECK(rumpuser_close(fd) == NB_EBADF);
}

/* ---- memory, randomness, errno, console, components ---- */

static int modinits, comploads;
static void count_modinit(const struct modinfo *const *m, size_t n) { (void)m; modinits += (int)n; }
static void count_compload(const struct rump_component *c) { (void)c; comploads++; }

static void
test_misc(void)
{
	void *p = NULL;
	CHECK(rumpuser_malloc(10000, 4096, &p) == 0 && p != NULL && ((uintptr_t)p & 4095) == 0);
	memset(p, 1, 10000);
	rumpuser_free(p, 10000);
	CHECK(rumpuser_malloc(100, 0, &p) == 0 && p != NULL);
	rumpuser_free(p, 100);
	CHECK(rumpuser_malloc(100, 3, &p) == NB_EINVAL);

	CHECK(rumpuser_anonmmap(NULL, 1 << 20, 16, 0, &p) == 0 && ((uintptr_t)p & 0xffff) == 0);
	memset(p, 2, 1 << 20);
	rumpuser_unmap(p, 1 << 20);

	unsigned char r[64] = { 0 };
	size_t got = 0;
	CHECK(rumpuser_getrandom(r, sizeof(r), RUMPUSER_RANDOM_HARD | RUMPUSER_RANDOM_NOWAIT, &got) == 0 && got == sizeof(r));
	int nonzero = 0;
	for (size_t i = 0; i < sizeof(r); i++)
		nonzero += r[i] != 0;
	CHECK(nonzero > 32);

	rumpuser_seterrno(NB_ENOSYS);
	CHECK(errno == NB_ENOSYS);	/* the raw NetBSD value */
	CHECK(rumpuser_component_errtrans(EAGAIN) == NB_EAGAIN);
	CHECK(rumpuser_component_errtrans(ENOSYS) == NB_ENOSYS);
	CHECK(rumpuser_kill(RUMPUSER_PID_SELF, 7) == NB_EINVAL);	/* SIGEMT: no host signal */

	rumpuser_dprintf("contract: dprintf %d %s\n", 42, "ok");
	const char *s = "contract: putchar ok\n";
	while (*s)
		rumpuser_putchar(*s++);

	/* No shared objects with link sets here: nothing is handed over. */
	rumpuser_dl_bootstrap(count_modinit, NULL, count_compload, NULL);
	CHECK(modinits == 0 && comploads == 0);
	CHECK(rumpuser_daemonize_done(0) == NB_ENOENT);
}

static void *
component_thread(void *arg)
{
	(void)arg;
	int before = atomic_load(&n_newlwp);
	rumpuser_component_kthread();	/* binds this host thread to an LWP */
	CHECK(atomic_load(&n_newlwp) == before + 1);
	CHECK(!have_cpu);
	struct lwp *l = rumpuser_curlwp();
	CHECK(l != NULL);
	CHECK(rumpuser_component_curlwp() == l);
	rumpuser_component_schedule(NULL);
	CHECK(have_cpu);
	void *cookie = rumpuser_component_unschedule();
	CHECK(!have_cpu);
	rumpuser_component_schedule(cookie);
	CHECK(have_cpu);
	cookie = rumpuser_component_unschedule();
	CHECK((intptr_t)cookie == 3);
	return NULL;
}

static void
test_component(void)
{
	pthread_t t;
	pthread_create(&t, NULL, component_thread, NULL);
	pthread_join(t, NULL);
}

static int
daemonize(void)
{
	CHECK(rumpuser_init(RUMPUSER_VERSION, &fake) == 0);
	if (rumpuser_daemonize_begin() != 0)
		return 99;
	/* Only the child gets here; the parent exits with our status. */
	CHECK(rumpuser_daemonize_begin() == 36);	/* EINPROGRESS */
	CHECK(rumpuser_daemonize_done(failures ? 98 : 7) == 0);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "daemonize") == 0)
		return daemonize();
	const char *dir = argc > 1 ? argv[1] : "/tmp";

	test_init_and_params();
	rumpuser_mutex_init(&rcpu_mtx, RUMPUSER_MTX_SPIN);
	enter_kernel(&lwps[0]);
	test_mutex();
	test_condvar();
	test_condvar_nowrap();
	test_rwlock();
	test_threads();
	test_clocks();
	test_bio(dir);
	test_misc();
	test_component();
	CHECK(have_cpu);
	leave_kernel();

	CHECK(atomic_load(&protocol_errors) == 0);
	CHECK(atomic_load(&n_unsched) == atomic_load(&n_sched));
	printf("contract: %d checks, %d failed; CPU released %d times, heavy entries %d, LWPs made %d\n",
	    checks, failures, atomic_load(&n_unsched), atomic_load(&n_heavy), atomic_load(&n_newlwp));
	return failures != 0;
}
