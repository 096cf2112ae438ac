# Two commands a fresh machine needs:
#   make demo   install what a run needs (no test tooling), then curate the bundled sample
#               videos into out/demo (embedded Ray)
#   make test   install everything (Python packages, ffmpeg via imageio-ffmpeg, Azurite via npm,
#               headless Chromium from the distribution packages) and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install install-run chromium demo test test-fast bench bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# What `curator run` needs: the package and its dependencies (ffmpeg comes with imageio-ffmpeg).
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@if [ ! -f $(VENV)/.installed ] || [ pyproject.toml -nt $(VENV)/.installed ]; then \
	  $(BIN)/python -m pip install -e .; fi
	@touch $@

# Everything the tests need too: dev extras (emulators, ruff, mypy) and Azurite from npm.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	@if [ -f package.json ]; then npm install --no-audit --no-fund --loglevel=error; fi
	@touch $@ $(VENV)/.installed-run

install-run: $(VENV)/.installed-run

install: $(VENV)/.installed chromium

# Headless Chromium opens `curator report` output in tests/integration/test_report.py.
# From the distribution's packages (Debian: `chromium`); sudo only when not root.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing chromium (apt-get) for the report test"; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium \
	    || echo "warning: chromium not installed; tests/integration/test_report.py will skip its browser check"; \
	fi

demo: install-run
	$(BIN)/curator run --input samples/ --output out/demo --force

# mypy (a minute from a cold cache) runs beside pytest; either failing fails the target.
test: install
	$(BIN)/ruff check .
	@$(BIN)/mypy > $(VENV)/mypy.log 2>&1 & mypy=$$!; \
	  $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  wait $$mypy; mrc=$$?; echo "mypy:"; cat $(VENV)/mypy.log; \
	  if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$mrc

test-fast: install
	$(BIN)/python -m pytest -m "unit" $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/pipeline_bench.py

# One GPU: libx264 vs NVDEC+libx264 vs NVDEC+NVENC, TransNetV2 GPU vs CPU (sized for a few minutes
# on a 16-core GPU machine; BENCH_ARGS="--videos 4 --seconds 5" for a quick look).
# Needs the gpu extra (`pip install -e '.[gpu]'`); without CUDA it measures the CPU rows only.
bench-gpu: install
	$(BIN)/python benchmarks/gpu_bench.py $(BENCH_ARGS)

clean:
	rm -rf out/ .pytest_cache build *.egg-info
