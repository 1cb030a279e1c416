"""The teacher's vLLM servers for the stages that sample from it: started by grpo.compare itself
(compare.teacher_servers=N) or already running (compare.teacher_urls=[...]).

A started fleet lives as long as the stage that uses it -- started before it, stopped after it whether it finished,
failed or the comparison was stopped (SIGTERM, Ctrl-C) -- so the next stage (SFT on the same machine) has the
memory and cores back. Its servers run distill.serve's settings for the generate stage's teacher (the RL-made one
with compare.teacher_from=rl), on free ports, logging to <root>/logs/vllm-serve-<port>.log.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from distill.config import Config

# The stages whose sampler is the teacher: they get the servers' URLs (generate.engine.kind=openai).
TEACHER_STAGES = ("generate",)


class Served:
    """Where a stage's teacher answers: the servers' /v1 URLs and the model name they serve it under (None: the
    stage's own generate.engine.served_model, else the teacher's name)."""

    def __init__(self, urls: list[str], served_model: str | None = None) -> None:
        self.urls, self.served_model = list(urls), served_model


def free_ports(count: int) -> list[int]:
    """`count` ports nothing listens on now (the OS's choice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextlib.contextmanager
def teacher_servers(cfg: Config, stage: str, settings: Callable[[], Config], log_dir: Path) -> Iterator[Served | None]:
    """The teacher's servers while `stage` runs: None for a stage that does not sample the teacher or without
    compare.teacher_servers / teacher_urls. settings: makes the stage's own resolved settings (its teacher)."""
    c = cfg.compare
    if stage not in TEACHER_STAGES or not (c.teacher_servers or c.teacher_urls):
        yield None
        return
    if c.teacher_urls:
        yield Served(c.teacher_urls)
        return
    from distill.engines.serve import Fleet
    from distill.serve import spec_for

    spec = spec_for(settings(), "generate")
    start = time.monotonic()
    with Fleet(spec, free_ports(c.teacher_servers), log_dir) as fleet:
        print(f"grpo.compare: [{stage}] {len(fleet.urls)} teacher server(s) of {spec.model} up in "
              f"{time.monotonic() - start:.0f} s: {', '.join(fleet.urls)}", file=sys.stderr, flush=True)  # fmt: skip
        yield Served(fleet.urls, spec.served_name)
