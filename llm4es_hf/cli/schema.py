"""`llm4es schema infer EVENTS [--labels FILE] --output SCHEMA.yaml`: propose an EventSchema from a sample
of your events (user id, time and its format, each field's kind, labels, sensitive columns), write it as a
commented YAML and show two users' texts with their token counts. Where two columns fit a role it stops
and names the flag that settles it (--user-id, --time, --time-format)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import parse_config
from ..errors import Llm4esError
from ..infer_schema import SAMPLE_ROWS, infer_schema, preview
from ..sources.stream import input_files

SUBCOMMANDS = ("infer",)


@dataclass
class SchemaInferConfig:
    """Options of `llm4es schema infer`."""

    events: str | None = field(
        default=None,
        metadata={
            "help": "the events (also the first argument): a CSV (.csv, .csv.gz, .tsv) or Parquet file, a folder "
            "or a glob (default: none, required)"
        },
    )
    output: str | None = field(default=None, metadata={"help": "the schema YAML to write (default: none, required)"})
    labels: str | None = field(
        default=None,
        metadata={"help": "a user table (the events' user id column + label columns), CSV or Parquet (default: none)"},
    )
    user_id: str | None = field(default=None, metadata={"help": "the user id column (default: inferred)"})
    time: str | None = field(default=None, metadata={"help": "the event time column (default: inferred)"})
    time_format: str | None = field(
        default=None,
        metadata={
            "help": "how to read the time: unix_seconds, unix_days, day_time ('<day> HH:MM:SS') or a strptime "
            "pattern such as '%%d.%%m.%%Y %%H:%%M' (default: inferred)"
        },
    )
    name: str | None = field(default=None, metadata={"help": "the schema's name (default: the file's name)"})
    sample_rows: int = field(default=SAMPLE_ROWS, metadata={"help": "rows read from the start of the input"})
    encoding: str = field(default="utf-8", metadata={"help": "text encoding of CSV files (e.g. cp1251, latin-1)"})
    tokenizer: str = field(
        default="smollm2-135m", metadata={"help": "tokenizer of the token counts (bundled name, folder or Hub id)"}
    )
    preview_users: int = field(default=2, metadata={"help": "users whose texts are printed (0: none)"})
    preview_lines: int = field(default=12, metadata={"help": "lines printed of each text"})
    force: bool = field(default=False, metadata={"help": "overwrite an existing --output file"})


def run(config: SchemaInferConfig) -> int:
    if not config.events:
        raise Llm4esError("give the events file: llm4es schema infer EVENTS --output SCHEMA.yaml", key="events")
    if not config.output:
        raise Llm4esError("--output is required (the schema YAML to write)", key="output")
    output = Path(config.output)
    if output.exists() and not config.force:
        raise Llm4esError("the file exists; pass --force to overwrite it", file=output)
    proposal = infer_schema(
        config.events,
        labels=config.labels,
        user_id=config.user_id,
        time=config.time,
        time_format=config.time_format,
        rows=config.sample_rows,
        encoding=config.encoding,
        name=config.name,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(proposal.text, encoding="utf-8")
    schema = proposal.schema
    kinds = ", ".join(f"{f.name} ({f.kind})" for f in schema.fields if f.name != "event_time")
    print(f"user id: {schema.user_id}; time: {schema.time.column} ({schema.time.parse}", end="")
    print(f" {schema.time.format!r})" if schema.time.format else ")")
    print(f"fields: {kinds}")
    if schema.labels:
        print("labels: " + ", ".join(f"{lb.name} ({lb.task})" for lb in schema.labels))
    if schema.sensitive:
        print(f"sensitive, left out of the text: {', '.join(schema.sensitive)}")
    for note in proposal.notes:
        print(note)
    if config.preview_users > 0:
        from ..models import load_tokenizer

        tokenizer = load_tokenizer(config.tokenizer)
        for user in preview(proposal, tokenizer, config.preview_users):
            lines = user["text"].split("\n")
            print(f"\n--- user {user['user_id']}: {user['events']:,} events in the sample, ", end="")
            print(f"{user['tokens']:,} tokens ({config.tokenizer})")
            print("\n".join(lines[: config.preview_lines]))
            if len(lines) > config.preview_lines:
                print(f"... ({len(lines) - config.preview_lines:,} more lines)")
    labels = f" --labels {config.labels}" if config.labels else ""
    source = "parquet" if input_files(config.events)[0].suffix == ".parquet" else "csv"
    print(f"\nwrote {output}; check it, then run the main job on your events (a run folder in outputs/):")
    command = f"llm4es quickstart --source {source} --input {config.events} --schema {output}{labels}"
    print(f"  {command} --output-dir outputs/run")
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        argv = argv[1:]
    elif argv and argv[0] not in ("-h", "--help"):
        raise Llm4esError(f"unknown subcommand {argv[0]!r}; usage: llm4es schema infer EVENTS --output SCHEMA.yaml")
    elif not argv:
        raise Llm4esError("usage: llm4es schema infer EVENTS [--labels FILE] --output SCHEMA.yaml")
    (config,) = parse_config(
        [SchemaInferConfig], argv, prog="llm4es schema infer", description=__doc__, positional=("events",)
    )
    return run(config)
