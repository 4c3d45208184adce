#!/usr/bin/env bash
# Scale benchmark of issue 5: renorm against `cp`, a plain onnx + numpy script and onnxruntime.
#
# Usage, from the repository root:   bash benches/scale.sh
#
# Builds `renorm` (cargo build --release), the Python venv target/bench-venv (benches/requirements.txt) if
# missing, and the synthetic models with benches/make_models.py into target/bench-scale/ (rebuilt only when
# their stamp differs; never committed). Every comparison runs under /usr/bin/time -v (peak RSS; wall time
# from bash's microsecond clock around it, as time's own is in hundredths and cp takes about 0.12 s here):
# one untimed warm-up of each side (so both read from the page cache), then R runs alternately A B A B ...;
# the table gives the MEDIAN wall time, the MAX peak RSS and PASS/FAIL, and goes to
# target/bench-scale/results.md as Markdown (the README quotes it). Exit 1 if any target is missed (after
# printing everything).
#
#   1. gemm24.onnx (24 Gemm 2048x2048, ~403 MB): cp  vs  prune --scope global --renorm l2 --sparsity 0.5
#      target: wall <= 1.5x cp, peak RSS <= 1.3x the model's size
#   2. the same with --scope layer and with --pattern 2:4: wall <= 1.5x cp (no slower than global)
#   3. big/big.onnx (36 MatMul 4096x4096, ~2.4 GB external data): cp of both files  vs  prune global l2
#      target ("memory bounded by the largest tensor"): peak RSS <= 8x largest tensor + 200 MB
#   4. benches/numpy_prune.py (onnx + numpy, global 50 %, l2) vs cp: informative, no target
#   5. renorm validate  vs  benches/ort_validate.py (onnxruntime), gemm24 and its pruned copy, S samples:
#      target: samples/s(renorm) >= samples/s(onnxruntime), end to end, model loading included
#
# Environment:
#   RENORM_BIN=PATH           use this renorm binary, no cargo build
#   SCALE_BENCH_REPEAT=R      timed runs of each side (default 5)
#   SCALE_BENCH_BIG_REPEAT=R  the same for the big model (default 3)
#   SCALE_BENCH_REF_REPEAT=R  the same for the numpy reference (default 2)
#   SCALE_BENCH_NO_BIG=1      neither build nor run the big model
#   SCALE_BENCH_BATCH=B       validation batch (default 64)
#   SCALE_BENCH_TIMEOUT=S     kill a run after S seconds (default 3600; the comparison then FAILs)
#   SCALE_BENCH_SMALL=1       tiny models (256-wide gemm24, big 8 x 512x512, 256 samples, R=2) in
#                             target/bench-scale/small/: under a minute, for development and smoke checks
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${SCALE_BENCH_SMALL:-0} == 1 ]]; then
    DIR=target/bench-scale/small W=256 BIG_W=512 BIG_L=8 S=256 R_DEFAULT=2
else
    DIR=target/bench-scale W=2048 BIG_W=4096 BIG_L=36 S=2048 R_DEFAULT=5
fi
R=${SCALE_BENCH_REPEAT:-$R_DEFAULT}
BIG_R=${SCALE_BENCH_BIG_REPEAT:-$((R < 3 ? R : 3))}
REF_R=${SCALE_BENCH_REF_REPEAT:-2}
NO_BIG=${SCALE_BENCH_NO_BIG:-0}
BATCH=${SCALE_BENCH_BATCH:-64}
TIMEOUT=${SCALE_BENCH_TIMEOUT:-3600}
OUT=$DIR/out LOGS=$DIR/logs VENV=target/bench-venv
PY=$VENV/bin/python G=$DIR/gemm24.onnx BIG=$DIR/big/big.onnx

# --- renorm, venv, models ---------------------------------------------------------------------------------
if [[ -n ${RENORM_BIN:-} ]]; then
    RENORM=$RENORM_BIN
else
    cargo build --release --bin renorm
    RENORM=target/release/renorm
fi
if ! { [[ -x $PY ]] && "$PY" -c 'import numpy, onnx, onnxruntime' 2>/dev/null; }; then
    python3 -m venv "$VENV"
    "$PY" -m pip install -q -r benches/requirements.txt
fi
echo "models in $DIR:"
gen=(--width "$W" --layers 24 --samples "$S" --big-width "$BIG_W" --big-layers "$BIG_L")
[[ $NO_BIG != 1 ]] || gen+=(--no-big)
"$PY" benches/make_models.py "$DIR" "${gen[@]}"
rm -rf "$OUT" "$LOGS" "$DIR/val"
mkdir -p "$OUT" "$LOGS" "$DIR/val"

