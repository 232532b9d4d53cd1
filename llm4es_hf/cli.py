"""`llm4es <command>`: one CLI for every stage of the pipeline."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import Llm4esError

Handler = Callable[[argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    from .sources import SOURCES

    group = parser.add_argument_group("source")
    group.add_argument("--source", required=True, choices=SOURCES, help="where the events come from")
    group.add_argument("--input", help="raw file (csv/parquet) or folder (ml-1m, rosbank, gender, age)")
    group.add_argument("--schema", help="EventSchema YAML (required for csv/parquet; overrides built-in ones)")
    group.add_argument("--labels", help="csv/parquet: a user table with the label columns")
    group.add_argument("--synthetic-users", type=int, default=1000, help="synthetic: number of users")
    group.add_argument("--synthetic-events", type=float, default=50.0, help="synthetic: mean events per user")
    group.add_argument("--seed", type=int, default=42, help="seed of the synthetic data and of the split")
    group.add_argument("--test-size", type=float, default=0.1, help="fraction of (labeled) users held out")
    group.add_argument("--split-label", help="draw test users among users with this label (default: the first)")


def add_serialize_arguments(parser: argparse.ArgumentParser) -> None:
    from .serialize import FORMATS

    group = parser.add_argument_group("serialization")
    group.add_argument("--format", default="llm4es", choices=FORMATS, help="text layout (default: llm4es)")
    group.add_argument("--max-events", type=int, default=5000, help="keep at most the last N events per user")
    group.add_argument("--max-tokens", type=int, help="token budget per user; keeps the most recent events")
    group.add_argument("--tokenizer", default="smollm2-135m", help="tokenizer for the budget and the statistics")


def run_serialize(args: argparse.Namespace) -> int:
    from .serialize import Serializer, load_tokenizer, summarize
    from .sources import load_source, split_users

    result = load_source(
        args.source,
        input=args.input,
        schema=args.schema,
        labels=args.labels,
        synthetic_users=args.synthetic_users,
        synthetic_events_per_user=args.synthetic_events,
        seed=args.seed,
    )
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    serializer = Serializer(
        result.schema, args.format, max_events=args.max_events, max_tokens=args.max_tokens, tokenizer=tokenizer
    )
    texts = serializer(result.users)
    label = args.split_label or (result.schema.labels[0].name if result.schema.labels else None)
    splits = split_users(texts, test_size=args.test_size, seed=args.seed, label=label)
    summary = summarize(texts, result.schema, max_events=args.max_events, tokenizer=tokenizer)
    output = Path(args.output)
    splits.save_to_disk(str(output))
    from .schema import save_schema

    save_schema(result.schema, output / "schema.yaml")
    (output / "summary.json").write_text(
        json.dumps(
            {
                "source": result.report.to_dict(),
                "serialization": summary.__dict__,
                "format": args.format,
                "splits": {k: len(v) for k, v in splits.items()},
            },
            indent=2,
        )
    )
    print_source_report(result.report)
    for line in summary.lines():
        print(line)
    print(f"splits: train {len(splits['train']):,}, test {len(splits['test']):,} (seed {args.seed})")
    print(f"saved to {output}")
    return 0


def print_source_report(report) -> None:  # noqa: ANN001 - SourceReport, imported lazily
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


def serialize_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    add_serialize_arguments(parser)
    parser.add_argument("--output", required=True, help="folder for the DatasetDict (train/test)")


def run_synthetic(args: argparse.Namespace) -> int:
    from .sources.synthetic import generate_rosbank, write_rosbank

    frame = generate_rosbank(args.users, args.events_per_user, seed=args.seed)
    path = write_rosbank(frame, args.output)
    print(f"wrote {len(frame):,} transactions of {args.users:,} users to {path}")
    return 0


def synthetic_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="folder to write train.csv.gz into")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--events-per-user", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=42)


def run_quickstart(args: argparse.Namespace) -> int:
    from .quickstart import quickstart

    quickstart(output_dir=Path(args.output_dir), max_tokens=args.max_tokens)
    return 0


def quickstart_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default="outputs/quickstart", help="where every artifact goes")
    parser.add_argument("--max-tokens", type=int, default=2048, help="token budget per user")


COMMANDS: dict[str, tuple[str, AddArguments, Handler]] = {
    "serialize": (
        "raw events -> users Dataset with a `text` column (LLM4ES or another format)",
        serialize_arguments,
        run_serialize,
    ),
    "synthetic": (
        "write synthetic bank transactions in Rosbank's raw format (train.csv.gz)",
        synthetic_arguments,
        run_synthetic,
    ),
    "quickstart": (
        "the main job on the embedded defaults (bundled MovieLens-100K and SmolLM2)",
        quickstart_arguments,
        run_quickstart,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm4es",
        description="LLM4ES on the Hugging Face stack: event sequences -> text -> fine-tuned LLM -> user embeddings.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for name, (help_text, add_arguments, runner) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command_parser)
        command_parser.set_defaults(handler=runner)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except Llm4esError as err:
        print(f"llm4es {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
