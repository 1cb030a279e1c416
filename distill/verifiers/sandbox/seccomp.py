"""The seccomp filter of every sandboxed process: an allow-list of the system calls a Python program needs.

Why an allow-list: each kernel facility that a sandbox uid can reach and that outlives the run, or that holds memory
the run's control group does not count, is a way to cheat the verifier or the host (issue #21 found kernel keyrings
read back by a later run, page-cache probes with `preadv2(RWF_NOWAIT)` and `posix_fadvise(DONTNEED)` that carried
64 of 64 bits between runs, and netlink, TCP and UDP buffers that held 4.4 GiB of host memory outside a 1.25 GiB
cap). A deny-list misses the next such call; this filter lets through only the groups below and answers ENOSYS to
anything else, as a kernel without that call would (so libc falls back where it can, e.g. `clone3` -> `clone`).

Refused on purpose (ENOSYS unless said): keyrings (`add_key`, `keyctl`, `request_key`), page-cache residency and
eviction (`mincore`, `fadvise64`, `readahead`, `cachestat`; `preadv2`/`pwritev2` only with flags 0, else
EOPNOTSUPP; `madvise` only with the advice libc and CPython use, else EINVAL, so no MADV_PAGEOUT/COLD or KSM),
`io_uring_*`, `userfaultfd`, `bpf`, `perf_event_open`, `ptrace`, `process_vm_*`, memory locking, mounts, `unshare`,
namespace flags to `clone` (EPERM), every socket family but AF_UNIX (EAFNOSUPPORT: the sandbox has no network, and
the socket memory of other families is not charged to a cgroup v1 group), and any call made through another ABI
(i386 `int 0x80`, x32: EPERM), which would otherwise pass under other numbers.
"""

from __future__ import annotations

import errno
import platform
import struct

# Groups of allowed calls, each with the reason a Python program (or the sandbox's bootstrap) makes them. Names
# missing from an architecture's table (aarch64 has no `open`, `fork`, ...) are skipped there. Order is a little
# by frequency: the filter compares one number after another.
# fmt: off
ALLOWED: dict[str, tuple[str, ...]] = {
    "read, write and close files and pipes": (
        "read", "write", "close", "fstat", "newfstatat", "openat", "lseek", "pread64", "pwrite64", "readv",
        "writev", "open", "stat", "lstat", "statx", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
        "getdents64", "getdents", "fcntl", "ioctl", "dup", "dup2", "dup3", "pipe", "pipe2", "close_range",
        "openat2", "creat", "preadv", "pwritev", "statfs", "fstatfs", "flock", "fsync", "fdatasync",
        "sync_file_range", "sendfile", "copy_file_range", "splice", "tee",
        "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
    ),
    "change files in the run's own tmpfs": (
        "getcwd", "chdir", "fchdir", "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2", "link",
        "linkat", "unlink", "unlinkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "chown", "fchown",
        "lchown", "fchownat", "umask", "truncate", "ftruncate", "fallocate", "utime", "utimes", "utimensat",
        "futimesat", "memfd_create",
    ),
    "memory (the allocator, mmap, ctypes)": ("mmap", "munmap", "mprotect", "mremap", "brk", "msync"),
    "wait for events (select, asyncio, subprocess)": (
        "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
        "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "timerfd_create", "timerfd_settime",
        "timerfd_gettime", "signalfd", "signalfd4",
    ),
    "signals and timers": (
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait", "rt_sigsuspend",
        "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "pause", "alarm", "getitimer", "setitimer",
        "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time", "times",
    ),
    "processes and threads (os.fork, subprocess, threading, multiprocessing)": (
        "futex", "futex_waitv", "set_robust_list", "get_robust_list", "set_tid_address", "rseq", "fork", "vfork",
        "execve", "execveat", "wait4", "waitid", "exit", "exit_group", "kill", "tgkill", "tkill", "pidfd_open",
        "pidfd_send_signal", "getpid", "getppid", "gettid", "getpgid", "getpgrp", "getsid", "setpgid", "setsid",
        "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_getscheduler",
        "sched_get_priority_max", "sched_get_priority_min", "getpriority", "setpriority", "membarrier",
    ),
    "identity and limits (os, resource, platform)": (
        "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "getrlimit", "setrlimit",
        "prlimit64", "getrusage", "sysinfo", "uname", "arch_prctl", "prctl", "capget", "getrandom",
    ),
    # The bootstrap drops to the run's uid after the filter is in place; without capabilities these only fail.
    "the bootstrap's drop to the run's uid": ("setgroups", "setresuid", "setresgid"),
    # AF_UNIX only (checked below): multiprocessing and asyncio need socketpair; unix buffers are charged to the run.
    "AF_UNIX sockets": (
        "socket", "socketpair", "connect", "accept", "accept4", "bind", "listen", "shutdown", "getsockname",
        "getpeername", "setsockopt", "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
        "recvmmsg",
    ),
    # Private to the run's IPC namespace (bwrap and unshare layers) and charged to its memory cap.
    "System V and POSIX IPC (multiprocessing)": (
        "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget", "msgsnd",
        "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
        "mq_getsetattr",
    ),
}
# fmt: on
# The allowed calls whose arguments are checked too (see _checked): the call -> the errno for a refused argument.
CHECKED = ("socket", "socketpair", "clone", "clone3", "preadv2", "pwritev2", "madvise")

