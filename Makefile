# prodemb — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,airflow,eval
# The venv is (re)installed only when pyproject.toml changes; pip's cache keeps re-installs offline-fast.
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d" " -f1)

DATA ?=
FORMAT ?= clicks
OUT ?= data/demo
CLICKS ?= 200000
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: venv test demo bench java clean

venv: $(STAMP)

java:
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [ -z "$$v" ]; then echo "ERROR: Java not found. Spark needs Java 17: install openjdk-17-jdk-headless (or set JAVA_HOME)."; exit 1; fi; \
	if [ "$$v" -lt 17 ]; then echo "ERROR: Java $$v found; Spark 4 needs Java 17 or newer (set JAVA_HOME)."; exit 1; fi

$(STAMP): pyproject.toml | java
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "ERROR: Python >= 3.11 needed (PYTHON=$(PYTHON))"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-*; touch $@
	@echo "venv ready: $(VENV)"

test: venv
	$(PY) -m pytest -q

TOKENIZER ?= runs/tokenizer.model
MLFLOW_URI ?= sqlite:///mlflow.db

demo: venv
ifeq ($(DATA),)
	$(PY) -m prodemb.synth --out data/synth --clicks $(CLICKS)
	$(PY) jobs/sessionize.py --input data/synth/clicks --input-format clicks --output $(OUT)
else
	$(PY) jobs/sessionize.py --input $(DATA) --input-format $(FORMAT) --output $(OUT)
endif
	$(PY) jobs/train_tokenizer.py --data $(OUT) --output $(TOKENIZER)
	$(PY) jobs/train.py --data $(OUT) --tokenizer $(TOKENIZER) --profile small --mlflow-uri $(MLFLOW_URI)
	$(PY) jobs/score.py --data $(OUT) --mlflow-uri $(MLFLOW_URI)
	$(PY) jobs/publish.py --data $(OUT) --no-progress
	@pid=$$($(PY) -c "import os, pyarrow.dataset as d; t = d.dataset(os.path.realpath('$(OUT)/catalog')).to_table(columns=['product_id','n_events']).to_pandas(); print(t.sort_values('n_events').product_id.iloc[-1])"); \
	echo; echo "== Feast online lookup of product $$pid =="; $(PY) jobs/lookup.py --product-id $$pid; \
	echo; echo "== Nearest neighbours =="; $(PY) jobs/similar.py --product-id $$pid --k 5 --recall
	@echo
	@echo "Demo done. Tables: $(OUT)/  tokenizer: $(TOKENIZER)  model: models:/prodemb-encoder@champion"
	@echo "Browse runs and the registry:  $(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_URI)"

bench: venv
	$(PY) benchmarks/sessionize_bench.py
	$(PY) benchmarks/train_bench.py
	$(PY) benchmarks/feature_store_bench.py

clean:
	rm -rf data runs mlruns mlflow.db spark-warehouse
