# tessera: one Makefile for everything.
#
#   make              build/serve, build/train, tools, tests, benches (-O2)
#   make test         every CPU test, built with ASan + UBSan into build/san
#   make test-cuda    CUDA tests (needs a GPU machine): tests/cuda programs and scripts
#   make deps         install missing Debian packages and the npm test oracle
#   make demo         build a tiny model and inspect it (the README's first command)
#   make bench-gpu    the GPU benchmarks (bench/gpu.sh; needs a GPU machine)
#   make bench-sampler  the host sampler, old and new (bench/sampler.c, -O2)
#   make fuzz         the libFuzzer targets (tests/fuzz/fuzz_*.c, clang) into
#                     build/fuzz, each run FUZZ_SECONDS (default 30) on its corpus
#
# CUDA code is compiled when nvcc is found; CUDA=0 forces it off, CUDA=1 on.
# DEPS_PREFIX points at unpacked Debian packages (the GPU machine's
# .device/env.sh sets it); empty means the system's own.

BUILD      ?= build
SAN        ?= 0
DEPS_PREFIX ?=
CC         ?= cc
NPROC      := $(shell nproc 2>/dev/null || echo 2)

NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
ifneq ($(filter 1,$(SAN) $(FUZZ)),)
  CUDA := 0
endif
CUDA ?= $(if $(NVCC),1,0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))

LLHTTP_DIR := $(DEPS_PREFIX)/usr/share/llhttp
LLHTTP_INC := $(DEPS_PREFIX)/usr/share/include/llhttp

CPPFLAGS := -Icore -Ikernels -I$(LLHTTP_INC) -D_GNU_SOURCE
ifneq ($(DEPS_PREFIX),)
  CPPFLAGS += -I$(DEPS_PREFIX)/usr/include
  LDFLAGS  += -L$(DEPS_PREFIX)/usr/lib/x86_64-linux-gnu -Wl,-rpath,$(DEPS_PREFIX)/usr/lib/x86_64-linux-gnu
endif
WARN   := -Wall -Wextra -Werror -Wshadow -Wcast-qual -Wno-unused-parameter
CFLAGS := -std=c11 -g -pthread -MMD -MP $(WARN)
ifeq ($(FUZZ),1)
  # libFuzzer build (make fuzz): every object gets coverage instrumentation
  # and the sanitizers; only the fuzz targets link libFuzzer's main.
  CFLAGS  += -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
else ifeq ($(SAN),1)
  CFLAGS  += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
else
  CFLAGS  += -O2 -march=x86-64-v2
endif
LDLIBS := -luv -lcjson -lpcre2-8 -lutf8proc -lm -lpthread

ifeq ($(CUDA),1)
  CPPFLAGS += -DTESSERA_CUDA=1
  NVFLAGS  := -O3 -std=c++17 -Icore -Ikernels -gencode arch=compute_90,code=sm_90 \
              -gencode arch=compute_90,code=compute_90 -Xcompiler -Wall
  # cc links: the .cu objects (C++, kernel launch stubs) need the C++ runtime
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
endif

