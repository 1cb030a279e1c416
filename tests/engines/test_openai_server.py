"""OpenAISampler against fake OpenAI-compatible servers on 127.0.0.1: order, seeds, auth, concurrency, retries."""

from __future__ import annotations

import pytest
from fakes import FakeServer

from distill.config import SamplingConfig
from distill.engines.base import Request
from distill.engines.openai_server import OpenAISampler


def requests(count: int) -> list[Request]:
    return [Request([{"role": "user", "content": f"problem {i}"}], seed=100 * i) for i in range(count)]


def sampler(*servers: FakeServer, **options) -> OpenAISampler:
    options = {"model": "teacher", "concurrency": 4, "timeout": 10.0, "max_retries": 0, **options}
    return OpenAISampler([s.url for s in servers], **options)


def test_samples_come_back_in_request_order_with_n_each_and_distinct_seeds(fake_server):
    server = fake_server(delay=0.01)
    params = SamplingConfig(n=3, temperature=0.7, top_p=0.9, max_tokens=64)
    results = sampler(server).sample(requests(5), params)
    assert [[s.text for s in group] for group in results] == [
        [f"problem {i}|seed={100 * i + k}" for k in range(3)] for i in range(5)
    ]
    assert all(s.finish_reason == "stop" and s.num_tokens == 2 for group in results for s in group)
    body = server.bodies[0]
    assert (body["model"], body["n"], body["temperature"], body["top_p"], body["max_tokens"]) == (
        "teacher",
        1,
        0.7,
        0.9,
        64,
    )
    assert len({b["seed"] for b in server.bodies}) == 15


def test_the_api_key_comes_from_the_environment_variable(fake_server, monkeypatch):
    server = fake_server()
    monkeypatch.setenv("DISTILL_TEST_KEY", "sk-test-123")
    sampler(server, api_key_env="DISTILL_TEST_KEY").sample(requests(1), SamplingConfig(n=1))
    monkeypatch.delenv("DISTILL_TEST_KEY")
    sampler(server, api_key_env="DISTILL_TEST_KEY").sample(requests(1), SamplingConfig(n=1))
    # Without the variable: a placeholder, which vLLM servers started without --api-key accept.
    assert [h["authorization"] for h in server.headers] == ["Bearer sk-test-123", "Bearer EMPTY"]


def test_concurrency_is_bounded_per_server(fake_server):
    server = fake_server(delay=0.05)
    results = sampler(server, concurrency=2).sample(requests(6), SamplingConfig(n=2))
    assert sum(len(group) for group in results) == len(server.bodies) == 12
    assert server.max_active == 2  # bounded, and the bound is used


def test_two_servers_share_the_load_each_within_its_bound(fake_server):
    servers = [fake_server(delay=0.05), fake_server(delay=0.05)]
    results = sampler(*servers, concurrency=2).sample(requests(8), SamplingConfig(n=2))
    assert [s.text for s in results[7]] == ["problem 7|seed=700", "problem 7|seed=701"]
    assert all(len(s.bodies) > 0 and s.max_active <= 2 for s in servers)
    assert sum(len(s.bodies) for s in servers) == 16


def test_a_failed_request_is_retried(fake_server):
    server = fake_server(fail_first=1)
    results = sampler(server, max_retries=2).sample(requests(1), SamplingConfig(n=1))
    assert server.statuses == [500, 200]
    assert results[0][0].text == "problem 0|seed=0"


def test_without_retries_the_failure_is_raised(fake_server):
    import openai

    server = fake_server(fail_first=1)
    with pytest.raises(openai.InternalServerError):
        sampler(server, max_retries=0).sample(requests(1), SamplingConfig(n=1))


def test_reasoning_content_goes_back_into_a_think_block(fake_server):
    server = fake_server(reasoning="2 + 2 is 4.")
    [[sample]] = sampler(server).sample(requests(1), SamplingConfig(n=1))
    assert sample.text == "<think>\n2 + 2 is 4.\n</think>\nproblem 0|seed=0"


def test_finish_reason_length_is_carried_through(fake_server):
    server = fake_server(finish_reason="length")
    results = sampler(server).sample(requests(2), SamplingConfig(n=2))
    assert [s.finish_reason for group in results for s in group] == ["length"] * 4


def test_no_urls_is_an_error():
    with pytest.raises(ValueError, match="engine.urls"):
        OpenAISampler([], "teacher")


def test_a_server_that_cannot_be_reached_leaves_the_fleet_and_nothing_is_lost(fake_server):
    live, dead = fake_server(delay=0.01), fake_server()
    dead.stop()  # its port now refuses connections
    s = sampler(dead, live)
    results = s.sample(requests(6), SamplingConfig(n=2))
    assert [[x.text for x in group] for group in results] == [
        [f"problem {i}|seed={100 * i + k}" for k in range(2)] for i in range(6)
    ]
    assert s.dispatched[live.url] == 12 and s.dispatched[dead.url] == s.failed_over >= 1


def test_no_server_left_is_one_clear_error(fake_server):
    from distill.engines.openai_server import FleetDown

    dead = fake_server()
    dead.stop()
    with pytest.raises(FleetDown, match="can be reached"):
        sampler(dead).sample(requests(1), SamplingConfig(n=1))
