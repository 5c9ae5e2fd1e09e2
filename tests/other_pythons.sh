#!/usr/bin/env bash
# The core and instrumentation tests on every other supported Python (pyproject says
# >= 3.10; the whole suite runs on the machine's python3, 3.11). Each interpreter gets
# its own venv (.venv-3.X) with the test dependencies. An interpreter that is not
# installed fails the run: CI must not pass by testing less than it says.
#
#   bash tests/other_pythons.sh [3.10 3.12 3.13]
#
# Interpreters are looked up under /root/.pyenv/versions, then as python3.X on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

CORE_TESTS=(
    tests/test_measured.py
    tests/test_calls.py
    tests/test_call_semantics.py
    tests/test_wrappers.py
    tests/test_frames.py
    tests/test_packed.py
    tests/test_instrument.py
    tests/test_logging.py
    tests/test_process_state.py
    tests/test_fork.py
    tests/test_measurement.py
    tests/test_result.py
    tests/test_config.py
)

find_python() {
    local version=$1 found
    found=$(ls -d /root/.pyenv/versions/"$version".*/bin/python"$version" 2>/dev/null | sort -V | tail -1 || true)
    if [[ -z $found ]]; then
        found=$(command -v "python$version" || true)
    fi
    [[ -n $found ]] || { echo "other_pythons: no Python $version found" >&2; return 1; }
    echo "$found"
}

versions=("$@")
[[ ${#versions[@]} -gt 0 ]] || versions=(3.10 3.12 3.13)
for version in "${versions[@]}"; do
    python=$(find_python "$version")
    venv=.venv-$version
    echo "== Python $version ($python): ${#CORE_TESTS[@]} test files"
    [[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
    "$venv/bin/pip" install -q -e '.[test]'
    "$venv/bin/python" -m pytest -q -n 2 -p no:cacheprovider "${CORE_TESTS[@]}"
done
