# Thin wrapper: everything real lives in CMake. `make test` and `make demo` work on a fresh clone.
BUILD   ?= build
ASAN    ?= build-asan
JOBS    ?= $(shell nproc)
CMAKE   := cmake -G Ninja -DCMAKE_BUILD_TYPE=Release
PACKAGES := build-essential cmake ninja-build pkg-config libgtest-dev libgmock-dev \
            libbenchmark-dev libopenblas-dev liblapacke-dev nlohmann-json3-dev libcli11-dev \
            libfmt-dev libpcre2-dev clang libclang-rt-14-dev libomp-dev clang-format clang-tidy \
            nodejs chromium

.PHONY: deps build test test-release test-asan fuzz-smoke demo bench format clean

# Installs the Debian packages lowbit needs when any is missing (idempotent).
deps:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	  grep -q "install ok installed" || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "make deps: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "make deps: missing packages. Run:"; \
	  echo "  sudo apt-get install -y --no-install-recommends $$missing"; exit 1; \
	fi
	@# lowbit report's plotting library (Vega, Vega-Lite), pinned in report/package-lock.json and
	@# embedded in the binary at build time: installed here, never downloaded by the build.
	@[ -f report/node_modules/vega/build/vega.min.js ] && \
	  [ -f report/node_modules/vega-lite/build/vega-lite.min.js ] || \
	  { echo "make deps: npm ci in report/"; cd report && npm ci --ignore-scripts --no-audit --no-fund; }

build: deps
	@[ -f $(BUILD)/build.ninja ] || $(CMAKE) -S . -B $(BUILD)
	cmake --build $(BUILD) -j $(JOBS)

# The release suite, the same suite under AddressSanitizer + UndefinedBehaviorSanitizer, then a
# short run of every parser fuzzer (libFuzzer, clang).
test: build test-release test-asan fuzz-smoke

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Quality-band tests that only repeat, on more data, code the faster tests already run under the
# sanitizers (their release run is the one that asserts the bands).
# TrainCli.QuantizeMethodQatImprovesOnItsGptqStart: GPTQ then QAT then two KLD runs (100 s under
# ASan); QatCheckpointsResumeBitIdentical and QatOnItsOwnTextWithEightBitActivations run the same
# QAT path under the sanitizers.
ASAN_SKIP ?= Methods.GptqAndAwqBeatImatrixWhichBeatsRtn|Stories.GoldenPerplexities|TrainCli.QuantizeMethodQatImprovesOnItsGptqStart
test-asan: deps
	@[ -f $(ASAN)/build.ninja ] || $(CMAKE) -DLOWBIT_SANITIZE=ON -DLOWBIT_BUILD_BENCH=OFF -S . -B $(ASAN)
	cmake --build $(ASAN) -j $(JOBS)
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS) -E "$(ASAN_SKIP)"

FUZZ_SECONDS ?= 5
fuzz-smoke: deps
	bash fuzz/run.sh $(FUZZ_SECONDS)

demo: build
	./$(BUILD)/lowbit formats
	@echo
	./$(BUILD)/lowbit demo

bench: build
	./$(BUILD)/bench/lowbit_bench --benchmark_min_time=0.2

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN) build-fuzz
