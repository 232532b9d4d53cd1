"""benchmarks/paper_scale.py, the paper-scale run kept for a GPU, stays runnable: its CPU dry run
(the same code on a tiny shape) passes and reports every figure."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("sft_tokens_per_s", "sft_peak_memory_gb", "sft_mfu", "model_params")
PER_LENGTH = ("embed_tokens_per_s", "embed_peak_memory_gb", "embed_mfu")


def test_paper_scale_dry_run_on_cpu(tmp_path):
    run = subprocess.run(
        [sys.executable, "benchmarks/paper_scale.py", "--dry-run", "--work-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["dry_run"] is True and result["device"].startswith("cpu")
    assert "vocab 49152" in result["tokenizer"] and result["model_params_with_llama3_vocab"] > result["model_params"]
    for key in FIGURES:
        assert result[key] > 0, key
    for key in PER_LENGTH:
        assert set(result[key]) == {"64", "128"}, key
        assert all(value > 0 for value in result[key].values()), key
    assert result["sft_activation_checkpointing"] is True
    assert result["sft_mean_tokens_per_user"] == result["sft_max_length"]  # the users fill max_length
    assert result["attention"] == {"sft": "sdpa", "embed": "sdpa"}
    assert "tokenizer: smollm2-135m (vocab 49,152" in run.stdout
