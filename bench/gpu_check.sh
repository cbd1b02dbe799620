#!/usr/bin/env bash
# The "cloud" on a GPU: run the Neurosurgeon sweep twice on one machine, the
# tail on the CPU and then on CUDA (same phone, same link), and print both
# result tables. Also runs the CUDA integration test. Needs a CUDA machine
# with splittracer's dependencies importable; writes to $OUT when it is set.
#
#   bash bench/gpu_check.sh
set -euo pipefail
out=${OUT:-$(mktemp -d)}
ws=$(mktemp -d)/lab
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
python3 -m pytest tests/integration/test_runs.py -k cuda -q -p no:warnings -p no:cacheprovider 2>&1 | tee "$out/pytest.txt"
python3 -m splittracer init "$ws" >/dev/null
manifest="$ws/experiments/neurosurgeon.yaml"
# Same phone (1 thread, emulated LTE, no CPU limit); the cloud with 8 threads on the CPU, then on the GPU.
sed -i -e 's/      threads: 2/      threads: 8/' -e '/      cpu: /d' -e '/      by: /d' \
    -e 's/, uplinks: \[3g, lte, wifi\]//' "$manifest"
sed 's/^name: neurosurgeon/name: cloud-cpu/' "$manifest" > "$ws/experiments/cloud-cpu.yaml"
sed -e 's/^name: neurosurgeon/name: cloud-gpu/' \
    -e "s/    # torch_device: cuda.*/    torch_device: cuda/" \
    "$manifest" > "$ws/experiments/cloud-gpu.yaml"
for name in cloud-cpu cloud-gpu; do
    python3 -m splittracer run "$name" --workspace "$ws" --no-plot 2>&1 | tail -32
    python3 -m splittracer results show latest --json --workspace "$ws" > "$out/$name.json"
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
cpu, gpu = (json.loads((out / f"cloud-{k}.json").read_text()) for k in ("cpu", "gpu"))
cloud = gpu["run"]["metadata"]["participants"]["cloud"]
print(f"cloud on: {cloud['torch_device']} ({cloud['accelerator']})")
print(f"{'split':>5} {'after':>12} {'tail cpu ms':>12} {'tail gpu ms':>12} {'ratio':>6} {'total cpu':>10} {'total gpu':>10}")
for c, g in zip(cpu["splits"], gpu["splits"]):
    ratio = c["tail_ms"] / g["tail_ms"] if g["tail_ms"] else float("nan")
    print(f"{c['split']:>5} {c['after'][:12]:>12} {c['tail_ms']:>12.2f} {g['tail_ms']:>12.2f} {ratio:>6.1f}"
          f" {c['total_ms']:>10.1f} {g['total_ms']:>10.1f}")
PY
