/* clock_nanosleep straight to the kernel, for test runs under libfaketime.
 *
 * With FAKETIME_DONT_FAKE_MONOTONIC=1 (needed: Python's timed lock waits use
 * sem_clockwait on the monotonic clock, which libfaketime 0.9.10 does not translate,
 * so with a faked monotonic clock every Event.wait(timeout) hangs), libfaketime still
 * rewrites absolute monotonic deadlines passed to clock_nanosleep, and Python's
 * time.sleep fails with EINVAL. Preloaded before libfaketime, this keeps sleeps on the
 * real monotonic clock, which is what Python measured its deadline with.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *request,
                    struct timespec *remain) {
    return syscall(SYS_clock_nanosleep, clock, flags, request, remain) == -1 ? errno : 0;
}