# --- machine ----------------------------------------------------------------------------------------------
MACHINE=$(
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (src modified)')"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ {printf "%.0f GB RAM", $2/1e6}' /proc/meminfo), Linux $(uname -r)"
    echo "renorm: $("$RENORM" --version) ($RENORM); $("$PY" -c 'import sys, numpy, onnx, onnxruntime as o; print(f"python {sys.version.split()[0]}, numpy {numpy.__version__}, onnx {onnx.__version__}, onnxruntime {o.__version__}")')"
    echo "models: gemm24 24 x Gemm ${W}x${W} ($(stat -c %s "$G") bytes); $([[ $NO_BIG == 1 ]] && echo "big skipped" || echo "big ${BIG_L} x MatMul ${BIG_W}x${BIG_W} ($(($(stat -c %s "$BIG") + $(stat -c %s "$BIG.data"))) bytes, external data)"); $S samples, batch $BATCH; R=$R (big $BIG_R, numpy $REF_R)"
    [[ $DIR != */small ]] || echo "SMALL mode: a smoke check; cp takes about as long as starting a process, so ratios say little"
)
echo "$MACHINE"

# --- measuring --------------------------------------------------------------------------------------------
# run NAME CMD...: one run under /usr/bin/time -v, output to $LOGS/NAME.log; sets WALL (s, bash's clock around
# the whole run), RSS (bytes, time's), RC.
run() {
    local name=$1
    shift
    local start=$EPOCHREALTIME
    RC=0
    /usr/bin/time -v -o "$LOGS/$name.time" timeout "$TIMEOUT" "$@" >"$LOGS/$name.log" 2>&1 || RC=$?
    WALL=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.4f", b - a}')
    RSS=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 * 1024}' "$LOGS/$name.time")
    if ((RC != 0)); then
        echo "    $name FAILED (exit $RC): $*" >&2
        tail -n 5 "$LOGS/$name.log" | sed 's/^/      /' >&2
    fi
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# compare KEY REPS: the commands in arrays A (baseline) and B, one warm-up each then REPS runs alternately,
# $OUT emptied before every run. Sets A_WALL B_WALL (medians), A_RSS B_RSS (max), BAD (a run failed).
compare() {
    local key=$1 reps=$2 i wa=() wb=()
    A_RSS=0 B_RSS=0 BAD=0
    echo "$key:"
    for ((i = 0; i <= reps; i++)); do # run 0: untimed warm-up
        rm -rf "$OUT" && mkdir -p "$OUT" && sync
        run "$key-A$i" "${A[@]}"
        ((RC == 0)) || BAD=1
        ((i == 0)) || { wa+=("$WALL") && A_RSS=$((RSS > A_RSS ? RSS : A_RSS)); }
        printf '  %-7s A %7.3f s %6.0f MB' "${i/#0/warm-up}" "$WALL" "$((RSS / 1000000))"
        rm -rf "$OUT" && mkdir -p "$OUT" && sync
        run "$key-B$i" "${B[@]}"
        ((RC == 0)) || BAD=1
        ((i == 0)) || { wb+=("$WALL") && B_RSS=$((RSS > B_RSS ? RSS : B_RSS)); }
        printf '   B %7.3f s %6.0f MB\n' "$WALL" "$((RSS / 1000000))"
    done
    rm -rf "$OUT" && mkdir -p "$OUT"
    A_WALL=$(median "${wa[@]}") B_WALL=$(median "${wb[@]}")
}

# row WHAT BASELINE WALL_TARGET RSS_REF RSS_REF_NAME RSS_LIMIT RSS_LIMIT_TEXT [RSS_REF2 RSS_REF2_NAME]:
# one table row from the last compare; "-" for no target. Result: PASS, FAIL, or info (no target at all).
ROWS=() FAILS=0
row() {
    local line
    line=$(awk -v what="$1" -v base="$2" -v wt="$3" -v ref="$4" -v refn="$5" -v lim="$6" -v limt="$7" \
        -v ref2="${8:-}" -v ref2n="${9:-}" -v wa="$A_WALL" -v wb="$B_WALL" -v ra="$A_RSS" -v rb="$B_RSS" \
        -v bad="$BAD" 'BEGIN {
        ratio = wb / (wa > 0.001 ? wa : 0.001)
        rr = sprintf("%.2fx %s", rb / ref, refn)
        if (ref2 != "") rr = rr sprintf(", %.1fx %s", rb / ref2, ref2n)
        ok = (wt == "-" || ratio <= wt + 0) && (lim == "-" || rb <= lim + 0)
        res = bad ? "FAIL (a run failed)" : (wt == "-" && lim == "-") ? "info" : ok ? "PASS" : "FAIL"
        printf "%s|%s|%.3f|%.3f|%.2f|%s|%.0f|%.0f|%s|%s|%s\n", what, base, wa, wb, ratio,
            wt == "-" ? "-" : "<= " wt, ra / 1e6, rb / 1e6, rr, limt, res }')
    ROWS+=("$line")
    [[ $line != *FAIL* ]] || FAILS=$((FAILS + 1))
}

