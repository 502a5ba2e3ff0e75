#!/usr/bin/env bash
# Gradescope's setup script (the package puts it at the zip's root; Gradescope runs it once, as
# root, from /autograder/source, while it builds the autograder image on Ubuntu 22.04).
# Installs the packages of .ci/install-deps (the one list CI uses too) and builds the grader's
# copy once, so the image holds a finished build and each submission rebuilds only the files
# the student changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
case "$here" in
  */homework/tools) cd "$here/../.." ;;  # run from inside the repository
  *) cd "$here" ;;                       # the zip's root, /autograder/source
esac
apt-get update
.ci/install-deps
cmake -S . -B build -G Ninja -DPython3_EXECUTABLE=/usr/bin/python3
cmake --build build
