#!/usr/bin/env bash
# Light installs (`make light-installs`, run by .ci/run): netdsl as a user installs it without the heavy groups.
#   .venv-core     pip install netdsl             check, summarize, draw, completion; torch, numpy and onnxruntime not importable;
#                                                 train says in one line which group to install
#   .venv-runtime  pip install 'netdsl[runtime]'  infer on a model the main .venv exported; torch not importable
# netdsl's wheel is built once (as a user would get it from the registry); each venv is made afresh inside the
# repository (pip's cache makes repeats quick), and its size and install time (venv included) are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MAIN=${MAIN:-.venv/bin}  # the full install (`make` builds it): exports the model that the runtime venv runs
OUT=build/light-installs
rm -rf "$OUT" && mkdir -p "$OUT"
passed=0

ok() {  # NAME COMMAND...: run a check; stop at the first that fails
    local name=$1
    shift
    if ! "$@" >"$OUT/last.log" 2>&1; then
        echo "FAILED: $name" && cat "$OUT/last.log"
        echo "light-installs: $passed passed, 1 failed"
        exit 1
    fi
    passed=$((passed + 1))
    echo "ok: $name"
}

install() {  # VENV TARGET: a fresh venv with netdsl installed from TARGET; prints its size and install time
    local venv=$1 target=$2 start end
    start=$(date +%s%N)
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$target" 2>&1 | { grep -v "^WARNING: Location" || true; }
    end=$(date +%s%N)
    local ms=$(((end - start) / 1000000))
    printf '%s: pip install %s: %s in %d.%d s\n' "$venv" "${target#"$OUT/"}" "$(du -sh "$venv" | cut -f1)" $((ms / 1000)) $((ms % 1000 / 100))
}

not_importable() {  # VENV MODULE...: none of the modules can be imported in VENV (-I: not the checkout's files either)
    local venv=$1
    shift
    "$venv/bin/python" -I -c 'import importlib.util as u, sys; found = [m for m in sys.argv[1:] if u.find_spec(m)]; sys.exit(f"importable: {found}" if found else 0)' "$@"
}

says() {  # EXPECTED COMMAND...: the command exits 2 with EXPECTED as its only line on stderr
    local expected=$1 status=0 got
    shift
    got=$("$@" 2>&1 >/dev/null) || status=$?
    [ "$status" = 2 ] && [ "$got" = "$expected" ] || { echo "exit $status, stderr: $got"; return 1; }
}

has() {  # TEXT FILE: FILE contains TEXT
    grep -q -- "$1" "$2" || { echo "no '$1' in $2:" && head -c 600 "$2"; return 1; }
}

rm -rf build/lib build/bdist.*  # setuptools builds in the tree: no file deleted since the last build may ride along
"$MAIN/python" -m pip wheel -q --no-deps -w "$OUT" . >"$OUT/wheel.log" 2>&1 || { cat "$OUT/wheel.log" && exit 1; }
WHEEL=$(ls "$OUT"/netdsl-*.whl)

# ---- the core
install .venv-core "$WHEEL"
CORE=.venv-core/bin
ok "core: torch, numpy, onnx, onnxruntime not installed" not_importable .venv-core torch numpy onnx onnxruntime
ok "core: netdsl check specs/*.yaml" "$CORE/netdsl" check specs/*.yaml
ok "core: netdsl summarize specs/resnet18.yaml" bash -c "$CORE/netdsl summarize specs/resnet18.yaml > $OUT/summary.txt"
ok "core: summary counts ResNet-18's 11,689,512 parameters" has "11,689,512" "$OUT/summary.txt"
ok "core: netdsl draw specs/resnet18.yaml -o resnet18.svg" "$CORE/netdsl" draw specs/resnet18.yaml -o "$OUT/resnet18.svg"
ok "core: the drawing is an SVG" has "<svg" "$OUT/resnet18.svg"
ok "core: netdsl draw --format html" "$CORE/netdsl" draw specs/resnet18.yaml --format html -o "$OUT/resnet18.html"
ok "core: netdsl completion bash" bash -c "$CORE/netdsl completion bash > $OUT/netdsl.bash"
ok "core: the completion script completes netdsl's commands" has "summarize" "$OUT/netdsl.bash"
ok "core: the digits ship in the package" "$CORE/python" -I -c "from importlib.resources import files; assert len((files('netdsl') / 'data' / 'digits.csv.gz').read_bytes()) == 57523"
ok "core: train names the group to install" says "netdsl train: needs PyTorch, which is not installed: pip install 'netdsl[torch]'" "$CORE/netdsl" train specs/lenet5.yaml
ok "core: lsp names the group to install" says "netdsl lsp: needs pygls, which is not installed: pip install 'netdsl[lsp]'" "$CORE/netdsl" lsp

# ---- [runtime]
ok "main venv: netdsl export specs/lenet5.yaml" "$MAIN/netdsl" export specs/lenet5.yaml -o "$OUT/lenet5.onnx"
install .venv-runtime "$WHEEL[runtime]"
RUNTIME=.venv-runtime/bin
ok "runtime: torch, onnx not installed" not_importable .venv-runtime torch onnx
ok "runtime: netdsl infer lenet5.onnx examples/digit7.png" bash -c "$RUNTIME/netdsl infer $OUT/lenet5.onnx examples/digit7.png --provider cpu > $OUT/infer.txt"
ok "runtime: infer printed a provider and a class for the image" has "digit7.png" "$OUT/infer.txt"
ok "runtime: netdsl infer --json" bash -c "$RUNTIME/netdsl infer $OUT/lenet5.onnx examples/digit7.png --provider cpu --json > $OUT/infer.json"
ok "runtime: the JSON is one object for the image" "$RUNTIME/python" -I -c "import json, sys; rows = json.load(open(sys.argv[1])); assert len(rows) == 1 and rows[0]['input'].endswith('digit7.png'), rows" "$OUT/infer.json"
ok "runtime: netdsl bench lenet5.onnx (onnxruntime alone)" bash -c "$RUNTIME/netdsl bench $OUT/lenet5.onnx --provider cpu --batch 1 --time 0.2 > $OUT/bench.txt"
ok "runtime: bench timed onnxruntime and says why not PyTorch" has "PyTorch is not installed" "$OUT/bench.txt"
ok "runtime: export names its group" says "netdsl export: needs ONNX, which is not installed: pip install 'netdsl[onnx]'" "$RUNTIME/netdsl" export specs/lenet5.yaml -o "$OUT/x.onnx"

echo "light-installs: $passed passed, 0 failed"
