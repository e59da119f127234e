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
# A demo on other data keeps its own tables, evaluation and registered model (data/demo-FORMAT,
# runs/demo-eval-FORMAT, prodemb-encoder-FORMAT): the embeddings table keeps every product's latest vector,
# so one table holding two datasets' sites could not be published to Feast keyed by product_id, and the
# gate would weigh the new data's candidate against the other dataset's champion.
DEMO_SUFFIX := $(if $(DATA),-$(FORMAT))
OUT ?= data/demo$(DEMO_SUFFIX)
CLICKS ?= 200000
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: venv test demo serve bench eval-real study java browser clean cluster-up cluster-down

venv: $(STAMP)
	@# Spark's start-up notices off; spark-submit's local driver sized to this machine and started from a
	@# class-data archive (spark-defaults.conf; the archive is built once per JDK and Spark, ~30 s)
	@$(PY) -c "from prodemb.spark import install_local_spark; install_local_spark()"

# Headless Chromium renders the quality card in the tests (tests/test_card.py).
browser:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium (headless browser for the tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "ERROR: could not install chromium (apt-get install chromium)"; exit 1; }

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

# Test files run in TEST_WORKERS processes (pytest-xdist), each file whole on one worker: its module
# fixtures are built once, and the files that start fixed-port services never overlap with themselves.
TEST_WORKERS ?= 2
test: venv browser
	$(PY) -m ruff check --quiet .
	$(PY) -m ruff format --check --quiet .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