AF_UNIX = 1
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
# MADV_NORMAL, RANDOM, SEQUENTIAL, WILLNEED, DONTNEED, FREE, DONTFORK, DOFORK, HUGEPAGE, NOHUGEPAGE, DONTDUMP, DODUMP,
# WIPEONFORK, KEEPONFORK: what glibc's allocator and CPython use. Not MERGEABLE (KSM, a cross-process timing
# channel), COLD or PAGEOUT (they evict page cache another run could probe).
MADVISE_ALLOWED = (0, 1, 2, 3, 4, 8, 10, 11, 14, 15, 16, 17, 18, 19)

_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ARG0, _ARG2, _ARG5 = 16, 32, 56  # offsets of the arguments' low 32 bits in struct seccomp_data (little-endian)

# From the kernel's unistd headers (x86_64: asm/unistd_64.h; aarch64: asm-generic/unistd.h).
# fmt: off
_X86_64 = dict(read=0, write=1, open=2, close=3, stat=4, fstat=5, lstat=6, poll=7, lseek=8, mmap=9, mprotect=10,
    munmap=11, brk=12, rt_sigaction=13, rt_sigprocmask=14, rt_sigreturn=15, ioctl=16, pread64=17, pwrite64=18,
    readv=19, writev=20, access=21, pipe=22, select=23, sched_yield=24, mremap=25, msync=26, madvise=28, shmget=29,
    shmat=30, shmctl=31, dup=32, dup2=33, pause=34, nanosleep=35, getitimer=36, alarm=37, setitimer=38, getpid=39,
    sendfile=40, socket=41, connect=42, accept=43, sendto=44, recvfrom=45, sendmsg=46, recvmsg=47, shutdown=48,
    bind=49, listen=50, getsockname=51, getpeername=52, socketpair=53, setsockopt=54, getsockopt=55, clone=56,
    fork=57, vfork=58, execve=59, exit=60, wait4=61, kill=62, uname=63, semget=64, semop=65, semctl=66, shmdt=67,
    msgget=68, msgsnd=69, msgrcv=70, msgctl=71, fcntl=72, flock=73, fsync=74, fdatasync=75, truncate=76,
    ftruncate=77, getdents=78, getcwd=79, chdir=80, fchdir=81, rename=82, mkdir=83, rmdir=84, creat=85, link=86,
    unlink=87, symlink=88, readlink=89, chmod=90, fchmod=91, chown=92, fchown=93, lchown=94, umask=95,
    gettimeofday=96, getrlimit=97, getrusage=98, sysinfo=99, times=100, getuid=102, getgid=104, geteuid=107,
    getegid=108, setpgid=109, getppid=110, getpgrp=111, setsid=112, getgroups=115, setgroups=116, setresuid=117,
    getresuid=118, setresgid=119, getresgid=120, getpgid=121, getsid=124, capget=125, rt_sigpending=127,
    rt_sigtimedwait=128, rt_sigqueueinfo=129, rt_sigsuspend=130, sigaltstack=131, utime=132, statfs=137,
    fstatfs=138, getpriority=140, setpriority=141, sched_getparam=143, sched_getscheduler=145,
    sched_get_priority_max=146, sched_get_priority_min=147, prctl=157, arch_prctl=158, setrlimit=160, gettid=186,
    getxattr=191, lgetxattr=192, fgetxattr=193, listxattr=194, llistxattr=195, flistxattr=196, tkill=200, time=201,
    futex=202, sched_setaffinity=203, sched_getaffinity=204, epoll_create=213, getdents64=217, set_tid_address=218,
    semtimedop=220, clock_gettime=228, clock_getres=229, clock_nanosleep=230, exit_group=231, epoll_wait=232,
    epoll_ctl=233, tgkill=234, utimes=235, mq_open=240, mq_unlink=241, mq_timedsend=242, mq_timedreceive=243,
    mq_notify=244, mq_getsetattr=245, waitid=247, openat=257, mkdirat=258, fchownat=260, futimesat=261,
    newfstatat=262, unlinkat=263, renameat=264, linkat=265, symlinkat=266, readlinkat=267, fchmodat=268,
    faccessat=269, pselect6=270, ppoll=271, set_robust_list=273, get_robust_list=274, splice=275, tee=276,
    sync_file_range=277, utimensat=280, epoll_pwait=281, signalfd=282, timerfd_create=283, eventfd=284,
    fallocate=285, timerfd_settime=286, timerfd_gettime=287, accept4=288, signalfd4=289, eventfd2=290,
    epoll_create1=291, dup3=292, pipe2=293, preadv=295, pwritev=296, rt_tgsigqueueinfo=297, recvmmsg=299,
    prlimit64=302, sendmmsg=307, getrandom=318, memfd_create=319, execveat=322, membarrier=324,
    copy_file_range=326, preadv2=327, pwritev2=328, statx=332, rseq=334, pidfd_send_signal=424, pidfd_open=434,
    clone3=435, close_range=436, openat2=437, faccessat2=439, epoll_pwait2=441, futex_waitv=449)