# --- 1, 2: prune gemm24 vs cp -----------------------------------------------------------------------------
GSIZE=$(stat -c %s "$G")
GLIM=$(awk -v s="$GSIZE" 'BEGIN {printf "%.0f", 1.3 * s}')
A=(cp "$G" "$OUT/copy.onnx")
PRUNE=("$RENORM" prune "$G" -o "$OUT/p.onnx" --renorm l2 --force)
B=("${PRUNE[@]}" --scope global --sparsity 0.5)
compare prune-global "$R"
row "prune gemm24 --scope global" cp 1.5 "$GSIZE" model "$GLIM" "<= 1.3x model"
CP_NOTE=$(awk -v s="$GSIZE" -v t="$A_WALL" 'BEGIN {printf "cp of gemm24: %.3f s, %.1f GB/s (the issue: ~0.5 s for its 400 MB model)", t, s / 1e9 / (t > 0.001 ? t : 0.001)}')
B=("${PRUNE[@]}" --scope layer --sparsity 0.5)
compare prune-layer "$R"
row "prune gemm24 --scope layer" cp 1.5 "$GSIZE" model - -
B=("${PRUNE[@]}" --pattern 2:4)
compare prune-2:4 "$R"
row "prune gemm24 --pattern 2:4" cp 1.5 "$GSIZE" model - -

# --- 3: big model with external data ----------------------------------------------------------------------
if [[ $NO_BIG != 1 ]]; then
    BSIZE=$(($(stat -c %s "$BIG") + $(stat -c %s "$BIG.data")))
    LARGEST=$((BIG_W * BIG_W * 4))
    BLIM=$((8 * LARGEST + 200000000))
    A=(cp "$BIG" "$BIG.data" "$OUT/")
    B=("$RENORM" prune "$BIG" -o "$OUT/bigp.onnx" --scope global --renorm l2 --force)
    compare prune-big "$BIG_R"
    row "prune big ($((BSIZE / 1000000)) MB, external)" cp - "$BSIZE" model "$BLIM" \
        "<= $((BLIM / 1000000)) (8x largest + 200 MB)" "$LARGEST" "largest tensor"
fi

# --- 4: numpy reference -----------------------------------------------------------------------------------
A=(cp "$G" "$OUT/copy.onnx")
B=("$PY" benches/numpy_prune.py "$G" "$OUT/np.onnx")
compare numpy "$REF_R"
row "numpy_prune.py gemm24 (reference)" cp - "$GSIZE" model - -

# --- 5: validation vs onnxruntime -------------------------------------------------------------------------
run val-prune "$RENORM" prune "$G" -o "$DIR/val/p.onnx" --scope global --renorm l2 --force
A=("$PY" benches/ort_validate.py "$G" "$DIR/val/p.onnx" "$DIR/x.npy" --batch "$BATCH")
B=("$RENORM" validate "$G" "$DIR/val/p.onnx" --data "$DIR/x.npy" --batch "$BATCH" --json)
compare validate "$R"
ORT_RSS=$A_RSS
row "validate gemm24, $S samples" onnxruntime 1.0 "$ORT_RSS" onnxruntime - -
VAL=$("$PY" - "$LOGS/validate-A$R.log" "$LOGS/validate-B$R.log" "$S" "$A_WALL" "$B_WALL" <<'EOF' || true
import json, sys
ort, ren = (json.load(open(p)) for p in sys.argv[1:3])
s, wa, wb = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
print(f"validation samples/s end to end: renorm {s / wb:.0f}, onnxruntime {s / wa:.0f} "
      f"(onnxruntime steady state {ort['run_samples_per_second']:.0f}, loading {ort['load_seconds']:.2f} s)")
for o, r in zip(ort["outputs"], ren["outputs"]):
    print(f"output {o['name']}: top-1 agreement {r['top1_agreement']:.4f} (onnxruntime {o['top1_agreement']:.4f}), "
          f"cosine {r['cosine']:.6f} ({o['cosine']:.6f}), max |err| {r['max_abs_error']:.4g} ({o['max_abs_error']:.4g})")
EOF
)

# --- table ------------------------------------------------------------------------------------------------
HEAD="comparison|baseline (A)|A wall s|B wall s|B/A|wall target|A peak RSS MB|B peak RSS MB|B RSS ratio|RSS target|result"
echo
echo "$MACHINE"
printf '%s\n' "$HEAD" "${ROWS[@]}" | column -t -s '|' -o '  '
echo "$CP_NOTE"
echo "$VAL"
{
    echo "Scale benchmark (\`bash benches/scale.sh\`), B = renorm (or numpy_prune.py); walls are medians, RSS maxima."
    echo
    sed 's/^/    /' <<<"$MACHINE"
    echo
    echo "| ${HEAD//|/ | } |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for r in "${ROWS[@]}"; do echo "| ${r//|/ | } |"; done
    echo
    echo "$CP_NOTE  "
    echo "$VAL" | sed 's/$/  /'
} >"$DIR/results.md"
echo "(table written to $DIR/results.md; logs in $LOGS)"
if ((FAILS > 0)); then
    echo "$FAILS comparison(s) missed their target"
    exit 1
fi
