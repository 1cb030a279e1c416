"""distill.hub: an unreachable hub is found once, quickly, said in one line, and the run goes on offline."""

from __future__ import annotations

import os
import socket

import pytest

from distill import hub
from distill.plan import main as plan_main


@pytest.fixture
def online_env(monkeypatch):
    """No HF_HUB_OFFLINE (conftest sets it for every other test), and a fresh decision."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub.offline.cache_clear()
    yield monkeypatch
    hub.offline.cache_clear()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def test_an_unreachable_endpoint_means_offline_said_once(online_env, capsys):
    online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert hub.offline() and hub.offline()
    err = capsys.readouterr().err
    assert err.count("hub: ") == 1 and "working offline" in err and "\n" not in err.strip()
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_reachable_endpoint_is_online(online_env, capsys):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert not hub.offline()
    assert capsys.readouterr().err == ""


def test_plan_of_a_hub_recipe_goes_on_offline(online_env, capsys):
    """Without HF_HUB_OFFLINE and with the hub unreachable, the plan uses recipes/models/ (no retries)."""
    online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert plan_main(["recipe=qwen1.5b", "stage=sft"]) == 0
    captured = capsys.readouterr()
    assert "recipes/models/" in captured.out and captured.err.count("cannot be reached") == 1
