"""`llm4es enrich`: rewrite a seeded fraction of users' serialized texts with an LLM.

Reads what `llm4es serialize` saved (a Dataset or DatasetDict with ``user_id`` and
``text``, and ``schema.yaml`` beside it), enriches, and saves a Dataset with
``user_id, variant, text, source_text, finish_reason`` (failures left out, counted).
Runnable on its own as ``python -m llm4es_hf.enrich.cli``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import Llm4esError
from .backends import BACKENDS
from .prompts import VARIANTS
from .runner import pick_users


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `enrich` sub-command's options."""
    parser.add_argument("--input", required=True, help="folder written by `llm4es serialize` (text, user_id)")
    parser.add_argument("--output", required=True, help="folder for the enriched Dataset")
    parser.add_argument("--schema", help="EventSchema YAML for the domain words (default: INPUT/schema.yaml)")
    parser.add_argument("--variant", default="free", choices=sorted(VARIANTS), help="prompt variant (default: free)")
    parser.add_argument("--fraction", type=float, default=0.2, help="fraction of users to enrich, in [0, 1]")
    parser.add_argument("--split", default="train", help="split to read when INPUT is a DatasetDict")
    parser.add_argument("--seed", type=int, default=42, help="seed of the user draw and of sampling")

    group = parser.add_argument_group("generator")
    group.add_argument("--backend", default="transformers", choices=BACKENDS)
    group.add_argument("--generator", default="smollm2-135m", help="transformers: bundled name, folder or Hub id")
    group.add_argument("--device", default="auto", help="transformers: cpu, cuda, cuda:1, mps or auto")
    group.add_argument("--dtype", default="auto", help="transformers: auto, float32, bfloat16 or float16")
    group.add_argument("--batch-size", type=int, default=16, help="transformers: prompts per generate call")
    group.add_argument("--base-url", help="openai: server URL up to /v1, e.g. http://localhost:8000/v1")
    group.add_argument("--model", help="openai: the served model's name")
    group.add_argument("--api-key-env", help="openai: name of the environment variable holding the API key")
    group.add_argument("--concurrency", type=int, default=8, help="openai: requests in flight")
    group.add_argument("--timeout", type=float, default=60.0, help="openai: seconds per request")
    group.add_argument("--request-retries", type=int, default=3, help="openai: retries on connection errors/5xx/429")

    group = parser.add_argument_group("sampling")
    group.add_argument("--max-new-tokens", type=int, default=512)
    group.add_argument("--temperature", type=float, default=0.6)
    group.add_argument("--top-p", type=float, default=0.9)
    group.add_argument("--max-retries", type=int, default=2, help="new tries for empty/truncated/refused outputs")
    group.add_argument(
        "--keep-truncated", action="store_true", help="keep outputs cut by --max-new-tokens instead of retrying them"
    )
    group.add_argument("--retry-failed", action="store_true", help="try again the records stored as failed")
    group.add_argument("--cache", help="SQLite cache (default: OUTPUT/enrich_cache.sqlite)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_texts(input_dir: str | Path, split: str) -> Any:
    """The Dataset of texts to enrich (one split of a DatasetDict)."""
    import datasets

    path = Path(input_dir)
    if not path.exists():
        raise Llm4esError("input folder not found", file=path)
    try:
        data = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise Llm4esError(f"not a saved datasets folder: {err}", file=path) from err
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise Llm4esError(f"no split {split!r}; splits: {sorted(data)}", file=path, key="split")
        data = data[split]
    for column in ("user_id", "text"):
        if column not in data.column_names:
            raise Llm4esError(f"no column {column!r}; columns: {data.column_names}", file=path, column=column)
    return data


def backend_from_args(args: argparse.Namespace) -> Any:
    """The generator the options ask for; the API key is read from the named environment variable."""
    from .backends import make_backend

    if args.backend == "openai" and (not args.base_url or not args.model):
        raise Llm4esError("--backend openai needs --base-url and --model", key="base_url")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise Llm4esError(f"environment variable {args.api_key_env} is not set", key="api_key_env")
    return make_backend(
        args.backend,
        generator=args.generator,
        model=args.model,
        base_url=args.base_url,
        api_key=api_key,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        device=args.device,
        dtype=args.dtype,
        timeout=args.timeout,
        max_retries=args.request_retries,
    )


def run(args: argparse.Namespace) -> int:
    """Enrich, save the Dataset and the report, print the report."""
    import datasets

    from ..schema import load_schema, save_schema
    from .backends import SamplingConfig
    from .cache import EnrichmentCache
    from .runner import enrich_records

    sampling = SamplingConfig(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed
    )
    if not 0.0 <= args.fraction <= 1.0:
        raise Llm4esError(f"fraction must be in [0, 1], got {args.fraction}", key="fraction")
    schema_file = Path(args.schema) if args.schema else Path(args.input) / "schema.yaml"
    if not schema_file.exists():
        raise Llm4esError("schema not found; give --schema", file=schema_file)
    schema = load_schema(schema_file)
    data = load_texts(args.input, args.split)
    chosen = data.select(pick_users(len(data), args.fraction, args.seed))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    source_texts = list(chosen["text"])
    user_ids = list(chosen["user_id"])

    backend = backend_from_args(args)
    try:
        with EnrichmentCache(args.cache or output / "enrich_cache.sqlite") as cache:
            records, report = enrich_records(
                source_texts,
                args.variant,
                schema,
                backend,
                cache,
                sampling=sampling,
                max_retries=args.max_retries,
                keep_truncated=args.keep_truncated,
                retry_failed=args.retry_failed,
                progress=not args.no_progress,
            )
    finally:
        if hasattr(backend, "close"):
            backend.close()

    kept = [i for i, record in enumerate(records) if record.text is not None]
    features = datasets.Features(
        {
            "user_id": data.features["user_id"],
            "variant": datasets.Value("string"),
            "text": datasets.Value("string"),
            "source_text": datasets.Value("string"),
            "finish_reason": datasets.Value("string"),
        }
    )
    table = datasets.Dataset.from_dict(
        {
            "user_id": [user_ids[i] for i in kept],
            "variant": [args.variant] * len(kept),
            "text": [records[i].text for i in kept],
            "source_text": [source_texts[i] for i in kept],
            "finish_reason": [records[i].finish_reason for i in kept],
        },
        features=features,
    )
    table.save_to_disk(str(output))
    save_schema(schema, output / "schema.yaml")
    settings = {
        "input": str(args.input),
        "split": args.split,
        "variant": args.variant,
        "fraction": args.fraction,
        "users_selected": len(chosen),
        "generator": backend.name,
        "sampling": sampling.key_fields(),
        "max_retries": args.max_retries,
        "keep_truncated": args.keep_truncated,
    }
    (output / "enrich_report.json").write_text(json.dumps({"settings": settings, "report": report.to_dict()}, indent=2))
    print(f"users selected: {len(chosen):,} of {len(data):,} (fraction {args.fraction}, seed {args.seed})")
    for line in report.lines():
        print(line)
    print(f"saved {len(table):,} enriched texts to {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `enrich` on its own (the `llm4es enrich` sub-command does the same)."""
    parser = argparse.ArgumentParser(prog="llm4es enrich", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except Llm4esError as err:
        print(f"llm4es enrich: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
