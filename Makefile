# landscape: `make demo` runs the main job, `make test` runs the tests. Both install first.
PY_BOOT ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
TORCH   := torch==2.13.0
STAMP   := $(VENV)/.installed
FMNIST  := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SCALE   ?= demo
DEMO_CKPTS := checkpoints/demo
export PYTHONUNBUFFERED := 1

.PHONY: install lint test test-paper-smoke demo demo-checkpoints bench clean fashion-mnist \
        paper fig1 fig2 fig4 fig7 fig8 fig9 fig10 fig12

install: $(STAMP) fashion-mnist

# CPU torch first (a bare `torch` requirement would pull a multi-GB CUDA build), then the package.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

# The Debian package ships the IDX files; install it only when missing and apt-get is usable.
fashion-mnist:
	@if [ -f "$(FMNIST)" ] || [ -n "$$LANDSCAPE_DATA" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
	    || echo "warning: could not install dataset-fashion-mnist; tests that need it will skip"; \
	else echo "note: Fashion-MNIST missing and apt-get unusable; install dataset-fashion-mnist or set LANDSCAPE_DATA"; fi

lint: install
	$(VENV)/bin/ruff check .

test: install
	$(PY) -m pytest -q

test-paper-smoke: install
	$(PY) -m pytest -q -m paper_smoke tests/test_paper_smoke.py

demo-checkpoints: install
	$(PY) experiments/demo_checkpoints.py --out $(DEMO_CKPTS)

# Generated output goes to runs/demo (git-ignored); committed reference figures stay in figures/.
demo: install
	$(PY) experiments/demo.py --checkpoints $(DEMO_CKPTS) --out runs/demo

# The peers (hessian-eigenthings, curvlinops) come from the `bench` extra, pinned; torch is held at
# the installed build so the extra cannot replace it. A peer that fails to install is skipped.
bench: install
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-pin.txt
	$(PIP) install -q -c $(VENV)/torch-pin.txt -e '.[bench]' \
	  || echo "warning: the bench extra did not install; missing peers are skipped"
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# ---- Paper figures -------------------------------------------------------------------------
# SCALE=demo (default): Fashion-MNIST, the tiny models, CPU. SCALE=paper: CIFAR-100 and the
# paper's architectures (PAPER_CKPTS=dir holding the released *.pth.tar, else trained by
# experiments/paper_checkpoints.py with the paper's recipe); meant for GPUs.
ifeq ($(SCALE),paper)
  FIG_DATA   := cifar100
  BUDGET     ?= paper
  PAPER_CKPTS ?= checkpoints/paper
  FIG_CKPTS  := $(PAPER_CKPTS)/resnet50.pt $(PAPER_CKPTS)/vit_ti.pt $(PAPER_CKPTS)/alternet50.pt
  FIG_PREREQ := paper-checkpoints
  FIG4_ARGS  := --data cifar100 --models vit_ti resnet50 --device auto
  FIG7_ARGS  := --data cifar100 --model vit_ti --device auto
  FIG12_ARGS := -- --baseline resnet50 --data cifar100 --device auto
  FIG_RAW    := --raw runs/paper/raw
else
  FIG_DATA   := fashion-mnist
  BUDGET     ?= quick
  FIG_CKPTS  := $(foreach m,resnet_tiny vit_tiny alternet_tiny,$(foreach s,0 1 2 3 4,$(DEMO_CKPTS)/$(m)_s$(s).pt))
  FIG_PREREQ := demo-checkpoints
  FIG_RAW    := --raw runs/demo/raw
endif
# Every figure target shares one raw-results folder (at demo scale the one `make demo` fills),
# so a figure after `make demo` only redraws from the stored numbers.
ANALYZE = $(PY) -m landscape analyze $(FIG_CKPTS) --data $(FIG_DATA) --budget $(BUDGET) --no-adapt $(FIG_RAW)

paper-checkpoints: install
	$(PY) experiments/paper_checkpoints.py --out $(PAPER_CKPTS)

fig1: $(FIG_PREREQ)
	$(ANALYZE) --only surface,hessian --out figures/fig1/$(SCALE)
fig2: $(FIG_PREREQ)
	$(ANALYZE) --only fourier,robustness --out figures/fig2/$(SCALE)
fig8: $(FIG_PREREQ)
	$(ANALYZE) --only fourier --out figures/fig8/$(SCALE)
fig9: $(FIG_PREREQ)
	$(ANALYZE) --only variance --out figures/fig9/$(SCALE)
fig10: $(FIG_PREREQ)
	$(ANALYZE) --only cka,lesion --out figures/fig10/$(SCALE)
fig4: install
	$(PY) experiments/data_size_study.py --seeds 0 1 $(FIG4_ARGS) --out figures/fig4
fig7: install
	$(PY) experiments/locality_study.py --seeds 0 1 $(FIG7_ARGS) --out figures/fig7
fig12: install
	$(PY) experiments/alternet_buildup.py --out figures/alternet $(FIG12_ARGS)

paper: fig1 fig2 fig4 fig7 fig8 fig9 fig10 fig12
