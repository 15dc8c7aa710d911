# Two commands on a fresh clone: `make demo` (set up, run the main job) and `make test` (set up, run every check).
PYTHON ?= python3
# The torch build to install first (here: the CPU wheel on local disk); any torch>=2.4 works: make TORCH=torch
TORCH  ?= torch==2.13.0
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck browser light-installs bench schema zoo-full fuzz kill-resume clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/netdsl check specs/*.yaml
	$(BIN)/netdsl summarize specs/lenet5.yaml
	$(BIN)/netdsl train specs/lenet5.yaml

test: $(STAMP) browser lint typecheck
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder

# The draw page's test opens it in Debian's headless Chromium (which also brings libcairo2 for cairosvg's PNG and PDF).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# netdsl without the heavy groups, in fresh venvs inside the repository: the core (check, summarize, draw; no torch)
# and [runtime] (infer on a model this .venv exports; no torch). Prints each venv's size and install time.
light-installs: $(STAMP)
	PYTHON=$(PYTHON) MAIN=$(BIN) bash tests/light_installs.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/bench_summarize.py
	$(BIN)/python bench/bench_torch.py
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_text.py
	$(BIN)/python bench/bench_onnx.py
	$(BIN)/python bench/bench_data.py
	$(BIN)/python bench/bench_tasks.py
	$(BIN)/python bench/bench_int8.py
	$(BIN)/python bench/bench_draw.py
	$(BIN)/python bench/bench_lsp.py
	$(BIN)/python bench/bench_extends.py

zoo-full: $(STAMP)
	NETDSL_FULL_ZOO=1 $(BIN)/python -m pytest -p no:cacheprovider -q tests/test_torch_backend.py tests/test_onnx_zoo.py

fuzz: $(STAMP)
	$(BIN)/python tests/fuzz.py --cases 5000 --seed 1

kill-resume: $(STAMP)
	$(BIN)/python tests/kill_resume.py --kills 20

schema: $(STAMP)
	$(BIN)/python -c "from netdsl.layers.registry import index_text; open('netdsl/layers/index.py', 'w').write(index_text())"
	$(BIN)/python -c "from netdsl.lang.schema import write_schemas; write_schemas('netdsl')"

clean:
	rm -rf $(VENV) $(VENV)-core $(VENV)-runtime build *.egg-info .pytest_cache .mypy_cache .ruff_cache
