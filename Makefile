# The README's two commands: `make demo` runs the product, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PDF_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	# WeasyPrint (the board report's PDF) needs Pango and a font: Debian's packages, if missing.
	dpkg -s $(PDF_PACKAGES) >/dev/null 2>&1 || apt-get install -y $(PDF_PACKAGES) \
		|| (apt-get update && apt-get install -y $(PDF_PACKAGES))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# The project itself, editable, with its `tracker` command (.venv/bin/tracker).
	$(PY) -m pip install --quiet --no-deps --editable .
	touch $(STAMP)

demo: install
	$(VENV)/bin/tracker demo

test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

bench: install
	$(PY) bench/bench_dosage.py

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .hypothesis
