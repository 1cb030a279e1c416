"""What every entry point shares: one error path, quiet library output, the effective config in the run folder.

`run(prog, summary, sections, argv, body)` parses `recipe=NAME key=value ...` (--help prints the recipe's values),
checks that `output_dir` can be written, routes library logs and warnings to `<output_dir>/logs/<prog>.log`
(`--verbose` shows them too), calls `body(cfg, argv)`, and turns every bad input -- a UserError, or a file the
command cannot write -- into one line `prog: error: ...` and exit status 2. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from distill.config import Config
from distill.errors import ConfigError, UserError, first_line
from distill.planning.parts import PlanError
from distill.recipes import help_text, load_config, resolved_summary
from distill.training.ranks import check_launch, is_main_process

VERBOSE = "--verbose"
# Libraries whose INFO/WARNING chatter belongs in the log file, not on the terminal.
_QUIET_ENV = {
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    # vLLM's engine processes print Python warnings and torch's C++ warnings straight to stderr; our own process
    # routes its warnings to the log file (captureWarnings), so these settings only quiet the children.
    "PYTHONWARNINGS": "ignore",
    "TORCH_CPP_LOG_LEVEL": "ERROR",
}


def check_output_dir(path: Path, key: str = "output_dir") -> None:
    """Make `path` (and its parents) or fail with one line: a file in the way, no permission, a read-only disk."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"key '{key}': {parent} is a file, not a folder (output_dir={path})")
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"key '{key}': cannot write to {path} ({e.strerror or e})") from None


def quiet_libraries(log_file: Path, verbose: bool) -> None:
    """Library logs and Python warnings to `log_file`; on the terminal only errors, or everything with --verbose."""
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    _vllm_logging(log_file, verbose)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "distill_cli", False)]:  # a main() called again in-process
        root.removeHandler(old)
        old.close()
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.setLevel(logging.INFO)
    terminal = _Terminal()
    terminal.setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:  # our own warnings (reward hacking, a weaker sandbox) are for the user; libraries' only errors
        terminal.addFilter(lambda r: r.levelno >= logging.ERROR or r.name.split(".")[0] in ("distill", "grpo"))
    for h in (handler, terminal):
        h.distill_cli = True
        root.addHandler(h)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    _route_library_loggers()


def _vllm_logging(log_file: Path, verbose: bool) -> None:
    """vLLM's engine runs in processes of its own that configure logging from the environment: the same log file,
    and on the terminal only its errors (everything with --verbose)."""
    import json

    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain"},
            "terminal": {
                "class": "logging.StreamHandler",
                "level": "INFO" if verbose else "ERROR",
                "stream": "ext://sys.stderr",
                "formatter": "plain",
            },  # fmt: skip
        },
        "loggers": {"vllm": {"handlers": ["file", "terminal"], "level": "INFO", "propagate": False}},
    }
    path = log_file.with_suffix(".vllm-logging.json")
    path.write_text(json.dumps(config))
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
    os.environ.setdefault("VLLM_LOGGING_CONFIG_PATH", str(path))


def _route_library_loggers() -> None:
    """transformers and datasets print through handlers of their own; send their records to ours instead."""
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_default_handler()
        transformers_logging.enable_propagation()
    except ImportError:
        pass
    with contextlib.suppress(ImportError):
        import datasets.utils.logging  # it adds its StreamHandler on import: import it first

        datasets.utils.logging.disable_progress_bar()  # "Generating train split": internals, not the user's work
    datasets_root = logging.getLogger("datasets")
    for handler in [h for h in datasets_root.handlers if type(h) is logging.StreamHandler]:
        datasets_root.removeHandler(handler)
    datasets_root.propagate = True


class _Terminal(logging.StreamHandler):
    """stderr as it is at each record (tests and callers may swap sys.stderr after setup)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def write_effective_config(cfg: Config, folder: Path) -> Path:
    """The resolved settings (recipe + overrides) as `config.yaml` in the run folder: what this run really used."""
    from omegaconf import OmegaConf

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    if is_main_process():  # every rank of a multi-process launch resolved the same settings: rank 0 writes them
        path.write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    return path


def run(
    prog: str,
    summary: str,
    sections: tuple[str, ...],
    argv: list[str] | None,
    body: Callable[[Config, list[str]], int],
    stage: str | None = None,
) -> int:
    """Parse, check, quiet the libraries, run `body`; bad input is one line and exit 2 (see the module docstring).
    With `stage`, distill.plan's checks for that stage run before `body` loads any model (one line per problem)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = VERBOSE in argv
    argv = [a for a in argv if a != VERBOSE]
    try:
        if any(a in ("-h", "--help") for a in argv):
            print(help_text(prog, summary, sections, [a for a in argv if a not in ("-h", "--help")]))
            return 0
        cfg = load_config(argv, sections=sections)  # every auto resolved here, once (distill.recipes.resolve)
        check_output_dir(Path(cfg.output_dir))
        quiet_libraries(Path(cfg.output_dir) / "logs" / f"{prog}.log", verbose)
        if stage is not None:
            from distill.planning import check_before_load

            check_before_load(cfg, stage)
        check_launch()
        if is_main_process():  # once per launch, not once per process
            print(f"{prog}: {resolved_summary(cfg)}", file=sys.stderr)  # the stage's first line: what it resolved
        return body(cfg, argv)
    except PlanError as e:  # every problem the plan found, one line each
        for line in e.problems:
            print(f"{prog}: error: {line}", file=sys.stderr)
    except UserError as e:
        print(f"{prog}: error: {first_line(e)}", file=sys.stderr)
    except OSError as e:
        if e.filename is None:
            raise
        print(f"{prog}: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
    return 2