TOKENIZER ?= runs/tokenizer.model
# An exported MLFLOW_TRACKING_URI is honoured (MLflow's convention); MLFLOW_URI=... overrides both.
MLFLOW_URI ?= $(or $(MLFLOW_TRACKING_URI),sqlite:///mlflow.db)
EVAL_OUT ?= runs/demo-eval$(DEMO_SUFFIX)
# Downstream tasks for the demo's evaluation: the generator's labels, or built-in tasks of the chosen data.
EVAL_METHODS ?= prodemb,random,tfidf,tfidf+prodemb,fasttext,prod2vec,meta_prod2vec,sbert
ifeq ($(DATA),)
EVAL_TASKS ?= --task condition=data/synth/tasks/condition.parquet --task free_shipping=data/synth/tasks/free_shipping.parquet
else ifeq ($(FORMAT),movielens)
EVAL_TASKS ?= --builtin movielens_drama,movielens_horror,movielens_well_rated
else ifeq ($(FORMAT),online-retail)
EVAL_TASKS ?= --builtin retail_premium,retail_returned,retail_bulk
else
EVAL_TASKS ?=
endif

# The demo's encoder: the recommended 512-d model (conf/models/default.yaml) at a third of its step budget, so
# that the demo shows the vector adding to TF-IDF in about 10 minutes on 2 cores (README, "Two commands").
# DEMO_MODEL="--set model.profile=small" is the 2-minute demo with the 128-d test model.
DEMO_MODEL ?= --set train.max_steps=100 --set train.without_categories.max_steps=400
DEMO_MODEL_NAME ?= prodemb-encoder$(DEMO_SUFFIX)

demo: venv
ifeq ($(DATA),)
	$(PY) -m prodemb.synth --out data/synth --clicks $(CLICKS)
endif
	@# The pipeline's stages in the DAG's order (prodemb.pipeline), once over the whole log.
	$(PY) -m prodemb.pipeline --input $(or $(DATA),data/synth/clicks) --input-format $(if $(DATA),$(FORMAT),clicks) \
		--output $(OUT) --tokenizer $(TOKENIZER) --mlflow-uri $(MLFLOW_URI) --eval-output $(EVAL_OUT) \
		$(if $(strip $(EVAL_TASKS)),$(EVAL_TASKS),--no-tasks) --evaluate "--methods $(EVAL_METHODS) --samples 3" \
		--set mlflow.model_name=$(DEMO_MODEL_NAME) $(DEMO_MODEL)
ifeq ($(strip $(EVAL_TASKS)),)
	@echo "(no downstream tasks known for FORMAT=$(FORMAT): evaluation and the gate skipped; set EVAL_TASKS='--task NAME=PATH')"
endif
	@pid=$$($(PY) -c "import os, pyarrow.dataset as d; t = d.dataset(os.path.realpath('$(OUT)/catalog')).to_table(columns=['product_id','n_events']).to_pandas(); print(t.sort_values('n_events').product_id.iloc[-1])"); \
	echo; echo "== Feast online lookup of product $$pid =="; $(PY) jobs/lookup.py --product-id $$pid; \
	echo; echo "== Nearest neighbours =="; $(PY) jobs/similar.py --product-id $$pid --k 5 --recall --data $(OUT) --mlflow-uri $(MLFLOW_URI)
	@if [ -f $(EVAL_OUT)/report.md ]; then echo; echo "== Downstream evaluation (test AUC at the largest training size, then with 100 and 500 labels) =="; \
		awk '/^\| task \| (train_size|labels) \|/{p=1} p && /^$$/{p=0; print ""} p' $(EVAL_OUT)/report.md; fi
	@echo
	@echo "Demo done. Tables: $(OUT)/  tokenizer: $(TOKENIZER)  model: models:/$(DEMO_MODEL_NAME)@champion"
	@echo "Evaluation: $(EVAL_OUT)/report.md, results.csv, learning curves in $(EVAL_OUT)/plots/*.png"
	@$(PY) -c "import mlflow; c = mlflow.MlflowClient('$(MLFLOW_URI)'); v = c.get_model_version_by_alias('$(DEMO_MODEL_NAME)', 'candidate'); p = v.tags.get('promotion.quality_card'); print(f'Quality card of version {v.version}: {p}' if p else f'(version {v.version} has no quality card)')" 2>/dev/null || true
	@echo "Browse runs and the registry:  $(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_URI)"

# Downstream evaluation on the real public data in ../shared/data (README "Evaluation"): an encoder per
# dataset with sessions (MovieLens, Online Retail), all methods on its built-in tasks, and the α sweep.
REAL_DATA ?= ../shared/data
REAL ?= runs/real
REAL_MLFLOW ?= sqlite:///$(REAL)/mlflow.db
REAL_TRAIN ?=                   # extra jobs/train.py flags, e.g. --max-minutes 8 or --profile paper
SWEEP_MINUTES ?= 2              # the sweep's first α trains this long; every α then trains as many steps
# textcnn trains the encoder's architecture from scratch for every size × sample: at 512-d that alone took
# over 20 minutes on MovieLens (2 cores). Add it back with REAL_METHODS=...,textcnn.
REAL_METHODS ?= prodemb,random,tfidf,tfidf+prodemb,fasttext,prod2vec,meta_prod2vec,sbert
ML_TASKS ?= movielens_drama,movielens_comedy,movielens_horror,movielens_well_rated
RETAIL_TASKS ?= retail_premium,retail_returned,retail_bulk
EN := --set sessions.language=en

# The recommended model (jobs/train.py's default profile) per dataset with sessions, then every method.
# The built-in tasks read REAL_DATA too.
eval-real: export PRODEMB_SHARED_DATA := $(abspath $(REAL_DATA))
eval-real: venv
	@test -d $(REAL_DATA)/movielens-latest-small || { echo "ERROR: real data not found under $(REAL_DATA)"; exit 1; }
	$(PY) jobs/sessionize.py --input $(REAL_DATA)/movielens-latest-small --input-format movielens --output $(REAL)/movielens $(EN)
	$(PY) jobs/train_tokenizer.py --data $(REAL)/movielens --output $(REAL)/movielens-tokenizer.model $(EN)
	$(PY) jobs/train.py --data $(REAL)/movielens --tokenizer $(REAL)/movielens-tokenizer.model $(REAL_TRAIN) \
		--mlflow-uri $(REAL_MLFLOW) --set mlflow.model_name=prodemb-encoder-movielens $(EN) --no-progress
	$(PY) jobs/evaluate.py --model-uri models:/prodemb-encoder-movielens@candidate --mlflow-uri $(REAL_MLFLOW) \
		--builtin $(ML_TASKS) --methods $(REAL_METHODS) --data $(REAL)/movielens --output $(REAL)/eval-movielens \
		$(EN) --no-progress
	$(PY) jobs/sweep_alpha.py --data $(REAL)/movielens --tokenizer $(REAL)/movielens-tokenizer.model \
		--max-minutes $(SWEEP_MINUTES) --builtin $(ML_TASKS) --mlflow-uri $(REAL_MLFLOW) \
		--output $(REAL)/sweep-movielens $(EN) --no-progress
	$(PY) jobs/sessionize.py --input $(REAL_DATA)/uci-online-retail/by-day --input-format online-retail --output $(REAL)/retail $(EN)
	$(PY) jobs/train_tokenizer.py --data $(REAL)/retail --output $(REAL)/retail-tokenizer.model $(EN)
	$(PY) jobs/train.py --data $(REAL)/retail --tokenizer $(REAL)/retail-tokenizer.model $(REAL_TRAIN) \
		--mlflow-uri $(REAL_MLFLOW) --set mlflow.model_name=prodemb-encoder-retail $(EN) --no-progress
	$(PY) jobs/evaluate.py --model-uri models:/prodemb-encoder-retail@candidate --mlflow-uri $(REAL_MLFLOW) \
		--builtin $(RETAIL_TASKS) --methods $(REAL_METHODS) --data $(REAL)/retail --output $(REAL)/eval-retail \
		$(EN) --no-progress
	@echo "Reports: $(REAL)/eval-movielens/report.md $(REAL)/sweep-movielens/report.md $(REAL)/eval-retail/report.md"
	@echo "Browse:  $(VENV)/bin/mlflow ui --backend-store-uri $(REAL_MLFLOW)"

# The embedding-quality study (benchmarks/quality_study.py; RESULTS.md "Embedding quality"): every
# variant of benchmarks/quality_variants.yaml on each dataset. Hours on 2 CPU cores, minutes on a GPU.
STUDY ?= runs/study
study: venv
	$(PY) benchmarks/quality_study.py prepare --out $(STUDY)
	for ds in retail movielens synth; do $(PY) benchmarks/quality_study.py run --dataset $(STUDY)/$$ds \
		--out $(STUDY)/$$ds-results --sizes 100,500 --samples 5 --no-progress || exit 1; done

bench: venv
	$(PY) benchmarks/sessionize_bench.py
	$(PY) benchmarks/train_bench.py
	$(PY) benchmarks/feature_store_bench.py
	$(PY) benchmarks/serve_bench.py

# Embeddings over HTTP for new titles (cold start): MLflow's scoring server on the champion, 127.0.0.1:5001.
serve: venv
	$(PY) jobs/serve.py --mlflow-uri $(MLFLOW_URI)

# The real cluster on this machine (prodemb/cluster.py; profile conf/cluster-local.yaml): Spark standalone
# master :7077 + 2 workers, Redis :6379, MLflow server :5000, S3-compatible store :9000 (moto), all on
# 127.0.0.1. Idempotent.
cluster-up: venv
	$(PY) -m prodemb.cluster up

cluster-down: venv
	$(PY) -m prodemb.cluster down

clean:
	rm -rf data runs mlruns mlflow.db mlartifacts spark-warehouse
