# Two commands on a fresh machine: `make demo` (set up, then run the whole pipeline on the embedded model, runs/demo.sh)
# and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done

.PHONY: setup demo test lint clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt constraints-cuda.txt scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

demo: setup
	PYTHON=$(PY) bash runs/demo.sh

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
