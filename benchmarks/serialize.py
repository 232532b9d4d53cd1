"""Serialization speed: our vectorized serializer against the authors' approach (a pandas
frame of ptls records, ``DataFrame.apply(axis=1)`` per user, a Python ``preprocess`` call per
value, as in tsebaka/LLM4ES ``converters.py``) and against our own plain-Python row-wise
reference; identical text asserted. Synthetic Rosbank-format data. Then the peak RSS when
serializing 10M events (measured in a child process).

    python benchmarks/serialize.py [--users 10000 --events-per-user 100 --big-users 100000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mb, report, timed  # noqa: E402

from llm4es_hf.hardware import describe  # noqa: E402
from llm4es_hf.serialize import Serializer, serialize_users_rowwise  # noqa: E402
from llm4es_hf.sources import load_source  # noqa: E402

BIG_CHILD = """
import sys, datasets
from llm4es_hf.schema import load_schema
from llm4es_hf.serialize import Serializer
users = datasets.load_from_disk(sys.argv[1])
schema = load_schema(sys.argv[2])
out = Serializer(schema)(users, batch_size=1000)
out.save_to_disk(sys.argv[3])
print(sum(out['n_events_kept']))
"""


def authors_style(users, schema) -> list[str]:
    """The authors' converter, restated for this schema: per user, per event, per feature."""
    import numpy as np
    import pandas as pd

    codes = {spec.name: schema.code_map(spec) for spec in schema.fields if spec.kind == "category"}
    features = [spec.name for spec in schema.fields]
    header = "|".join(spec.header for spec in schema.fields)

    def preprocess(value, feature):
        if feature == "event_time":
            return str(np.int32(np.floor(value / 86400.0)))
        if feature == "amount":
            return str(np.int32(np.sign(value) * np.log1p(np.abs(value))))
        if feature == "MCC":
            return codes["MCC"].get(value, "Unknown MCC") if value is not None else "Unknown MCC"
        if feature == "channel_type":
            return "unknown channel" if value is None else str(value)
        if feature == "trx_category":
            return codes["trx_category"].get(value, f"other ({value})")
        return str(value)

    def convert(transaction):
        lines = [header] + [
            ", ".join(preprocess(transaction[feature][i], feature) for feature in features)
            for i in range(len(transaction[features[0]]))
        ]
        return "\n".join(lines)

    return pd.DataFrame(users).apply(convert, axis=1).tolist()


def build_big(folder: Path, users: int, events_per_user: int, shards: int) -> tuple[Path, int]:
    """Generate the large users table shard by shard (bounded memory) and save it."""
    import datasets

    parts, schema = [], None
    for shard in range(shards):
        source = load_source(
            "synthetic", synthetic_users=users // shards, synthetic_events_per_user=events_per_user, seed=1000 + shard
        )
        part = source.users.map(lambda row, s=shard: {"user_id": f"{s}-{row['user_id']}"})
        part.save_to_disk(str(folder / f"shard{shard}"))
        parts.append(datasets.load_from_disk(str(folder / f"shard{shard}")))
        schema = source.schema
    big = datasets.concatenate_datasets(parts)
    big.save_to_disk(str(folder / "users"))
    from llm4es_hf.schema import save_schema

    save_schema(schema, folder / "schema.yaml")
    return folder / "users", int(sum(big["n_events"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events-per-user", type=int, default=100)
    parser.add_argument("--big-users", type=int, default=100_000, help="users of the 10M-event memory run (0: skip)")
    args = parser.parse_args()
    print(f"hardware: {describe()}; precision: no model (text formatting only)")

    source = load_source("synthetic", synthetic_users=args.users, synthetic_events_per_user=args.events_per_user)
    users, schema = source.users, source.schema
    n_events = int(sum(users["n_events"]))
    serializer = Serializer(schema)
    ours_s, ours = timed(lambda: serializer(users, desc="ours")["text"], repeat=2)
    rows = users.to_list()
    records = {name: [np.asarray(row[name]) for row in rows] for name in users.column_names if name != "n_events"}
    base_s, base = timed(lambda: authors_style(records, schema))
    plain_s, plain = timed(lambda: serialize_users_rowwise(rows, schema))
    assert ours == base == plain, "texts differ"
    print(f"{n_events:,} events of {len(users):,} users, texts identical:")
    for name, seconds in (("ours (vectorized)", ours_s), ("authors' approach", base_s), ("plain row-wise", plain_s)):
        print(f"  {name:20s} {seconds:6.2f} s  {n_events / seconds:12,.0f} events/s")

    big = {}
    if args.big_users:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            path, big_events = build_big(folder, args.big_users, args.events_per_user, shards=10)
            big_s, done = timed(
                lambda: subprocess.run(
                    [sys.executable, "-c", BIG_CHILD, str(path), str(folder / "schema.yaml"), str(folder / "out")],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            )
            rss = peak_rss_mb(children=True)
            big = {"big_events": big_events, "big_seconds": round(big_s, 1), "big_peak_rss_mb": round(rss)}
            print(f"{big_events:,} events: {big_s:.1f} s in a child process (with start-up), peak RSS {rss:,.0f} MiB")

    report(
        benchmark="serialize",
        unit="events/s",
        events=n_events,
        ours=round(n_events / ours_s),
        baseline=round(n_events / base_s),
        ratio=round(base_s / ours_s, 1),
        plain_rowwise=round(n_events / plain_s),
        ratio_plain_rowwise=round(plain_s / ours_s, 1),
        **big,
    )


if __name__ == "__main__":
    main()
