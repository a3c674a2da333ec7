# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv with
# python3 -m venv and (re)install the project when it is missing or pyproject.toml changed.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_WORKERS ?= 2

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/suanli plan examples/jobs/llama3.1-70b-pretrain.yaml --cluster examples/clusters/mixed-center.yaml --top 5
	$(VENV)/bin/python -m suanli.service.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check suanli tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) lint typecheck
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
