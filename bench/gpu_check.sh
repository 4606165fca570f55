#!/usr/bin/env bash
# GPU check (issue 12), under 8 minutes: on a machine with a CUDA GPU, a CUDA search on Cora with
# fractional GPUs (--gpus-per-trial 0.25: Ray packs up to four trials on one GPU), then
#   - the trial placement (Ray node, GPU ids, assigned resources) of every trial,
#   - each trial's peak CUDA memory (metric peak_gpu_mb) and the most trial processes seen on
#     the GPU at once (nvidia-smi, sampled every second),
#   - the latency table: every architecture timed on the GPU (the device synchronised around
#     each request).
# Without a CUDA GPU it says so and exits 0.
#
#   bash bench/gpu_check.sh                # GKD_DATA (default ../shared/data) must hold Cora/raw
#   TRIALS=12 bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
  echo "gpu_check: no CUDA GPU visible to torch (torch.cuda.is_available() is False); nothing to check"
  exit 0
fi
DATA=${GKD_DATA:-../shared/data}
TRIALS=${TRIALS:-8}
WORK=$(mktemp -d)
SAMPLER_PID=""
cleanup() {
  if [[ -n "$SAMPLER_PID" ]]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "gpu_check: $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0), "x", torch.cuda.device_count(), "| torch", torch.__version__)')"
if command -v nvidia-smi >/dev/null; then
  (while true; do
     nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null | wc -l >> "$WORK/gpu_processes"
     sleep 1
   done) &
  SAMPLER_PID=$!
fi

start=$(date +%s)
timeout 420 "$PYTHON" -m gkd_search --dataset cora --data-root "$DATA" --device cuda --gpus-per-trial 0.25 \
  --cpus-per-trial 1 --max-concurrent 4 --trials "$TRIALS" --epochs 100 --budget-ms 10 \
  --tracking-uri "sqlite:///$WORK/mlflow.db" --cache-dir "$WORK/cache" --no-register-model
echo "gpu_check: search wall time $(( $(date +%s) - start )) s"
if [[ -n "$SAMPLER_PID" ]]; then
  kill "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
  echo "gpu_check: most processes on the GPU at once (nvidia-smi, 1 s samples; the driver's latency bench is one): $(sort -n "$WORK/gpu_processes" | tail -1)"
fi

WORK="$WORK" "$PYTHON" - <<'EOF'
import json
import os
from pathlib import Path

from mlflow.tracking import MlflowClient

work = Path(os.environ["WORK"])
client = MlflowClient(f"sqlite:///{work}/mlflow.db")
runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
parent = next(r for r in runs if r.data.tags.get("gkd.role") == "search")
trials = sorted((r for r in runs if r.data.tags.get("gkd.role") == "trial"), key=lambda r: r.info.run_name)
print(f"\ntrial placement and GPU memory ({len(trials)} trials, device {parent.data.params['device']}, "
      f"gpus_per_trial {parent.data.params['gpus_per_trial']}):")
print(f"  {'trial':<40} {'status':<11} {'ray node':<10} {'gpu ids':<8} {'resources':<18} {'peak MiB':>9} {'p50 ms':>8}")
for r in trials:
    t, m = r.data.tags, r.data.metrics
    peak = f"{m['peak_gpu_mb']:.1f}" if "peak_gpu_mb" in m else "-"
    p50 = f"{m['latency_ms_p50']:.3f}" if "latency_ms_p50" in m else "-"
    print(f"  {r.info.run_name[:40]:<40} {t.get('gkd.status', ''):<11} {t.get('gkd.ray_node', '')[:8]:<10} "
          f"{t.get('gkd.gpu_ids', '-'):<8} {t.get('gkd.ray_resources', ''):<18} {peak:>9} {p50:>8}")
gpu_trials = [r for r in trials if "GPU=0.25" in r.data.tags.get("gkd.ray_resources", "")]
print(f"  {len(gpu_trials)} of {len(trials)} trials ran with GPU=0.25; GPUs used: "
      f"{sorted({r.data.tags.get('gkd.gpu_ids', '-') for r in trials})}")

print(f"\nlatency table ({parent.data.params['hardware']}, protocol {parent.data.params['latency_protocol']}, "
      f"batch {parent.data.params['latency_batch']}):")
for table in sorted((work / "cache" / "latency").glob("*.json")):
    entries = json.loads(table.read_text())["entries"]
    print(f"  {'architecture':<36} {'p50 ms':>8} {'p95 ms':>8}")
    for key, m in sorted(entries.items(), key=lambda kv: kv[1]["p50_ms"]):
        print(f"  {key:<36} {m['p50_ms']:>8.3f} {m['p95_ms']:>8.3f}")
EOF
