"""scripts/gpu_smoke.py, the GPU check run where a CUDA machine is lent, stays runnable: its CPU dry run passes."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_smoke_dry_run_on_cpu():
    run = subprocess.run(
        [sys.executable, "scripts/gpu_smoke.py", "--cpu-ok"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith('{"')]
    summary = lines[-1]
    assert run.returncode == 0 and summary["gpu_smoke"] == "ok", run.stdout[-3000:] + run.stderr[-3000:]
    checks = {line["check"] for line in lines if "check" in line}
    assert {"embed", "embed_levers", "st_export", "embed_shards", "sft", "contrastive"} <= checks
