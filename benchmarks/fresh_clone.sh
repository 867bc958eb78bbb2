#!/usr/bin/env bash
# The README's two commands as a newcomer runs them, timed: a fresh clone of this repository's
# committed HEAD, a fresh virtual environment, `pip install -e ".[dev]"`, the main command, the
# tests. Writes times.json, the test summary and the logs to $OUT (default
# docs/full/fresh_clone_cpu), and the main command's run folder, without its models, to $RUN_OUT
# (default docs/full/rts_mnist_without_with_cpu_quick): reproduce/report.py reads both.
#
#   KERAS_ACE_DATA=../shared/data bash benchmarks/fresh_clone.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$repo/docs/full/fresh_clone_cpu}
run_out=${RUN_OUT:-$repo/docs/full/rts_mnist_without_with_cpu_quick}
: "${KERAS_ACE_DATA:?set KERAS_ACE_DATA to a folder with mnist.npz (the clone must not download)}"
export KERAS_ACE_DATA=$(cd "$KERAS_ACE_DATA" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
cd "$work/clone"
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
export KERAS_ACE_CACHE=$work/cache  # an empty cache: the distorted data sets are built as on a new machine
mkdir -p "$out"
timed() {  # timed NAME COMMAND...: runs it, logs it, records its seconds (a failure is recorded, not fatal)
    local name=$1 start
    shift
    start=$(date +%s.%N)
    "$@" > "$out/$name.log" 2>&1 || echo "$name: exit status $?"
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$start" "$(date +%s.%N)" > "$work/$name.s"
    echo "$name: $(cat "$work/$name.s") s"
}
# ONLY=tests: the install and the tests alone (the main command's run folder is kept as it is).
timed install python -m pip install --quiet -e ".[dev]"
if [ "${ONLY:-}" != tests ]; then
    timed main_command python reproduce/fig2.py --quick
fi
timed tests python -m pytest -q -rs
if [ "${ONLY:-}" != tests ]; then
    rm -rf "$run_out"
    cp -r results/fig2 "$run_out"
    rm -rf "$run_out"/*.keras "$run_out"/backup_*
fi
python3 - "$out" "$work" <<'PY'
import json, os, platform, re, sys
out, work = sys.argv[1:]
path = os.path.join(out, "times.json")
earlier = json.load(open(path))["seconds"] if os.path.exists(path) else {}
seconds = {**earlier, **{n: int(open(os.path.join(work, f"{n}.s")).read())
                         for n in ("install", "main_command", "tests") if os.path.exists(os.path.join(work, f"{n}.s"))}}
summary = [l for l in open(os.path.join(out, "tests.log")) if re.search(r"\d+ passed", l)][-1].strip("= \n")
json.dump({"seconds": seconds, "tests_summary": summary, "cpus": os.cpu_count(), "python": platform.python_version(),
           "commands": {"install": 'pip install -e ".[dev]"', "main_command": "python reproduce/fig2.py --quick",
                        "tests": "python -m pytest -q -rs"}},
          open(os.path.join(out, "times.json"), "w"), indent=2)
PY
echo "wrote $out"
