#!/usr/bin/env bash
# GPU: the two small_cnn convolution implementations, batched over 35 and 64 replicas.
export PYTHONPATH=. PYTHONUNBUFFERED=1
nvidia-smi -L
timeout 170 python3 benchmarks/throughput.py --replicas 35,64 --strategies vmap --conv xla,patches --calls 3 \
  --steps-per-call 50 --images 50000 --no-sequential --name throughput_gpu_conv
if [ -n "${OUT:-}" ]; then cp benchmarks/results/throughput_gpu_conv.json "$OUT"/ 2>/dev/null; fi
exit 0
