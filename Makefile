# Needle's two commands: `make test` (every test) and `make demo` (the main job).
# Each installs missing Debian packages, configures once, builds incrementally, and runs.
PYTHON     ?= /usr/bin/python3
BUILD      ?= build
ASAN_BUILD ?= build-asan
CMAKE_ARGS ?=
export PYTHONPATH := $(CURDIR)/python$(if $(PYTHONPATH),:$(PYTHONPATH))
# ccache stores paths relative to the repository, so the homework student trees under
# build/homework/ reuse the reference build's objects for every file they do not change.
export CCACHE_BASEDIR := $(CURDIR)

.PHONY: all deps build build-asan test test-cpp test-asan test-python test-homework demo lm gpt diffusion distributed bench format clean

all: build

deps:
	@.ci/install-deps

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DPython3_EXECUTABLE=$(PYTHON) $(CMAKE_ARGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD)

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DNEEDLE_SANITIZE=ON \
	  -DNEEDLE_CUDA=OFF -DNEEDLE_PYTHON=OFF -DCMAKE_CXX_FLAGS=-O1

build-asan: deps $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) --target needle_tests

test-cpp: build
	$(BUILD)/needle_tests

test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(ASAN_BUILD)/needle_tests

test-python: build
	@.ci/install-deps dataset-fashion-mnist bible-kjv
	$(PYTHON) -m pytest -q tests/python

# The homework machinery on both sides: the tools' own tests, then every assignment at full marks
# on the reference and failing with NotImplemented on its student version (homework/tools/selftest).
test-homework: build
	@.ci/install-deps dataset-fashion-mnist bible-kjv python3-nbclient python3-nbconvert python3-ipykernel
	$(PYTHON) -m pytest -q tests/homework
	homework/tools/selftest $(HOMEWORK)

test: test-cpp test-asan test-python test-homework

demo: build
	@.ci/install-deps dataset-fashion-mnist
	$(PYTHON) -m needle.apps.demo $(DEMO_ARGS)

# The language-model job: an LSTM on the King James Bible (Debian's bible-kjv), <= 5 minutes.
lm: build
	@.ci/install-deps bible-kjv
	$(PYTHON) -m needle.apps.lm_demo $(LM_ARGS)

# The GPT job: a small GPT with a BPE tokenizer on the King James Bible, <= 10 minutes.
gpt: build
	@.ci/install-deps bible-kjv
	$(PYTHON) -m needle.apps.gpt_demo $(GPT_ARGS)

# The diffusion job: a DDPM U-Net on Fashion-MNIST (~20 min of training), DDIM samples
# (out/diffusion_samples.png) and their Frechet distance; DIFFUSION_ARGS=--sample only samples.
diffusion: build
	@.ci/install-deps dataset-fashion-mnist
	$(PYTHON) -m needle.apps.diffusion_demo $(DIFFUSION_ARGS)

# The main job data-parallel on NP processes (needle.distributed over OpenMPI; mpirun needs
# --allow-run-as-root as root): `make distributed NP=2 DEMO_ARGS="--model cnn"`.
NP ?= 2
distributed: build
	@.ci/install-deps dataset-fashion-mnist
	mpirun --allow-run-as-root --oversubscribe -np $(NP) -x PYTHONPATH $(PYTHON) -m needle.apps.demo --distributed $(DEMO_ARGS)

bench: build
	$(PYTHON) bench/bench_ndarray.py
	$(PYTHON) bench/bench_autograd.py
	$(PYTHON) bench/bench_training.py
	$(PYTHON) bench/bench_cnn.py
	$(PYTHON) bench/bench_lstm.py
	$(PYTHON) bench/bench_attention.py
	$(PYTHON) bench/bench_transformer.py
	$(PYTHON) bench/bench_gpt.py
	$(PYTHON) bench/bench_group_norm.py
	$(PYTHON) bench/bench_diffusion.py
	@.ci/install-deps bible-kjv python3-sentencepiece
	$(PYTHON) bench/bench_tokenizer.py
	@.ci/install-deps python3-mpi4py
	mpirun --allow-run-as-root --oversubscribe -np 2 -x PYTHONPATH $(PYTHON) bench/bench_distributed.py

format:
	clang-format -i $$(git ls-files '*.h' '*.cc' '*.cu' '*.cuh')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) python/needle/_needle*.so
