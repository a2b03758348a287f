# Two commands matter: `make demo` (the whole pipeline on a built-in synthetic dataset)
# and `make test` (the test suite). Both install what they need into .venv first.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# On the CPU development machines torch/torchvision are pinned to the builds on local disk.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup test demo ablation clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	$(if $(strip $(TORCH_PINS)),$(VPY) -m pip install -q $(TORCH_PINS))
	$(VPY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(VPY) -m pytest -q tests

# The whole pipeline on the built-in synthetic dataset: synth -> extract -> train -> eval.
# Everything lands under runs/demo/; re-running resumes extraction and retrains from scratch.
DEMO := runs/demo
demo: setup
	$(VPY) cli.py synth --out $(DEMO)/data --videos 240 --max-seconds 12 --long-fraction 0.01 --seed 0
	$(VPY) cli.py extract --videos $(DEMO)/data/videos --annotations $(DEMO)/data/annotations \
		--out $(DEMO)/feats.h5 --config configs/demo_extract.toml
	rm -rf $(DEMO)/shmamba
	$(VPY) cli.py train --store $(DEMO)/feats.h5 --config configs/demo.toml --out $(DEMO) --name shmamba
	$(VPY) cli.py eval --run $(DEMO)/shmamba --split test
	cp $(DEMO)/shmamba/report_test.json $(DEMO)/report_test.json
	@echo "demo done: $(DEMO)/report_test.json (per-type accuracies, scorer format); run folder $(DEMO)/shmamba"

# Every variant x 3 seeds on the demo store (made by `make demo` when missing), on the CPU; the
# README's ablation table.  Re-running continues an interrupted ablation.
ablation: setup
	test -f $(DEMO)/feats.h5 || $(MAKE) demo
	$(VPY) cli.py ablate --store $(DEMO)/feats.h5 --config configs/ablation_demo.toml --seeds 3 \
		--out runs/ablation

clean-venv:
	rm -rf $(VENV)
