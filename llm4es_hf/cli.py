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
    from .quickstart import QuickstartConfig, quickstart

    quickstart(QuickstartConfig(**{k: v for k, v in vars(args).items() if k in QuickstartConfig.__dataclass_fields__}))
    return 0


def quickstart_arguments(parser: argparse.ArgumentParser) -> None:
    from .quickstart import QuickstartConfig

    defaults = QuickstartConfig()
    parser.add_argument("--output-dir", default=defaults.output_dir, help="where every artifact goes")
    parser.add_argument("--model", default=defaults.model, help="base model: bundled name, folder or Hub id")
    parser.add_argument(
        "--schema",
        default=defaults.schema,
        help="MovieLens layout: an EventSchema under recipes/ or a path (movielens/schema.yaml: date, title, genres, "
        "rating)",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=defaults.max_tokens,
        help="tokens per viewer (most recent ratings) for the corpus, training and embedding",
    )
    parser.add_argument("--train-steps", type=int, default=defaults.train_steps, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="training batch size")
    parser.add_argument("--enrich-users", type=int, default=defaults.enrich_users, help="viewers rewritten by the LLM")
    parser.add_argument("--enrich-new-tokens", type=int, default=defaults.enrich_new_tokens)
    parser.add_argument("--embed-batch-size", type=int, default=defaults.embed_batch_size)
    parser.add_argument("--target", default=defaults.target, help="label to evaluate (gender, age, occupation)")


def run_corpus(argv: list[str]) -> int:
    from .config import parse_config
    from .corpus import CorpusConfig, build_corpus

    (config,) = parse_config(
        [CorpusConfig],
        argv,
        prog="llm4es corpus",
        description="Build a corpus (serialized + enriched configs, card) from a recipe YAML: "
        "llm4es corpus --recipe recipes/movielens/corpus.yaml --output-dir DIR",
    )
    output = build_corpus(config)
    print(f"corpus written to {output}")
    return 0


def run_publish_corpus(args: argparse.Namespace) -> int:
    from .hub import publish_corpus

    url = publish_corpus(args.folder, args.repo_id, private=not args.public, hash_user_ids=not args.keep_user_ids)
    print(f"published {args.folder} to {url} ({'public' if args.public else 'private'})")
    return 0


def publish_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a corpus folder written by `llm4es corpus`")
    parser.add_argument("--repo-id", required=True, help="org/name of the Hub data set")
    parser.add_argument("--public", action="store_true", help="publish publicly (default: private)")
    parser.add_argument("--keep-user-ids", action="store_true", help="publish raw user ids (default: salted hashes)")


def enrich_arguments(parser: argparse.ArgumentParser) -> None:
    from .enrich.cli import add_arguments

    add_arguments(parser)


def run_enrich(args: argparse.Namespace) -> int:
    from .enrich.cli import run

    return run(args)


def embed_arguments(parser: argparse.ArgumentParser) -> None:
    from .embed import DTYPES, POOL_TOKENS, POOLINGS

    parser.add_argument("--model", required=True, help="model folder, Hub id, or bundled name (smollm2-135m)")
    parser.add_argument("--corpus", required=True, help="corpus folder or Hub data set id (plain texts)")
    parser.add_argument("--output", required=True, help="Parquet file to write (user_id, split, embedding)")
    parser.add_argument("--config", default="serialized", help="corpus config holding the plain texts")
    parser.add_argument("--splits", nargs="+", help="splits to embed (default: all)")
    parser.add_argument("--layer-start", type=int, help="first hidden state averaged (default: L/3, the paper's k)")
    parser.add_argument("--pooling", default=None, choices=POOLINGS, help="mean over tokens (default) or last")
    parser.add_argument("--max-length", type=int, help="tokens per user, most recent kept (default: model's)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: bf16 where the hardware has it")
    parser.add_argument(
        "--pool-tokens", default="all", choices=POOL_TOKENS, help="events: average the event tokens only (no header)"
    )
    parser.add_argument(
        "--weight-field", type=int, help="weight each event by this comma-separated value of its line (-1: the last)"
    )
    parser.add_argument("--echo", action="store_true", help="run the text twice, pool the second copy")
    parser.add_argument("--suffix", help="text appended after each user's text (a summarizing prompt; --pooling last)")


