# Two commands a newcomer needs:
#   make example   set up a virtualenv, install conductor, run the bundled example track offline
#   make test      set up the same virtualenv and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: example test lint setup clean-example

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'

setup: $(PY)

example: $(PY)
	$(VENV)/bin/conductor run tracks/hello/track.yaml
	$(VENV)/bin/conductor status tracks/hello/track.yaml

# Coverage counts the Python processes the tests start too (pyproject.toml [tool.coverage]);
# the report at the end lists files not fully covered. Leave out the slow tests locally with
# `$(PY) -m pytest -m "not slow"`.
test: $(PY)
	$(PY) -m pytest -q --cov --cov-report=term

lint: $(PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean-example:
	rm -rf .conductor/hello build
