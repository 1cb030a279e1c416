"""distill.cluster: Slurm job scripts rendered from a recipe, checked by running their command lines with fake
`srun`-side tools (no cluster): the right ranks, node counts, URLs and settings reach the real entry points' argv."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from distill.cluster import TEMPLATES, main, render

ECHO = '#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@" > "$ARGV_FILE"\n'


def _rendered(kind: str, tmp_path: Path, *overrides: str) -> str:
    out = tmp_path / f"{kind}.sbatch"
    assert main([kind, "recipe=qwen32b", f"output_dir={tmp_path / 'out'}", *overrides, "--out", str(out)]) == 0
    return out.read_text()


def _fake_tools(tmp_path: Path, *names: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        (bin_dir / name).write_text(ECHO)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_FILE": str(tmp_path / "argv")}


@pytest.mark.parametrize("kind", TEMPLATES)
def test_every_template_renders_to_valid_bash_with_nothing_left_open(kind, tmp_path):
    script = _rendered(kind, tmp_path)
    assert "{{" not in script and script.startswith("#!/bin/bash\n")
    subprocess.run(["bash", "-n", "-c", script], check=True)
    assert f"python -m distill.cluster {kind} recipe=qwen32b" in script  # says how it was made


def test_sft_runs_one_accelerate_launch_per_node_with_its_rank(tmp_path):
    script = _rendered("sft", tmp_path, "hardware.nodes=2", "generate.prompts.sets=[aime,math500]")
    assert "#SBATCH --nodes=2" in script and "#SBATCH --gpus-per-node=8" in script
    srun_line = next(line for line in script.splitlines() if line.startswith("srun "))
    inner = shlex.split(srun_line)[-1]  # what bash -c runs on each node
    env = {**_fake_tools(tmp_path, "accelerate"), "SLURM_NODEID": "1", "MAIN": "node-a"}
    subprocess.run(["bash", "-c", inner], check=True, env=env)
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:5] == ["accelerate", "launch", "--config_file", "recipes/accelerate/zero3.yaml", "--num_machines"]
    assert argv[argv.index("--num_processes") + 1] == "16" and argv[argv.index("--machine_rank") + 1] == "1"
    assert argv[argv.index("--main_process_ip") + 1] == "node-a"
    assert argv[argv.index("-m") + 1 :] == ["distill.sft", "recipe=qwen32b", f"output_dir={tmp_path / 'out'}",
                                           "hardware.nodes=2", "generate.prompts.sets=[aime,math500]"]  # fmt: skip


def test_generate_waits_for_the_fleet_and_passes_its_urls(tmp_path):
    script = _rendered("generate", tmp_path, "hardware.nodes=2")
    urls = tmp_path / "out" / "fleet"
    urls.mkdir(parents=True)
    (urls / "0.url").write_text("http://node-a:8000/v1\n")
    (urls / "1.url").write_text("http://node-b:8001/v1\n")
    subprocess.run(["bash", "-c", script], check=True, env=_fake_tools(tmp_path, "python"), cwd=tmp_path.parent)
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[1:3] == ["-m", "distill.generate"] and "generate.engine.kind=openai" in argv
    assert argv[-1] == "generate.engine.urls=[http://node-a:8000/v1,http://node-b:8001/v1]"


def test_serve_and_grpo_command_lines(tmp_path):
    serve = _rendered("serve", tmp_path, "hardware.nodes=3")
    assert "#SBATCH --array=0-2" in serve
    assert ("python -m vllm.entrypoints.openai.api_server --model deepseek-ai/DeepSeek-R1 --served-model-name "
            "deepseek-ai/DeepSeek-R1 --host 0.0.0.0 --port \"$PORT\"") in serve  # fmt: skip
    assert "--tensor-parallel-size 8" in serve and "--enforce-eager" not in serve  # a GPU node
    grpo = _rendered("grpo", tmp_path)
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3 trl vllm-serve --model Qwen/Qwen2.5-32B --tensor-parallel-size 4" in grpo
    assert ("CUDA_VISIBLE_DEVICES=4,5,6,7 accelerate launch --config_file recipes/accelerate/zero3.yaml "
            "--num_processes 4 -m grpo.train recipe=qwen32b") in grpo  # fmt: skip
    assert "grpo.vllm_mode=server grpo.vllm_server_base_url=http://localhost:8000" in grpo


def test_a_recipe_without_server_gpus_is_one_line(tmp_path, capsys):
    assert main(["grpo", "recipe=qwen7b", f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distill.cluster: error: hardware.vllm_server_gpus") and "\n" not in err


def test_render_names_a_missing_value():
    with pytest.raises(KeyError, match="nodes"):
        render("#SBATCH --nodes={{nodes}}", {})


def test_compare_runs_in_one_allocation_and_starts_training_with_srun(tmp_path):
    script = _rendered("compare", tmp_path, "hardware.nodes=2", "compare.arms=[base,distill]")
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=1" in script
    line = next(line for line in script.splitlines() if line.startswith("exec "))
    assert shlex.split(line) == ["exec", "python", "-m", "grpo.compare", "recipe=qwen32b",
                                 f"output_dir={tmp_path / 'out'}", "hardware.nodes=2", "compare.arms=[base,distill]",
                                 "compare.launcher=srun", "compare.accelerate_config=recipes/accelerate/zero3.yaml"]  # fmt: skip
