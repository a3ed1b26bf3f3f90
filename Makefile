# Two commands: `make demo` and `make test`.
# Uses the active Python environment (virtualenv or conda) if there is one, else creates .venv.
VENV ?= .venv
ifneq ($(VIRTUAL_ENV)$(CONDA_PREFIX),)
PYTHON ?= python
else
PYTHON ?= $(VENV)/bin/python
endif
PYTEST_ARGS ?=
# the suite runs in one pytest-xdist worker per core (one torch thread each, tests/conftest.py); 0 runs it in this
# process alone
TEST_WORKERS ?= auto
# The torch policy, stated once: pyproject.toml declares the oldest torch the code supports (torch>=2.4); this is
# the version the suite is tested with, installed only when no torch is there (an open range would pull a
# multi-GB CUDA build on a CPU machine), and an installed torch is never upgraded.
TORCH_TESTED = 2.13.0
LINTED = jetattn networks tests studies scripts get_datasets.py

.PHONY: install test test-fast demo lint format

install:
	@if [ "$(PYTHON)" = "$(VENV)/bin/python" ] && [ ! -x "$(VENV)/bin/python" ]; then \
		echo "creating $(VENV)"; python3 -m venv $(VENV); fi
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q torch==$(TORCH_TESTED)
	$(PYTHON) -m pip install -q -e ".[test,generate,plot]"

# the whole suite, as CI runs it
test: install
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# the edit-test loop: everything but the tests marked slow
test-fast: install
	$(PYTHON) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: install
	$(PYTHON) -m ruff check $(LINTED)
	$(PYTHON) -m ruff format --check $(LINTED)

format: install
	$(PYTHON) -m ruff check --fix $(LINTED)
	$(PYTHON) -m ruff format $(LINTED)

demo: install
	PYTHON=$(PYTHON) ./demo.sh
