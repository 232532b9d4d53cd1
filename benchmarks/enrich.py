"""Enrichment speed: batched generation against one prompt at a time, and a rerun over the cache.

Same prompts (the first MovieLens-100K users, serialized and cut to ~256 tokens, the
``free`` variant), same sampling (max 64 new tokens, truncated outputs kept), the
bundled SmolLM2-135M on this CPU (bfloat16 where the CPU computes it natively). "ours"
is the runner with batches of 16; the baseline is the same backend and runner with
batches of 1; the two alternate batch by batch. The rerun is a second run over the
finished cache (nothing to generate).

    python benchmarks/enrich.py [--users 32 --max-tokens 256 --max-new-tokens 64 --batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Other processes may share the two cores: sleeping OpenMP threads keep throughput from collapsing.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _common import report, timed  # noqa: E402

from llm4es_hf.enrich import (  # noqa: E402
    EnrichmentCache,
    EnrichmentReport,
    SamplingConfig,
    TransformersBackend,
    build_messages,
    enrich_records,
)
from llm4es_hf.models import load_tokenizer
from llm4es_hf.serialize import Serializer  # noqa: E402
from llm4es_hf.sources import load_source  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=256, help="token budget of each serialized user")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--variant", default="free")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    source = load_source("movielens")
    users = source.users.select(range(args.users))
    serializer = Serializer(source.schema, max_tokens=args.max_tokens, tokenizer=load_tokenizer("smollm2-135m"))
    texts = serializer(users)["text"]
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    backend = TransformersBackend("smollm2-135m", batch_size=args.batch_size, device="cpu")
    prompt_tokens = [
        len(backend.tokenizer(backend.render(build_messages(t, args.variant, source.schema)))["input_ids"])
        for t in texts
    ]
    # Warm up (first touch of the weights, kernels) on a prompt of the same kind.
    backend.generate([build_messages(texts[0], args.variant, source.schema)], SamplingConfig(max_new_tokens=4))

    def run(part: list[str], batch_size: int, cache_file: Path) -> tuple[list, EnrichmentReport]:
        backend.batch_size = batch_size
        with EnrichmentCache(cache_file) as cache:
            return enrich_records(
                part,
                args.variant,
                source.schema,
                backend,
                cache,
                sampling=sampling,
                max_retries=0,
                keep_truncated=True,
                progress=False,
            )

    # Batched and one-at-a-time runs alternate, one batch of users at a time, so that both
    # see the same machine (other processes on a shared CPU change the speed over minutes).
    first_seconds = single_seconds = 0.0
    batched, single = EnrichmentReport(), EnrichmentReport()
    records = []
    with tempfile.TemporaryDirectory() as folder:
        cache_file = Path(folder) / "batched.sqlite"
        for start in range(0, len(texts), args.batch_size):
            part = texts[start : start + args.batch_size]
            seconds, (part_records, part_report) = timed(lambda part=part: run(part, args.batch_size, cache_file))
            first_seconds += seconds
            records += part_records
            batched.completion_tokens += part_report.completion_tokens
            seconds, (_, part_report) = timed(lambda part=part: run(part, 1, Path(folder) / "single.sqlite"))
            single_seconds += seconds
            single.completion_tokens += part_report.completion_tokens
        rerun_seconds, (_, rerun) = timed(lambda: run(texts, args.batch_size, cache_file))
    assert rerun.from_cache == len(texts) and rerun.generated == 0

    ours = batched.completion_tokens / first_seconds
    baseline = single.completion_tokens / single_seconds
    stopped = sum(r.finish_reason == "stop" for r in records)
    print(f"{len(texts)} MovieLens users, prompts {min(prompt_tokens)}-{max(prompt_tokens)} tokens "
          f"(serialized text <= {args.max_tokens}), max {args.max_new_tokens} new tokens, "
          f"variant {args.variant!r}, SmolLM2-135M {str(backend.model.dtype).removeprefix('torch.')}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'run':<28}{'batch':>6}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}")
    rows = [
        ("batched (ours)", args.batch_size, batched.completion_tokens, first_seconds),
        ("one at a time (baseline)", 1, single.completion_tokens, single_seconds),
        ("rerun over the cache", args.batch_size, rerun.completion_tokens, rerun_seconds),
    ]
    for name, batch, tokens, seconds in rows:
        print(f"{name:<28}{batch:>6}{tokens:>8}{seconds:>10.3f}{tokens / seconds:>10.1f}")
    print(f"outputs that ended on their own (stop): {stopped} of {len(records)}")
    report(
        benchmark="enrich",
        ours=round(ours, 1),
        baseline=round(baseline, 1),
        unit="generated tokens/s",
        ratio=round(ours / baseline, 2),
        first_run_seconds=round(first_seconds, 3),
        rerun_seconds=round(rerun_seconds, 4),
        rerun_fraction=round(rerun_seconds / first_seconds, 5),
        users=len(texts),
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
    )


if __name__ == "__main__":
    main()
