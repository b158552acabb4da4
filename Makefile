# Two commands from a fresh clone (CPU is enough, no downloads beyond PyPI):
#   make demo   set up .venv, build the examplar data, train SAMA on it (SRCC/PLCC per epoch), score with it:
#               the VQA demo, then the IQA demo (make demo-vqa / make demo-iqa: one of them)
#   make test   set up .venv, run the test suite
# Variables: PYTHON (interpreter that creates the venv), VENV, TRAIN_OPT / TEST_OPT / DEMO_VIDEO (VQA demo),
# IQA_OPT / DEMO_IMAGE (IQA demo).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sama-requirements
# VQA demo: the run's best (EMA) checkpoint on val-examplar goes to pretrained_weights/ (option save_dir)
TRAIN_OPT ?= VQA/options/examplar-SAMA-train.yml
TEST_OPT ?= VQA/options/examplar-SAMA-test.yml
RUN_NAME ?= examplar-SAMA
CKPT ?= pretrained_weights/$(RUN_NAME)_val-examplar_s_dev_v0.0.pth
DEMO_VIDEO ?= data/examplar/vqa/bikes-s3-left_blur2.mp4
# IQA demo: one fixed split (data.test_info); the split's best checkpoint is
# runs/{name}/{name}_split{NN}_{database}_s_dev.pth (samaiqa.cli.train_split)
IQA_OPT ?= IQA/options/examplar-sama-iqa.yml
IQA_RUN ?= examplar-sama-iqa
IQA_CKPT ?= runs/$(IQA_RUN)/$(IQA_RUN)_split00_examplar_s_dev.pth
DEMO_IMAGE ?= data/examplar/iqa/$(firstword $(shell head -n 1 examplar_data_labels/examplar_iqa/test.txt 2>/dev/null))

# the demo steps, one definition each (the demo targets and the single-step targets run the same lines)
# --overwrite: a demo run starts afresh each time (without it a run folder that holds a run is refused)
VQA_TRAIN = $(PY) VQA/demo_train.py -o $(TRAIN_OPT) --no-progress --overwrite
VQA_TEST = $(PY) VQA/demo_test.py -o $(TEST_OPT) --no-progress
VQA_SCORE = $(PY) VQA/vqa.py -v $(DEMO_VIDEO) --ckpt $(CKPT) --options $(TEST_OPT) --no-progress
IQA_TRAIN = $(PY) IQA/demo_train_iqa_baseline.py -o $(IQA_OPT) --no-progress --overwrite
IQA_TEST = $(PY) IQA/demo_test_iqa.py -o $(IQA_OPT) --ckpt $(IQA_CKPT) --no-progress
IQA_SCORE = $(PY) IQA/iqa.py -i $(DEMO_IMAGE) --ckpt $(IQA_CKPT) --no-progress

.PHONY: demo demo-vqa demo-iqa test setup data data-vqa data-iqa train score train-iqa score-iqa clean-data help gpu-check
# the steps share the two cores and each needs the previous one's output: never in parallel (make -j)
.NOTPARALLEL:

help:
	@echo "make demo      - set up .venv, then the VQA demo and the IQA demo (below)"
	@echo "make demo-vqa  - build data/examplar/vqa, train SAMA ($(TRAIN_OPT)), test it, score one video"
	@echo "make demo-iqa  - build data/examplar/iqa, train SAMA-IQA ($(IQA_OPT)), test it, score one image"
	@echo "make test      - set up .venv and run pytest"
	@echo "make setup     - only create/refresh the virtual environment"
	@echo "make data      - only build the examplar data (skips files that exist)"
	@echo "make gpu-check - check a CUDA machine end to end (without CUDA: a CPU dry run at tiny size)"

# The venv is (re)installed only when requirements.txt, pyproject.toml, setup.py or the C kernel changed since the
# last install (the install also compiles the kernel): the stamp file holds their checksum.
setup:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@want="$$(cat requirements.txt pyproject.toml setup.py samacore/_cresample.c | sha256sum | cut -d' ' -f1)"; \
	if [ "$$(cat $(STAMP) 2>/dev/null)" != "$$want" ]; then \
		echo ">> installing requirements into $(VENV)"; \
		$(PY) -m pip install -r requirements.txt && \
		$(PY) -m pip install -e . && \
		echo "$$want" > $(STAMP); \
	else \
		echo ">> $(VENV) is up to date"; \
	fi

data: setup
	$(PY) tools/build_examplar_data.py --if-missing

data-vqa: setup
	$(PY) tools/build_examplar_data.py --if-missing --only vqa

data-iqa: setup
	$(PY) tools/build_examplar_data.py --if-missing --only iqa

# test runs write to runs/{name}/test/ (predictions.csv, summary.json): the training run's files stay as they are
demo-vqa: data-vqa
	$(VQA_TRAIN)
	$(VQA_TEST)
	$(VQA_SCORE)
	@echo ">> VQA checkpoint: $(CKPT); per-epoch metrics and curves: runs/$(RUN_NAME)/metrics.csv, runs/$(RUN_NAME)/curves.png; test predictions: runs/$(RUN_NAME)/test/predictions.csv"

demo-iqa: data-iqa
	$(IQA_TRAIN)
	$(IQA_TEST)
	$(IQA_SCORE)
	@echo ">> IQA checkpoint: $(IQA_CKPT); per-epoch metrics and curves: runs/$(IQA_RUN)/metrics.csv, runs/$(IQA_RUN)/curves.png; test predictions: runs/$(IQA_RUN)/test/predictions.csv"

demo: demo-vqa demo-iqa

# single steps (no data build / setup): train or test + score again with what is there
train:
	$(VQA_TRAIN)

score:
	$(VQA_TEST)
	$(VQA_SCORE)

train-iqa:
	$(IQA_TRAIN)

score-iqa:
	$(IQA_TEST)
	$(IQA_SCORE)

# -rs prints why each skipped test was skipped (no CUDA device, CI-only C-kernel check, no decord wheel, ...)
test: setup
	$(PY) -m pytest -q -rs

# one table: training fp32 / bf16 (s/step, peak memory), torchrun over all GPUs (NCCL), CUDA vs CPU scores and
# sampling, the paper-size training step; with 2+ GPUs also resume, determinism and one-rank failure
# (benchmarks/gpu_check.py; exit status 1 if a step failed)
gpu-check: setup
	$(PY) benchmarks/gpu_check.py

clean-data:
	rm -rf data/examplar
