# Two commands matter: `make demo` (the whole pipeline on a built-in synthetic dataset)
# and `make test` (the test suite). Both install what they need into .venv first.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# On the CPU development machines torch/torchvision are pinned to the builds on local disk.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup test clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	$(VPY) -m pip install -q $(TORCH_PINS)
	$(VPY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(VPY) -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
