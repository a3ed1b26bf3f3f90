# Two commands: `make demo` and `make test`.
# Uses the active Python environment (virtualenv or conda) if there is one, else creates .venv.
VENV ?= .venv
ifneq ($(VIRTUAL_ENV)$(CONDA_PREFIX),)
PYTHON ?= python
else
PYTHON ?= $(VENV)/bin/python
endif
PYTEST_ARGS ?=

.PHONY: install test demo lint

install:
	@if [ "$(PYTHON)" = "$(VENV)/bin/python" ] && [ ! -x "$(VENV)/bin/python" ]; then \
		echo "creating $(VENV)"; python3 -m venv $(VENV); fi
	@# torch first, pinned: an open range would pull a multi-GB CUDA build; an installed torch is never upgraded.
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e ".[test,generate,plot]"

test: install
	$(PYTHON) -m pytest $(PYTEST_ARGS)

lint: install
	$(PYTHON) -m ruff check jetattn networks tests get_datasets.py

demo: install
	PYTHON=$(PYTHON) ./demo.sh
