#!/bin/sh
# occam against PyTorch eager on ONE core, same workloads, one process per workload (so the
# peak RSS is that workload's). Prints a markdown table (paste it into the README) and writes
# bench/results.json. Needs a built occam (make) and Debian's python3-torch.
#   sh bench/compare.sh [BUILD_DIR] [CORE]
# PyTorch's matrix products go through the system's libblas.so.3: Debian's reference BLAS
# unless an optimised one is installed. For a fair comparison install OpenBLAS, single-threaded
# (sudo apt-get install libopenblas0-serial): measured here, it took PyTorch's fig6 meta-step
# from 18.4 to 12.5 s. The table names the BLAS it ran with.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-"$here/../build"}
core=${2:-0}
occam="$build/occam"
[ -x "$occam" ] || { echo "compare.sh: $occam not found; run make first" >&2; exit 1; }
py=${PYTHON:-python3}  # Debian's python3 (its python3-torch)
"$py" -c "import torch" 2>/dev/null || { echo "compare.sh: PyTorch missing for $py: sudo apt-get install python3-torch (or set PYTHON)" >&2; exit 1; }
pin="taskset -c $core"
command -v taskset > /dev/null || pin=""
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
blas=$(readlink -f "$(/sbin/ldconfig -p 2>/dev/null | awk '/libblas\.so\.3 /{print $NF; exit}')" 2>/dev/null || true)
case "$blas" in
  */blas/libblas.so*) echo "compare.sh: PyTorch runs on the reference BLAS ($blas); install libopenblas0-serial for a fair comparison" >&2 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for w in kernel ridge unrolled connectome spiking mnist evolution-64 evolution-1024; do
  mine=50 theirs=20 flags=""
  [ "$w" = mnist ] && mine=5 theirs=2  # seconds per step (tens of seconds for PyTorch)
  case "$w" in evolution-*) flags="--population ${w#evolution-}" ;; esac
  [ "$w" = evolution-1024 ] && theirs=5
  $pin "$occam" bench --workload "${w%-*}" $flags --repeats $mine --json > "$tmp/occam-$w.json"
  $pin "$py" "$here/torch_ref.py" --workload "${w%-*}" $flags --repeats $theirs --json > "$tmp/torch-$w.json"
done
python3 - "$tmp" "$here/results.json" "$blas" <<'PY'
import json, platform, subprocess, sys, datetime
tmp, out, blas = sys.argv[1], sys.argv[2], sys.argv[3] or "unknown"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
rows = []
for w in ["kernel", "ridge", "unrolled", "connectome", "spiking", "mnist", "evolution-64", "evolution-1024"]:
    o = json.load(open(f"{tmp}/occam-{w}.json"))[0]
    t = json.load(open(f"{tmp}/torch-{w}.json"))[0]
    rows.append({"workload": w, "occam_ms": o["ms_per_step"], "torch_ms": t["ms_per_step"],
                 "speedup": t["ms_per_step"] / o["ms_per_step"], "occam_tape_mb": o["tape_mb"],
                 "occam_rss_mb": o["peak_rss_mb"], "torch_rss_mb": t["peak_rss_mb"]})
isa = json.load(open(f"{tmp}/occam-kernel.json"))[0].get("compiled_for", "?")
print(f"One core of {cpu}, {datetime.date.today()}, occam compiled for {isa}, PyTorch's BLAS {blas}, "
      "median ms per meta-step (evolution-N: per generation of N members; double precision):\n")
print("| workload | occam ms | PyTorch ms | speed-up | occam tape MB | occam peak RSS MB | PyTorch peak RSS MB |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['workload']} | {r['occam_ms']:.2f} | {r['torch_ms']:.1f} | {r['speedup']:.1f}x | "
          f"{r['occam_tape_mb']:.1f} | {r['occam_rss_mb']:.0f} | {r['torch_rss_mb']:.0f} |")
json.dump({"cpu": cpu, "date": str(datetime.date.today()), "occam_compiled_for": isa, "torch_blas": blas, "rows": rows},
          open(out, "w"), indent=2)
PY
