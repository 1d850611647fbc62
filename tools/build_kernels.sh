#!/usr/bin/env bash
# Rebuild the C++ kernels in place (for an editable checkout) under a lock, so that two
# developers or helpers rebuilding at once do not trample the same CMake build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/nimbus-build.lock python setup.py -q build_ext --inplace
