"""The main job on the embedded defaults: bundled MovieLens-100K and SmolLM2, offline."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from .schema import save_schema
from .serialize import Serializer, load_tokenizer, summarize
from .sources import load_source, split_users

console = Console()


def quickstart(output_dir: Path, *, max_tokens: int = 2048, model: str = "smollm2-135m") -> dict:
    """Run every stage that exists on MovieLens-100K and print what each produced."""
    started = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)

    console.rule("[bold]1. Sources: bundled MovieLens-100K")
    source = load_source("movielens")
    console.print(
        f"{source.report.users:,} users, {source.report.events:,} ratings "
        f"(dropped: {source.report.dropped_rows or 'none'})"
    )

    console.rule(f"[bold]2. Serialize (LLM4ES text, last {max_tokens} tokens of each user)")
    tokenizer = load_tokenizer(model)
    texts = Serializer(source.schema, max_tokens=max_tokens, tokenizer=tokenizer)(source.users)
    splits = split_users(texts, label="gender")
    corpus_dir = output_dir / "serialized"
    splits.save_to_disk(str(corpus_dir))
    save_schema(source.schema, corpus_dir / "schema.yaml")
    summary = summarize(texts, source.schema, max_events=5000)
    for line in summary.lines():
        console.print(line)
    console.print("[dim]first user, as the model sees it:[/dim]")
    console.print(texts[0]["text"][:600] + " ...", markup=False, highlight=False)

    results = {
        "users": summary.users,
        "events": summary.events,
        "tokens": summary.token_percentiles,
        "seconds": round(time.perf_counter() - started, 1),
        "serialized": str(corpus_dir),
    }
    (output_dir / "quickstart.json").write_text(json.dumps(results, indent=2))
    console.rule(f"[bold green]done in {results['seconds']} s; artifacts in {output_dir}")
    return results
