# Every target installs what it needs into .venv first (python3 -m venv + pip), so each works on a
# fresh machine. `make` alone regenerates the figures and tables under results/ from committed records.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: figures install test demo bench clean
figures: $(STAMP)
	$(BIN)/python scripts/make_figures.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check spectral_sweep tests scripts
	$(BIN)/python -m pytest -q -n auto --dist loadfile

demo: $(STAMP)
	$(BIN)/spectral-sweep experiment=quickstart

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python scripts/bench_gpu.py $$($(BIN)/python -c "import torch; print('' if torch.cuda.is_available() else '--quick')")
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_search.py
	$(BIN)/python scripts/bench_spectrum.py
	$(BIN)/python scripts/bench_learner.py

clean:
	rm -rf outputs build dist *.egg-info