# kernels/backend.c (bk_open) names the CUDA backend when CUDA is on, so it
# links where the CUDA objects do (DEV_OBJ), not into tools and benches.
CORE_SRC   := $(wildcard core/*.c) $(filter-out kernels/backend.c,$(wildcard kernels/*.c)) $(wildcard kernels/cpu/*.c)
SERVE_SRC  := $(wildcard serve/*.c)
TRAIN_SRC  := $(wildcard train/*.c)
TEST_SRC   := $(wildcard tests/test_*.c)
TOOL_SRC   := $(wildcard tests/tools/*.c)
BENCH_SRC  := $(filter-out bench/gpu_%.c bench/maskbench.c,$(wildcard bench/*.c))
# The GPU benches link the CUDA backend: built when CUDA is on and its
# sources are there (kernels/cuda/backend_cuda.cu defines bk_cuda).
GPUBENCH_SRC := $(if $(and $(filter 1,$(CUDA)),$(wildcard kernels/cuda/backend_cuda.cu)),$(wildcard bench/gpu_*.c))
CU_SRC     := $(if $(filter 1,$(CUDA)),$(wildcard kernels/cuda/*.cu))
CUTEST_SRC := $(wildcard tests/cuda/test_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
CORE_OBJ   := $(call obj,$(CORE_SRC))
# The programs' modules other than main.c, so tests can link them too.
PROG_OBJ   := $(call obj,$(filter-out serve/main.c train/main.c,$(SERVE_SRC) $(TRAIN_SRC)))
LLHTTP_OBJ := $(patsubst $(LLHTTP_DIR)/%.c,$(BUILD)/obj/llhttp/%.o,$(wildcard $(LLHTTP_DIR)/*.c))
CU_OBJ     := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CU_SRC))
DEV_OBJ    := $(CORE_OBJ) $(call obj,$(wildcard kernels/backend.c)) $(CU_OBJ)
DEV_LIBS   := $(LDLIBS) $(CUDA_LIBS)

SERVE_BIN  := $(if $(SERVE_SRC),$(BUILD)/serve)
TRAIN_BIN  := $(if $(TRAIN_SRC),$(BUILD)/train)
TEST_BIN   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TOOL_BIN   := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRC))
BENCH_BIN  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
GPUBENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(GPUBENCH_SRC))
CUTEST_BIN := $(if $(filter 1,$(CUDA)),$(patsubst tests/cuda/%.c,$(BUILD)/tests/cuda/%,$(CUTEST_SRC)))

.SECONDARY:
.PHONY: all test test-build test-cuda deps demo clean bench-gpu bench-sampler fuzz fuzz-build
all: $(SERVE_BIN) $(TRAIN_BIN) $(TEST_BIN) $(TOOL_BIN) $(BENCH_BIN) $(BUILD)/maskbench $(GPUBENCH_BIN) $(CUTEST_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# llhttp ships as generated C; it is not ours, so it gets no -Werror.
$(BUILD)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(filter-out -Werror -Wall -Wextra,$(CFLAGS)) -w -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(BUILD)/serve: $(call obj,$(SERVE_SRC)) $(DEV_OBJ) $(LLHTTP_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(DEV_LIBS)

$(BUILD)/train: $(call obj,$(TRAIN_SRC)) $(DEV_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(DEV_LIBS)

# Tools and benches link the CPU code only (CORE_OBJ, no bk_open); tests
# and CUDA tests link the device objects too (DEV_OBJ).
# Tests also get serve's and train's modules (not their main.c), and so
# the CUDA objects those reference when CUDA is on.
$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(DEV_OBJ) $(PROG_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(DEV_LIBS)

$(BUILD)/tools/%: $(BUILD)/obj/tests/tools/%.o $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The MaskBench runner: build/maskbench --tokenizer DIR PATH... (bench/maskbench.c).
$(BUILD)/maskbench: $(BUILD)/obj/bench/maskbench.o $(CORE_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# bench/train measures the LoRA backward pass, which lives with train.
$(BUILD)/bench/train: $(call obj,train/lora_train.c)

# The previous host sampler (tests/sampler_ref.c): the reference that
# test_sampler and bench/sampler measure the backend op against; not in serve.
$(BUILD)/tests/test_sampler $(BUILD)/bench/sampler: $(BUILD)/obj/tests/sampler_ref.o

# The sampler figures of issue 13: old and new sampler on a 151,669-token
# vocabulary; the last line is {"vocab", "greedy_us", "top_p_us"}.
bench-sampler: $(BUILD)/bench/sampler
	$(BUILD)/bench/sampler

# GPU benches (bench/gpu_*.c) call the CUDA runtime too and link like the
# CUDA tests, with serve's and train's modules (train/optim.c).
$(BUILD)/obj/bench/gpu_%.o: CPPFLAGS += -Itrain -I$(CUDA_HOME)/include
$(BUILD)/bench/gpu_%: $(BUILD)/obj/bench/gpu_%.o $(DEV_OBJ) $(PROG_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(DEV_LIBS)

$(BUILD)/tests/cuda/%: $(BUILD)/obj/tests/cuda/%.o $(DEV_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(DEV_LIBS)

# test_cuda_train runs train's LoRA backward pass on both backends.
$(BUILD)/tests/cuda/test_cuda_train: $(call obj,train/lora_train.c)

# The CPU tests: sanitized build in build/san, then tests/run.sh runs every
# test program and every tests/test_*.sh against it.
test:
	$(MAKE) --no-print-directory -j$(NPROC) SAN=1 BUILD=build/san test-build
	tests/run.sh build/san

# bench/gguf too: tests/test_gguf.sh runs the converter; maskbench: tests/test_maskbench.sh.
test-build: $(TEST_BIN) $(TOOL_BIN) $(SERVE_BIN) $(TRAIN_BIN) $(BUILD)/bench/gguf $(BUILD)/maskbench

# Coverage-guided fuzzing (libFuzzer, clang): one program per
# tests/fuzz/fuzz_NAME.c, built with clang into build/fuzz, each run for
# FUZZ_SECONDS on a scratch copy of tests/fuzz/corpus/NAME after replaying
# tests/fuzz/regress/NAME (tests/fuzz/run.sh). A crash, leak or sanitizer
# report fails it.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_BIN     := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz:
	$(MAKE) --no-print-directory -j$(NPROC) FUZZ=1 CC=$(FUZZ_CC) BUILD=build/fuzz fuzz-build
	tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS)

fuzz-build: $(FUZZ_BIN)

$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(DEV_OBJ) $(PROG_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) $^ -o $@ $(DEV_LIBS)

test-cuda:
	$(MAKE) --no-print-directory CUDA=1 all
	@set -e; for t in $(BUILD)/tests/cuda/test_*; do [ -x "$$t" ] || continue; echo "== $$t"; $$t; done
	@set -e; for t in tests/cuda/test_*.sh; do [ -x "$$t" ] || continue; echo "== $$t"; TESSERA_BUILD=$(BUILD) $$t; done

# The whole GPU suite (bench/gpu.sh: builds with CUDA=1, generates the
# models and adapters, runs every benchmark under one deadline; summary in
# $(BUILD)/gpubench, and $$OUT when set).
bench-gpu:
	BUILD=$(BUILD) bench/gpu.sh

deps:
	.ci/deps.sh

demo: all
	tests/demo.sh $(BUILD)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
