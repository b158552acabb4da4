# Two commands from a fresh clone (CPU is enough, no downloads beyond PyPI):
#   make demo   set up .venv, build the examplar data, train SAMA on it (SRCC/PLCC per epoch), score with it
#   make test   set up .venv, run the test suite
# Variables: PYTHON (interpreter that creates the venv), VENV, TRAIN_OPT / TEST_OPT (option files), DEMO_VIDEO.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sama-requirements
TRAIN_OPT ?= VQA/options/examplar-SAMA-train.yml
TEST_OPT ?= VQA/options/examplar-SAMA-test.yml
RUN_NAME ?= examplar-SAMA
CKPT ?= pretrained_weights/$(RUN_NAME)_val-examplar_s_dev_v0.0.pth
DEMO_VIDEO ?= data/examplar/vqa/bikes-s3-left_blur2.mp4

.PHONY: demo test setup data train score clean-data help

help:
	@echo "make demo   - set up .venv, build data/examplar, train SAMA ($(TRAIN_OPT)), score the test set and one video"
	@echo "make test   - set up .venv and run pytest"
	@echo "make setup  - only create/refresh the virtual environment"
	@echo "make data   - only build the examplar data (skips files that exist)"

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

train: data
	$(PY) VQA/demo_train.py -o $(TRAIN_OPT) --no-progress

score:
	$(PY) VQA/demo_test.py -o $(TEST_OPT) --output runs/$(RUN_NAME)/test_predictions.csv --no-progress
	$(PY) VQA/vqa.py -v $(DEMO_VIDEO) --ckpt $(CKPT) --options $(TEST_OPT) --no-progress

demo: train score
	@echo ">> checkpoint: $(CKPT); per-epoch metrics: runs/$(RUN_NAME)/metrics.csv; test predictions: runs/$(RUN_NAME)/test_predictions.csv"

# -rs prints why each skipped test was skipped (no CUDA device, CI-only C-kernel check, no decord wheel, ...)
test: setup
	$(PY) -m pytest -q -rs

clean-data:
	rm -rf data/examplar