_AARCH64 = dict(getxattr=8, lgetxattr=9, fgetxattr=10, listxattr=11, llistxattr=12, flistxattr=13, getcwd=17,
    eventfd2=19, epoll_create1=20, epoll_ctl=21, epoll_pwait=22, dup=23, dup3=24, fcntl=25, ioctl=29, flock=32,
    mkdirat=34, unlinkat=35, symlinkat=36, linkat=37, renameat=38, statfs=43, fstatfs=44, truncate=45,
    ftruncate=46, fallocate=47, faccessat=48, chdir=49, fchdir=50, fchmod=52, fchmodat=53, fchownat=54, fchown=55,
    openat=56, close=57, pipe2=59, getdents64=61, lseek=62, read=63, write=64, readv=65, writev=66, pread64=67,
    pwrite64=68, preadv=69, pwritev=70, sendfile=71, pselect6=72, ppoll=73, signalfd4=74, splice=76, tee=77,
    readlinkat=78, newfstatat=79, fstat=80, fsync=82, fdatasync=83, sync_file_range=84, timerfd_create=85,
    timerfd_settime=86, timerfd_gettime=87, utimensat=88, capget=90, exit=93, exit_group=94, waitid=95,
    set_tid_address=96, futex=98, set_robust_list=99, get_robust_list=100, nanosleep=101, getitimer=102,
    setitimer=103, clock_gettime=113, clock_getres=114, clock_nanosleep=115, sched_setaffinity=122,
    sched_getaffinity=123, sched_yield=124, sched_get_priority_max=125, sched_get_priority_min=126, kill=129,
    tkill=130, tgkill=131, sigaltstack=132, rt_sigsuspend=133, rt_sigaction=134, rt_sigprocmask=135,
    rt_sigpending=136, rt_sigtimedwait=137, rt_sigqueueinfo=138, rt_sigreturn=139, setpriority=140,
    getpriority=141, setresuid=147, getresuid=148, setresgid=149, getresgid=150, times=153, setpgid=154,
    getpgid=155, getsid=156, setsid=157, getgroups=158, setgroups=159, uname=160, getrlimit=163, setrlimit=164,
    getrusage=165, umask=166, prctl=167, gettimeofday=169, getpid=172, getppid=173, getuid=174, geteuid=175,
    getgid=176, getegid=177, gettid=178, sysinfo=179, mq_open=180, mq_unlink=181, mq_timedsend=182,
    mq_timedreceive=183, mq_notify=184, mq_getsetattr=185, msgget=186, msgctl=187, msgrcv=188, msgsnd=189,
    semget=190, semctl=191, semtimedop=192, semop=193, shmget=194, shmctl=195, shmat=196, shmdt=197, socket=198,
    socketpair=199, bind=200, listen=201, accept=202, connect=203, getsockname=204, getpeername=205, sendto=206,
    recvfrom=207, setsockopt=208, getsockopt=209, shutdown=210, sendmsg=211, recvmsg=212, brk=214, munmap=215,
    mremap=216, clone=220, execve=221, mmap=222, mprotect=226, msync=227, madvise=233, accept4=242, recvmmsg=243,
    wait4=260, prlimit64=261, sendmmsg=269, renameat2=276, getrandom=278, memfd_create=279, execveat=281,
    membarrier=283, copy_file_range=285, preadv2=286, pwritev2=287, statx=291, rseq=293, pidfd_send_signal=424,
    pidfd_open=434, clone3=435, close_range=436, openat2=437, faccessat2=439, epoll_pwait2=441, futex_waitv=449)
