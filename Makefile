# make demo  — set up (first time), then SFT → RL → eval a tiny LLaDA on the bundled task (unmask demo)
# make test  — set up (first time) and run the default test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU torch by default; GPU users: install the CUDA torch into $(VENV) first (see README).
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(VENV)/bin/unmask demo

test: setup
	$(PY) -m pytest -q
