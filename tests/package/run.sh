#!/usr/bin/env bash
# tests/package/run.sh SOURCE_DIR [CXX]: install the strata tree at SOURCE_DIR into a temporary
# prefix, then configure, build and run tests/package (find_package(strata)) against it.
set -euo pipefail

src=$(cd "${1:?usage: run.sh SOURCE_DIR [CXX]}" && pwd)
cxx=${2:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

work=$(mktemp -d "${TMPDIR:-/tmp}/strata_package.XXXXXX")
trap 'rm -rf "$work"' EXIT
compiler=()
[[ -n "$cxx" ]] && compiler=(-DCMAKE_CXX_COMPILER="$cxx")

# 1. install the library (no tests/examples/bench) into $work/prefix
cmake -S "$src" -B "$work/lib-build" "${compiler[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_EXAMPLES=OFF -DSTRATA_BUILD_BENCH=OFF >/dev/null
cmake --install "$work/lib-build" --prefix "$work/prefix" >/dev/null

# 2. build the outside project against the installed prefix only. No build type (-O0, no -g): the
#    test is whether the package is found and every header compiles and links, not speed, and -O3 on
#    the whole umbrella header cost about 2 minutes of CI.
cmake -S "$here" -B "$work/app-build" "${compiler[@]}" -DCMAKE_BUILD_TYPE= \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/app-build" -j"$jobs"

# 3. run it
"$work/app-build/app"