# fmt: on
_X86_64["renameat2"] = 316
# machine -> (AUDIT_ARCH_*, syscall table)
_ARCHES = {"x86_64": (0xC000003E, _X86_64), "aarch64": (0xC00000B7, _AARCH64)}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def _ret_errno(number: int) -> bytes:
    return _insn(_RET, _RET_ERRNO | number)


def _only_if_equal(offset: int, values: tuple[int, ...], refused: int) -> list[bytes]:
    """Allow when the argument at `offset` is one of `values`, else fail with errno `refused`."""
    body = [_insn(_LD_ABS, offset)]
    for i, value in enumerate(values):
        body.append(_insn(_JEQ, value, len(values) - i, 0))  # -> the ALLOW after the refusal
    return [*body, _ret_errno(refused), _insn(_RET, _RET_ALLOW)]


def _checked(name: str) -> list[bytes]:
    """The instructions after the syscall number matched `name` (the number is no longer in the accumulator)."""
    if name in ("socket", "socketpair"):
        return _only_if_equal(_ARG0, (AF_UNIX,), errno.EAFNOSUPPORT)
    if name == "clone":
        return [_insn(_LD_ABS, _ARG0), _insn(_JSET, NAMESPACE_FLAGS, 0, 1), _ret_errno(errno.EPERM),
                _insn(_RET, _RET_ALLOW)]  # fmt: skip
    if name == "clone3":  # its flags sit in memory, out of a classic filter's reach; libc falls back to clone
        return [_ret_errno(errno.ENOSYS)]
    if name in ("preadv2", "pwritev2"):  # RWF_NOWAIT probes the page cache; CPython passes flags 0 by default
        return _only_if_equal(_ARG5, (0,), errno.EOPNOTSUPP)
    if name == "madvise":
        return _only_if_equal(_ARG2, MADVISE_ALLOWED, errno.EINVAL)
    raise ValueError(name)


def allow_list(machine: str | None = None) -> bytes:
    """The filter program (struct sock_filter[]) for this machine; b"" where its syscall numbers are not known."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return b""
    audit, table = arch
    plain = [table[n] for group in ALLOWED.values() for n in group if n in table and n not in CHECKED]
    program = [
        _insn(_LD_ABS, 4),  # arch
        _insn(_JEQ, audit, 1, 0),
        _ret_errno(errno.EPERM),
        _insn(_LD_ABS, 0),  # syscall number
        _insn(_JGE, 0x40000000, 0, 1),  # x32
        _ret_errno(errno.EPERM),
    ]
    for number in plain:
        program += [_insn(_JEQ, number, 0, 1), _insn(_RET, _RET_ALLOW)]
    for name in CHECKED:
        body = _checked(name)
        program += [_insn(_JEQ, table[name], 0, len(body)), *body]
    program.append(_ret_errno(errno.ENOSYS))
    return b"".join(program)


def allowed_names() -> set[str]:
    """Every call the filter lets through, argument checks aside."""
    return {n for group in ALLOWED.values() for n in group} | set(CHECKED) - {"clone3"}