def run_embed(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from .embed import Embedder, embed_dataset, embedding_settings, load_texts, save_embeddings

    saved = embedding_settings(args.model)  # what the model was exported with, if it was
    embedder = Embedder(
        args.model,
        layer_start=args.layer_start if args.layer_start is not None else saved.get("layer_start"),
        pooling=args.pooling or saved.get("pooling", "mean"),
        max_length=args.max_length or saved.get("max_length", 2048),
        dtype=args.dtype,
        pool_tokens=args.pool_tokens,
        weight_field=args.weight_field,
        echo=args.echo,
        suffix=args.suffix,
    )
    texts = load_texts(args.corpus, args.config, args.splits)
    embeddings = embed_dataset(embedder, texts, batch_size=args.batch_size)
    if PartialState().is_main_process:
        save_embeddings(args.output, texts["user_id"], embeddings, extra={"split": texts["split"]})
        print(
            f"{len(texts):,} users x {embeddings.shape[1]} dims (layers {embedder.layer_start}..."
            f"{embedder.num_layers}, {embedder.pooling} pooling, {str(embedder.dtype).replace('torch.', '')}) "
            f"-> {args.output}"
        )
    return 0


def export_arguments(parser: argparse.ArgumentParser) -> None:
    from .embed import POOLINGS

    parser.add_argument("model_dir", help="a saved model folder")
    parser.add_argument("--layer-start", type=int, help="first hidden state averaged (default: L/3)")
    parser.add_argument("--pooling", default="mean", choices=POOLINGS)
    parser.add_argument("--max-length", type=int, default=2048)


def run_export(args: argparse.Namespace) -> int:
    from .embed import export_sentence_transformer

    export_sentence_transformer(
        args.model_dir, layer_start=args.layer_start, pooling=args.pooling, max_length=args.max_length
    )
    print(f"{args.model_dir} now loads with SentenceTransformer (and still with AutoModel)")
    return 0


def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    from .evaluation import add_arguments

    add_arguments(parser)


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import run

    return run(args)


def index_arguments(parser: argparse.ArgumentParser) -> None:
    from .search import EXACT_MAX_USERS, INDEX_KINDS

    parser.add_argument("--embeddings", required=True, help="Parquet written by `llm4es embed` (user_id, embedding)")
    parser.add_argument("--output", required=True, help="index folder to write")
    parser.add_argument(
        "--labels", help="corpus folder (labels, split, schema and texts come along) or a CSV/Parquet label table"
    )
    parser.add_argument("--model", help="the model that made the embeddings (folder or Hub id), recorded for queries")
    parser.add_argument("--kind", default="auto", choices=INDEX_KINDS, help="exact inner product, HNSW, or auto")
    parser.add_argument(
        "--exact-max-users",
        type=int,
        default=EXACT_MAX_USERS,
        help=f"auto: exact up to this many users, HNSW above (default {EXACT_MAX_USERS:,})",
    )
    parser.add_argument("--push-to-hub", metavar="ORG/NAME", help="also push the folder as a Hub data set repo")
    parser.add_argument("--public", action="store_true", help="with --push-to-hub: public (default: private)")


def run_index(args: argparse.Namespace) -> int:
    from .search import build_index_from_files

    index = build_index_from_files(
        args.embeddings,
        args.output,
        labels=args.labels,
        model=args.model,
        kind=args.kind,
        exact_max_users=args.exact_max_users,
    )
    print(
        f"indexed {index.info['n_users']:,} users x {index.info['dimension']} dims ({index.info['kind']}; "
        f"labels: {', '.join(index.label_columns) or 'none'}) -> {args.output}"
    )
    if args.push_to_hub:
        from .hub import push_index

        url = push_index(args.output, args.push_to_hub, private=not args.public)
        print(f"pushed to {url} ({'public' if args.public else 'private'})")
    return 0


def search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="index folder (`llm4es index`) or Hub data set id")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--user-id", help="a user in the index (excluded from its own neighbours)")
    query.add_argument("--events", help="CSV/Parquet of new events in the index's schema (embedded with --model)")
    parser.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument("--model", help="model for --events (default: the one the index names)")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of tables")


