"""`llm4es serialize`: raw events -> a users DatasetDict (train/test) with a `text` column."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..config import parse_config
from ..corpus import serialize_users
from ..corpus.sharded import STREAM_BYTES, auto_num_shards
from ..errors import Llm4esError
from ..schema import save_schema
from ..serialize import SerializationConfig
from ..sources import SourceConfig, SourceReport


@dataclass
class SerializeConfig(SourceConfig, SerializationConfig):
    """Options of `llm4es serialize`."""

    output: str | None = field(default=None, metadata={"help": "folder for the DatasetDict (train/test)"})


def print_source_report(report: SourceReport) -> None:
    """What a source read, dropped and repaired, one line each."""
    print(f"source: {report.source} ({', '.join(report.files)})")
    print(f"rows read: {report.rows_read:,}")
    for reason, count in report.dropped_rows.items():
        print(f"rows dropped, {reason}: {count:,}")
    for column, count in report.missing_values.items():
        print(f"missing values in {column!r} (rendered with the field's `missing` text): {count:,}")
    if report.duplicate_events:
        print(f"duplicate events (same user, time and values): {report.duplicate_events:,}")
    if report.users_without_events:
        print(f"labeled users without any event (not in the output): {report.users_without_events:,}")
    for label, count in report.unlabeled_users.items():
        if count:
            print(f"users without a {label!r} label: {count:,}")


def run(config: SerializeConfig) -> int:
    if not config.output:
        raise Llm4esError("--output is required (the folder to write)", key="output")
    shards = auto_num_shards(config)
    if shards > 1:  # the in-memory path reads every raw row at once; corpus streams them in shards
        print(
            f"note: the raw input is over {STREAM_BYTES / 2**30:.0f} GiB and `llm4es serialize` reads it whole "
            f"into memory; `llm4es corpus --num_shards {shards}` (same options, --output_dir) streams it in "
            "shards whose memory follows the shard size",
            file=sys.stderr,
        )
    result = serialize_users(config, config)
    output = Path(config.output)
    result.splits.save_to_disk(str(output))
    save_schema(result.source.schema, output / "schema.yaml")
    (output / "summary.json").write_text(
        json.dumps(
            {
                "source": result.source.report.to_dict(),
                "serialization": result.summary.__dict__,
                "format": config.format,
                "splits": {k: len(v) for k, v in result.splits.items()},
            },
            indent=2,
        )
    )
    print_source_report(result.source.report)
    for line in result.summary.lines():
        print(line)
    print(f"splits: train {len(result.splits['train']):,}, test {len(result.splits['test']):,} (seed {config.seed})")
    print(f"saved to {output}")
    return 0


def main(argv: list[str]) -> int:
    (config,) = parse_config([SerializeConfig], argv, prog="llm4es serialize", description=__doc__)
    return run(config)
