"""`llm4es synthetic`: synthetic bank transactions in Rosbank's raw format, with a planted churn signal."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import parse_config
from ..errors import Llm4esError
from ..sources.synthetic import generate_rosbank, write_rosbank


@dataclass
class SyntheticConfig:
    """Options of `llm4es synthetic`."""

    output: str | None = field(default=None, metadata={"help": "folder to write train.csv.gz into"})
    users: int = field(default=1000, metadata={"help": "number of clients"})
    events_per_user: float = field(default=50.0, metadata={"help": "mean transactions per client"})
    seed: int = field(default=42, metadata={"help": "random seed"})


def main(argv: list[str]) -> int:
    (config,) = parse_config([SyntheticConfig], argv, prog="llm4es synthetic", description=__doc__)
    if not config.output:
        raise Llm4esError("--output is required (the folder to write)", key="output")
    frame = generate_rosbank(config.users, config.events_per_user, seed=config.seed)
    path = write_rosbank(frame, config.output)
    print(f"wrote {len(frame):,} transactions of {config.users:,} users to {path}")
    return 0
