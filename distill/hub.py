"""Whether the Hugging Face hub can be reached: decided once per process, in at most a few seconds.

Without HF_HUB_OFFLINE, huggingface_hub retries an unreachable hub with backoff on every call (a plan of a hub
recipe took 94 s off-network, against 1.2 s with the variable). Every place that would ask the hub asks `offline()`
first: one TCP connection to the endpoint (HF_ENDPOINT, else huggingface.co), at most PROBE_SECONDS. When it fails,
one line says so, HF_HUB_OFFLINE is set for this process and the libraries that read it, and the caller goes on
with the cache or the copies in recipes/models/.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from urllib.parse import urlparse

PROBE_SECONDS = 2.0
_TRUE = ("1", "true", "yes", "on")


def _endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


@functools.lru_cache(maxsize=1)
def offline() -> bool:
    """True under HF_HUB_OFFLINE, or when the hub's endpoint does not accept a connection (then said once)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in _TRUE:
        return True
    host, port = _endpoint()
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
        return False
    except OSError as e:
        reason = e.strerror or type(e).__name__
    print(f"hub: {host}:{port} cannot be reached ({reason}); working offline (cache and recipes/models/)",
          file=sys.stderr)  # fmt: skip
    go_offline()
    return True


def go_offline() -> None:
    """HF_HUB_OFFLINE=1 for this process and its children, and for the libraries that read it at import."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    for module, name in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE")):
        if module in sys.modules:
            setattr(sys.modules[module], name, True)