def run_search(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .search import QueryEncoder, UserIndex, label_distribution

    index = UserIndex.load(args.index)
    if args.user_id is not None:
        results = {args.user_id: index.neighbors_of(args.user_id, args.k)}
    else:
        encoder = QueryEncoder(index, args.model)
        ids, texts = encoder.texts(args.events)
        results = dict(zip(ids, index.search(encoder.embed(texts), args.k), strict=True))
    console = Console()
    for user_id, neighbors in results.items():
        shares = {label: label_distribution(neighbors, label) for label in index.label_columns}
        if args.json:
            print(json.dumps({"query": user_id, "neighbors": neighbors.to_dicts(), "label_shares": shares}))
            continue
        table = Table(title=f"{len(neighbors)} nearest users of {user_id}")
        for column in neighbors.columns:
            table.add_column(column)
        for row in neighbors.iter_rows():
            table.add_row(*("" if value is None else str(value) for value in row))
        console.print(table)
        for label, share in shares.items():
            console.print(f"{label} among neighbours: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))
    return 0


# Commands whose options come from a dataclass + a YAML recipe (TRL's parser); they parse their own argv.
CONFIG_COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "corpus": ("build serialized + enriched corpora with a dataset card from a recipe YAML", run_corpus),
}

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
    "enrich": (
        "rewrite serialized users with an instruct LLM (in-process or an OpenAI-compatible server), cached",
        enrich_arguments,
        run_enrich,
    ),
    "embed": (
        "user embeddings: mean of hidden states of layers k..L, mean over tokens (Parquet + Dataset)",
        embed_arguments,
        run_embed,
    ),
    "evaluate": (
        "score embeddings (and baselines) on a label: 5 folds, LightGBM/logreg, report md/json/png",
        evaluate_arguments,
        run_evaluate,
    ),
    "export-st": (
        "add SentenceTransformer modules (layer averaging + pooling) to a saved model folder",
        export_arguments,
        run_export,
    ),
    "index": (
        "build a FAISS index of user embeddings (exact or HNSW) with labels and a 2-D map",
        index_arguments,
        run_index,
    ),
    "search": (
        "nearest users of a known user (--user-id) or of new events (--events FILE.csv)",
        search_arguments,
        run_search,
    ),
    "publish-corpus": (
        "push a corpus folder (both configs and its card) to the Hub, private by default",
        publish_corpus_arguments,
        run_publish_corpus,
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
    for name, (help_text, _) in CONFIG_COMMANDS.items():
        sub.add_parser(name, help=help_text + " (see `llm4es " + name + " --help`)", add_help=False)
    for name, (help_text, add_arguments, runner) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command_parser)
        command_parser.set_defaults(handler=runner)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Before torch loads its libgomp: spinning OpenMP threads slow LightGBM and torch 3-100x on busy cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CONFIG_COMMANDS:
        name = argv[0]
        return _reporting_errors(name, lambda: CONFIG_COMMANDS[name][1](argv[1:]))
    args = build_parser().parse_args(argv)
    return _reporting_errors(args.command, lambda: args.handler(args))


def _reporting_errors(name: str, run: Callable[[], int]) -> int:
    """Run a command; our errors become one line on stderr and exit code 2 (no traceback)."""
    try:
        return run()
    except Llm4esError as err:
        print(f"llm4es {name}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
