#!/bin/sh
# Build and run tests/package/consumer against occam as a CMake package.
#   run.sh MODE WORK SRC OCCAM_BUILD CMAKE CXX [EIGEN3_DIR]
# MODE: find_package (install OCCAM_BUILD's library into WORK/prefix, then find_package(occam)),
# add_subdirectory or fetchcontent (occam's source tree SRC inside the consumer's build).
# The consumer cannot find fmt, cxxopts, doctest or nlohmann_json, and an embedded occam must
# build no tool, test or example and leave the consumer's cache alone. Exits non-zero on any
# failure, including a wrong Hessian-vector product.
set -eu
mode=$1 work=$2 src=$3 occam_build=$4 cmake=$5 cxx=$6 eigen_dir=${7:-}

fail() { echo "package.$mode: FAILED: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
# A copy of the consumer, so that nothing in its build refers to occam's tree by accident.
cp -R "$src/tests/package/consumer" "$work/consumer"

set -- -S "$work/consumer" -B "$work/build" -DOCCAM_CONSUMER_MODE="$mode" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_fmt=ON -DCMAKE_DISABLE_FIND_PACKAGE_cxxopts=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_doctest=ON -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON
[ -n "$eigen_dir" ] && set -- "$@" -DEigen3_DIR="$eigen_dir"

case $mode in
find_package)
    prefix=$work/prefix
    "$cmake" --install "$occam_build" --prefix "$prefix" --component occam_development >"$work/install.log" ||
        { cat "$work/install.log"; fail "cmake --install $occam_build"; }
    # Every library header is installed with the source layout.
    for dir in kernels autodiff learners metaloss; do
        [ -d "$src/$dir" ] || continue
        (cd "$src" && find "$dir" -name '*.hpp') | while read -r h; do
            [ -f "$prefix/include/$h" ] || fail "$h was not installed under $prefix/include"
        done
    done
    [ -f "$prefix/share/cmake/occam/occamConfig.cmake" ] || fail "no occamConfig.cmake in $prefix"
    [ -f "$prefix/share/cmake/occam/occamConfigVersion.cmake" ] || fail "no occamConfigVersion.cmake in $prefix"
    set -- "$@" -DCMAKE_PREFIX_PATH="$prefix"
    ;;
add_subdirectory | fetchcontent)
    set -- "$@" -DOCCAM_SOURCE_DIR="$src"
    ;;
*) fail "unknown mode (find_package, add_subdirectory or fetchcontent)" ;;
esac

"$cmake" "$@" >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configure"; }
"$cmake" --build "$work/build" -j 2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build"; }

# The only program built is the consumer's: no occam tool, test runner or example.
others=$(find "$work/build" -path '*/CMakeFiles' -prune -o -type f -perm -u+x ! -name hvp -print)
[ -z "$others" ] || fail "the consumer's build made other programs: $others"
! find "$work/build" -name examples -o -name occam -type f -o -name occam_tests | grep -q . ||
    fail "occam's examples, tool or tests appeared in the consumer's build"

cache=$work/build/CMakeCache.txt
if [ "$mode" = find_package ]; then
    # The package came from the prefix, and the headers from its include/, not from occam's tree.
    grep -qx "occam_DIR:PATH=$prefix/share/cmake/occam" "$cache" ||
        fail "occam_DIR is not $prefix/share/cmake/occam: $(grep '^occam_DIR' "$cache")"
    if grep -F -e "-I$src " -e "-isystem $src " "$work/build/compile_commands.json" >/dev/null; then
        fail "the consumer compiled with occam's source tree on its include path"
    fi
else
    # Embedded: no build type forced, no CPU option, the tool, tests and examples off.
    grep -qx "CMAKE_BUILD_TYPE:STRING=" "$cache" || fail "occam changed CMAKE_BUILD_TYPE: $(grep '^CMAKE_BUILD_TYPE:' "$cache")"
    ! grep -q '^OCCAM_ARCH:' "$cache" || fail "occam put OCCAM_ARCH in the consumer's cache"
    for opt in OCCAM_BUILD_TOOLS OCCAM_BUILD_TESTS OCCAM_BUILD_EXAMPLES; do
        grep -qx "$opt:BOOL=OFF" "$cache" || fail "$opt is not OFF when occam is embedded"
    done
    ! grep -q -e '-Wall' -e '-Wshadow' -e '-march' "$work/build/compile_commands.json" ||
        fail "occam's warning or -march flags reached the consumer's compile line"
fi

"$work/build/hvp" || fail "the Hessian-vector product is wrong"
echo "package.$mode: ok"
