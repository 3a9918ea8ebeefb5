# The front door. `make demo` and `make test` install what is missing (Debian packages),
# configure, build, and then run the default experiment or the test suite.
BUILD    ?= build
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
PACKAGES := cmake g++ make libeigen3-dev libfmt-dev libcxxopts-dev doctest-dev nlohmann-json3-dev gnuplot-nox

.PHONY: all deps configure build demo test clean

all: build

deps:
	@sh scripts/install-deps.sh $(PACKAGES)

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Until the first experiment lands, the demo is the autodiff tour: a Hessian-vector product
# and a gradient through a linear solve.
demo: build
	@echo "occam demo: no experiment preset has landed yet; running the autodiff examples instead."
	$(BUILD)/examples/02_hessian_vector
	$(BUILD)/examples/03_implicit_solve

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD)
