# dtf: a distributed neural-network trainer in C with embedded Lua 5.4.
#   make          build build/dtf
#   make run      install what is missing, build, train the MNIST example on
#                 this machine (2 ps + 2 workers on loopback)
#   make test     install what is missing, build, run every test
#   make asan     build with AddressSanitizer + UBSan and run the tests
#   make test-cores the unit and Lua tests once per OpenBLAS core this CPU runs
#   make bench    benchmarks against PyTorch, raw sgemm and iperf3
#   make fuzz     run each libFuzzer target for FUZZ_SECONDS
#   make image    build the container image (buildah, no Docker engine needed)
#   make deploy   helm upgrade --install the chart with the scripts of this tree
#   make test-k8s the chart against a real kube-apiserver (install, upgrade)
#   make e2e      a real single-node Kubernetes on this machine: install, train, upgrade,
#                 kill a ps, scale a running training
#   make kat-fixture  regenerate tests/kat/fixture.safetensors with PyTorch (python3-torch)

# ---- settings ---------------------------------------------------------------
BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
SAN      ?=
PKGS     := lua5.4 libevent openblas zlib libedit

WARN     := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
            -Wmissing-prototypes -Wvla -Wformat=2 -Wno-unused-parameter \
            -Werror=implicit-function-declaration -Werror=int-conversion
CFLAGS   := -std=c11 $(OPT) -g $(WARN) -D_GNU_SOURCE -fno-strict-aliasing \
            -MMD -MP $(SAN) $(EXTRA_CFLAGS)
# pkg-config runs lazily so that `make deps` can install the .pc files first.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))
LDLIBS     = $(PKG_LIBS) -levent_pthreads -lm -lpthread
LDFLAGS  := $(SAN)

# The C core never includes lua.h (STYLE.md): it is linked into unit tests alone.
CORE     := util cpu blas tensor tensor_conv tensor_simd tensor_naive optim schedule data bf16 wire net_io \
            net_server net_client ps ps_ckpt ckpt tfevents metrics metrics_http pswatch
# Bindings and the host: the Lua faces of the core and the dtf command.
BIND     := cli lopt ltensor ltensor_print ldata lps lckpt lutil log host repl local progress lwatch
CORE_OBJ := $(CORE:%=$(BUILD)/src/%.o)
BIND_OBJ := $(BIND:%=$(BUILD)/src/%.o)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

DTF      := $(BUILD)/dtf

.PHONY: FORCE all deps deps-test deps-bench run test test-unit test-lua \
        test-integration test-chart test-cores asan valgrind bench fuzz image deploy test-k8s e2e \
        chart-schema clean kat-fixture kat-fixture-check

all: $(DTF)

# ---- dependencies -----------------------------------------------------------
deps:
	@scripts/install-deps build
deps-test:
	@scripts/install-deps test
deps-bench:
	@scripts/install-deps bench

# ---- build ------------------------------------------------------------------
$(DTF): $(CORE_OBJ) $(BIND_OBJ) $(BUILD)/src/main.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Every object depends on the flags it was built with: one compiled before
# `make deps` (no pkg-config flags, another package's cblas.h) is rebuilt
# once they change, not linked with a pointer truncated through an
# implicitly declared function.
FLAGS_STAMP := $(BUILD)/.flags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(PKG_CFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(PKG_CFLAGS)' >$@
FORCE:

$(BUILD)/src/%.o: src/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(CORE_OBJ) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Isrc -Itests/unit -o $@ $< $(CORE_OBJ) $(LDFLAGS) $(LDLIBS)

-include $(wildcard $(BUILD)/src/*.d $(BUILD)/tests/*.d)

# ---- run --------------------------------------------------------------------
run: deps
	@$(MAKE) --no-print-directory all
	$(DTF) local train.lua --ps=2 --workers=2 --set logevery=50 $(RUN_ARGS)

# ---- tests ------------------------------------------------------------------
# tests/run runs each suite, prints its results and a closing total.
test: deps-test
	@$(MAKE) --no-print-directory all $(UNIT_BIN)
	@tests/run $(BUILD) $(TEST_SUITES)

test-unit test-lua test-integration test-chart: deps-test
	@$(MAKE) --no-print-directory all $(UNIT_BIN)
	@tests/run $(BUILD) $(@:test-%=%)

# Every kernel set OpenBLAS may pick on this CPU (OPENBLAS_CORETYPE forced).
test-cores: deps-test
	@$(MAKE) --no-print-directory all $(UNIT_BIN)
	@tests/run-cores $(BUILD)

asan: deps-test
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  test TEST_SUITES="unit lua integration"

valgrind: deps-test all
	@tests/valgrind-run $(BUILD)

bench: deps-bench all
	@bench/run $(BUILD)

fuzz: deps-test
	@tests/fuzz/run $(BUILD)/fuzz $${FUZZ_SECONDS:-60}

# The known-answer fixture of tests/lua/test_kat.lua: PyTorch's float64 loss,
# gradients and Adam steps for models/mnist.lua. `make test` never needs torch;
# kat-fixture rewrites the committed file, kat-fixture-check proves that the
# script still gives the committed bytes (1 and a cmp line when it does not).
KAT_FIXTURE := tests/kat/fixture.safetensors
PYTHON      ?= /usr/bin/python3

kat-fixture: deps-bench
	$(PYTHON) tests/kat/make_fixture.py $(KAT_FIXTURE)

kat-fixture-check: deps-bench
	@mkdir -p $(BUILD)
	$(PYTHON) tests/kat/make_fixture.py $(BUILD)/kat-fixture.safetensors
	cmp $(KAT_FIXTURE) $(BUILD)/kat-fixture.safetensors && echo "kat-fixture-check: $(KAT_FIXTURE) is what make_fixture.py writes"

# ---- Kubernetes ---------------------------------------------------------------
IMAGE   ?= localhost/dtf:latest
RELEASE ?= mnist
HELM    ?= .tools/bin/helm

image:
	container/build-image $(IMAGE)

deploy:
	@scripts/install-helm --no-node
	$(HELM) upgrade --install $(RELEASE) chart/ --values values.yml \
	  --set-file scripts.model=models/mnist.lua --set-file scripts.train=train.lua $(HELM_ARGS)

# The chart against a real kube-apiserver built from Debian's kubernetes source
# (uses the binaries make e2e builds and caches).
test-k8s: deps-test
	@tests/chart/k8s

e2e: deps-test
	@$(MAKE) --no-print-directory all
	@tests/e2e/run

# chart/values.schema.json's hyperparameters, from train.lua's and models/mnist.lua's
# (tests/chart checks that the committed file is what this writes).
chart-schema: all
	node scripts/chart-schema.mjs $(DTF)

clean:
	rm -rf build
