# The front door. `make demo` and `make test` install what is missing (Debian packages),
# configure, build, and then run the default experiment or the test suite.
BUILD    ?= build
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
PACKAGES := cmake g++ make libeigen3-dev libfmt-dev libcxxopts-dev doctest-dev nlohmann-json3-dev gnuplot-nox python3

.PHONY: all deps configure build demo test reproduce clean

all: build

deps:
	@sh scripts/install-deps.sh $(PACKAGES)

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The default experiment: the paper's Fig. 2C (kernel regression finds a degree-1 harmonic).
demo: build
	$(BUILD)/occam run --preset fig2c-kernel --out runs/demo --force

# Every preset for seeds 1, 2, 3; writes runs/reproduce/RESULTS.md (the README's table).
reproduce: build
	$(BUILD)/occam reproduce --seeds 1,2,3 --out runs/reproduce --force

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD)
