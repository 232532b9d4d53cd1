"""`llm4es evaluate`: score embeddings (and built-in baselines) on a label with the paper's protocol:
5 stratified folds on the train users, each fold model scores the held-out test users; report.md/.json/.png."""

from __future__ import annotations

from ..config import parse_config
from ..evaluation import EvaluationConfig, run_evaluation


def main(argv: list[str]) -> int:
    (config,) = parse_config([EvaluationConfig], argv, prog="llm4es evaluate", description=__doc__)
    report = run_evaluation(config)
    print(report.to_markdown())
    if config.output_dir:
        print(f"wrote {config.output_dir}/report.md, report.json and report.png")
    return 0
