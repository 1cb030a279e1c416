"""A seccomp filter that stops sandboxed code from making user namespaces (what `bwrap --disable-userns` does for an
unprivileged sandbox, but in every layer, privileged bwrap included).

A user namespace hands its creator every capability inside it: mounts, and the kernel surface behind them. The
filter answers EPERM to `unshare` and `clone` with CLONE_NEWUSER, ENOSYS to `clone3` (whose flags a classic BPF
filter cannot read; libc then falls back to `clone`), and EPERM to any call made through another ABI (i386 `int
0x80`, x32), which would otherwise pass under other syscall numbers. The bootstrap installs it with
PR_SET_NO_NEW_PRIVS before any untrusted code runs.
"""

from __future__ import annotations

import errno
import platform
import struct

CLONE_NEWUSER = 0x10000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
# machine -> (AUDIT_ARCH_*, clone, unshare, clone3)
_ARCHES = {
    "x86_64": (0xC000003E, 56, 272, 435),
    "aarch64": (0xC00000B7, 220, 97, 435),
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def no_user_namespaces(machine: str | None = None) -> bytes:
    """The filter program (struct sock_filter[]) for this machine; b"" where its syscall numbers are not known."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return b""
    audit, clone, unshare, clone3 = arch
    deny, enosys = _RET_ERRNO | errno.EPERM, _RET_ERRNO | errno.ENOSYS
    program = [
        _insn(_LD_ABS, 4),  # 0: arch
        _insn(_JEQ, audit, 1, 0),  # 1: our ABI -> 3
        _insn(_RET, deny),  # 2
        _insn(_LD_ABS, 0),  # 3: syscall number
        _insn(_JGE, 0x40000000, 0, 1),  # 4: x32 -> 5, else 6
        _insn(_RET, deny),  # 5
        _insn(_JEQ, clone3, 0, 1),  # 6
        _insn(_RET, enosys),  # 7
        _insn(_JEQ, unshare, 1, 0),  # 8: -> 10
        _insn(_JEQ, clone, 0, 3),  # 9: -> 10, else 13
        _insn(_LD_ABS, 16),  # 10: low 32 bits of the first argument (the flags)
        _insn(_JSET, CLONE_NEWUSER, 0, 1),  # 11: -> 12, else 13
        _insn(_RET, deny),  # 12
        _insn(_RET, _RET_ALLOW),  # 13
    ]
    return b"".join(program)
