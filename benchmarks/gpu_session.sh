#!/usr/bin/env bash
# One GPU session: PyTorch one-model baseline, batched JAX throughput, bf16 matmul peak, and a
# demo grid end to end. Run from the repo root on the GPU machine; results land in
# benchmarks/results/ (and $OUT when set).
export PYTHONPATH=. PYTHONUNBUFFERED=1
nvidia-smi -L
timeout 50 python3 benchmarks/torch_baseline.py --steps 300 --warmup 30
timeout 150 python3 benchmarks/throughput.py --replicas 1,16,64 --strategies vmap --calls 3 \
  --steps-per-call 50 --images 50000 --no-sequential --name throughput_gpu
timeout 25 python3 benchmarks/flops.py --peak
timeout 45 python3 run_grid.py --preset demo --out /tmp/demo_gpu --no-progress && cat /tmp/demo_gpu/replicas.csv
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*.json "$OUT"/ 2>/dev/null; cp /tmp/demo_gpu/*.json /tmp/demo_gpu/*.csv "$OUT"/ 2>/dev/null; fi
exit 0
