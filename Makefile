VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: run test venv clean bench

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps 'apache-otava>=0.8'  # results/changes.py; its pins clash (pyproject.toml)
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gpufleet serve $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/submit.py
	$(PY) bench/scheduler.py --json

clean:
	rm -rf $(VENV) build *.egg-info
