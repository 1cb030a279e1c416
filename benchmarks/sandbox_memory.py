"""Host memory one hostile sandboxed run can hold, by every means found, against the run's cap.

    python benchmarks/sandbox_memory.py [--hold 3] [--only NAME ...]

Each hoarder runs in the real sandbox (distill.verifiers.sandbox, default Limits: 1 GiB address space per process,
a 1.25 GiB cap on the run where a control group works, 32 processes, 64 descriptors) and tries to pin as much memory
as it can, then says "held" on stdout and sleeps. The host reads MemAvailable from /proc/meminfo before the run and
while the hoarder holds (the lowest of a few samples), and prints the difference: host memory the run really took,
whatever its control group counted. Target (issue #21): <= 1.5 GiB by every means. Means the seccomp filter refuses
print what the program got instead (e.g. "socket: [Errno 97]"). Run it alone: other work moves MemAvailable.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill.verifiers import sandbox  # noqa: E402

# Every hoarder forks up to 24 holders (the run's process cap is 32): per-process limits (RLIMIT_AS, descriptors) are
# multiplied that way, so only a cap on the whole run holds. Each prints "held" when it has done what it can.
_FORK = """
import os, sys, time
def hold_all(hold, n=24):
    for _ in range(n):
        try:
            if os.fork() == 0:
                try:
                    hold()
                except BaseException:
                    pass
                time.sleep(600)
        except OSError:
            break
    time.sleep(1.0)
    print("held", flush=True)
    time.sleep(600)
"""
HOARDERS = {
    "anonymous memory": "def hold():\n    global b\n    b = [bytearray(64 << 20) for _ in range(14)]\n",
    "memfd": "def hold():\n    fds = []\n    for _ in range(60):\n        fd = os.memfd_create('x')\n"
    "        os.write(fd, b'x' * (15 << 20))\n        fds.append(fd)\n",
    "sysv shm": "import ctypes\ndef hold():\n    libc = ctypes.CDLL(None)\n    libc.shmat.restype = ctypes.c_void_p\n"
    "    for _ in range(40):\n        i = libc.shmget(0, 64 << 20, 0o1600)\n        a = libc.shmat(i, None, 0)\n"
    "        ctypes.memset(a, 1, 64 << 20)\n        libc.shmdt(ctypes.c_void_p(a))\n",
    "tmpfs files": "def hold():\n    with open(f'/tmp/f{os.getpid()}', 'wb') as f:\n"
    "        for _ in range(16):\n            f.write(b'x' * (1 << 20))\n",
    "pipes": "import fcntl\ndef hold():\n    keep = []\n    for _ in range(30):\n        r, w = os.pipe()\n"
    "        fcntl.fcntl(w, 1031, 1 << 20)\n        os.set_blocking(w, False)\n"
    "        try:\n            while True:\n                os.write(w, b'x' * 65536)\n        except BlockingIOError:\n"
    "            pass\n        keep.append((r, w))\n    global K\n    K = keep\n",
    "unix sockets": "import socket\ndef hold():\n    keep = []\n    for _ in range(30):\n"
    "        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n        a.setblocking(False)\n"
    "        try:\n            while True:\n                a.send(b'x' * 60000)\n        except OSError:\n"
    "            pass\n        keep.append((a, b))\n    global K\n    K = keep\n",
    "tcp loopback": "import socket\ndef hold():\n    s = socket.socket()\n",
    "udp": "import socket\ndef hold():\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n",
    "netlink": "import socket\ndef hold():\n    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n",
    "keyrings": "import ctypes\ndef hold():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
    "    for i in range(200):\n        if libc.syscall(248, b'user', b'k%d' % i, b'x' * 30000, 30000, -4) < 0:\n"
    "            raise OSError(ctypes.get_errno(), 'add_key')\n",
}
_PROBE = "\ntry:\n    hold()\n    print('ok', flush=True)\nexcept OSError as e:\n    print('refused:', e, flush=True)\n"


def available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def measure(name: str, hold_seconds: float) -> tuple[int, str, sandbox.SandboxResult]:
    """(bytes of host memory the run took at its lowest MemAvailable, what the first attempt said, the result)."""
    probe = sandbox.run_sandboxed("import os\n" + HOARDERS[name] + _PROBE, limits=sandbox.Limits(timeout=10))
    lines = (probe.stdout or probe.stderr_tail).decode(errors="replace").strip().splitlines()
    said = lines[-1] if lines else f"exit {probe.exit_code}"
    time.sleep(0.5)
    before = available()
    lowest = [before]

    def sample() -> None:
        deadline = time.monotonic() + hold_seconds + 8
        while time.monotonic() < deadline:
            lowest[0] = min(lowest[0], available())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    program = _FORK + HOARDERS[name] + "hold_all(hold)\n"
    limits = sandbox.Limits(timeout=hold_seconds + 6)
    result = sandbox.run_sandboxed(program, limits=limits)
    sampler.join(0)
    return before - lowest[0], said, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=3.0, help="seconds the sampler watches after the run starts")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    print(f"sandbox: {sandbox.isolation()}; cap {sandbox.Limits().run_memory_bytes / 2**30:.2f} GiB per run")
    print(f"{'means':<18} {'host GiB':>9} {'group peak GiB':>15}  first attempt / how the run ended")
    worst = 0
    for name in args.only or HOARDERS:
        taken, said, r = measure(name, args.hold)
        worst = max(worst, taken)
        peak = f"{r.memory_peak / 2**30:.2f}" if r.memory_peak else "-"
        ended = (
            f"exit {r.exit_code}"
            + (", OOM-killed" if r.oom_killed else "")
            + (f", {r.timed_out}" if r.timed_out else "")
        )
        print(f"{name:<18} {taken / 2**30:>9.2f} {peak:>15}  {said[:60]} / {ended}")
    print(f"worst: {worst / 2**30:.2f} GiB of host memory (target <= 1.50)")


if __name__ == "__main__":
    main()
