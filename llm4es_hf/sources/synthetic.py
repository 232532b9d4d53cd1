"""Synthetic bank transactions in Rosbank's raw file format, with a planted churn signal.

Churners (``target_flag`` = 1) buy more in a few merchant categories, move money out
more (C2C_OUT, ATM) and spend less as the months go by. Any size, seeded.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl

ROSBANK_COLUMNS = [
    "PERIOD",
    "cl_id",
    "MCC",
    "channel_type",
    "currency",
    "TRDATETIME",
    "amount",
    "trx_category",
    "target_flag",
    "target_sum",
]
MCCS = np.array([5411, 5814, 5912, 4829, 6011, 5541, 5999, 5812, 4814, 5691, 5331, 7832, 5945, 4121, 6012])
# Merchant-category preferences: loyal users favour groceries/restaurants, churners transfers/cash.
LOYAL_MCC = np.array([30, 12, 8, 3, 4, 8, 6, 10, 5, 4, 4, 2, 2, 1, 1], dtype=float)
CHURN_MCC = np.array([18, 8, 6, 14, 12, 6, 6, 5, 5, 3, 4, 1, 2, 2, 8], dtype=float)
CATEGORIES = np.array(["POS", "C2C_OUT", "WD_ATM_ROS", "DEPOSIT", "C2C_IN", "WD_ATM_PARTNER", "BACK_TRX", "CAT"])
LOYAL_CAT = np.array([70, 5, 6, 8, 6, 2, 2, 1], dtype=float)
CHURN_CAT = np.array([55, 14, 12, 5, 6, 5, 2, 1], dtype=float)
START_DAY = 17075  # 2016-10-01
SPAN_DAYS = 455


def generate_rosbank(
    n_users: int = 1000, events_per_user: float = 50.0, *, seed: int = 42, churn_rate: float = 0.45
) -> pl.DataFrame:
    """Raw Rosbank-format rows (all columns as in the Hub's train.csv, as strings)."""
    rng = np.random.default_rng(seed)
    churn = rng.random(n_users) < churn_rate
    counts = np.maximum(1, rng.poisson(events_per_user, n_users))
    user = np.repeat(np.arange(n_users), counts)
    n = len(user)
    is_churn = churn[user]

    mcc = _draw(rng, MCCS, is_churn, LOYAL_MCC, CHURN_MCC)
    category = _draw(rng, CATEGORIES, is_churn, LOYAL_CAT, CHURN_CAT)

    # Time: loyal users spread evenly, churners fade out (mass shifted to early months).
    u = rng.random(n)
    position = np.where(is_churn, u**1.6, u)
    day = START_DAY + np.floor(position * SPAN_DAYS).astype(np.int64)
    seconds = np.where(rng.random(n) < 0.6, 0, rng.integers(0, 86400, n))
    # Spending trend: churners' amounts shrink over time, loyal users' grow a little.
    trend = np.where(is_churn, 1.4 - 0.9 * position, 0.9 + 0.3 * position)
    amount = np.round(np.exp(rng.normal(6.5, 1.2, n)) * trend, 2)

    timestamps = ((day * 86400 + seconds) * 1000).astype("datetime64[ms]")
    frame = pl.DataFrame({"ts": timestamps, "user": user, "mcc": mcc, "amount": amount, "cat": category})
    channel = np.where(rng.random(n) < 0.8, "type1", np.where(rng.random(n) < 0.5, "type2", ""))
    frame = frame.with_columns(
        pl.col("ts").dt.strftime("%d/%m/%Y").str.replace(r"^\d\d", "01").alias("PERIOD"),
        (pl.col("user") + 1).cast(pl.Utf8).alias("cl_id"),
        pl.col("mcc").cast(pl.Utf8).alias("MCC"),
        pl.Series("channel_type", channel),
        pl.lit("810").alias("currency"),
        pl.col("ts").dt.strftime("%d%b%y:%H:%M:%S").str.to_uppercase().alias("TRDATETIME"),
        pl.col("amount").cast(pl.Utf8),
        pl.col("cat").alias("trx_category"),
        pl.Series("target_flag", is_churn.astype(int).astype(str)),
        pl.Series("target_sum", np.where(is_churn, "0", np.round(amount * 3, 2).astype(str))),
    )
    # Raw files are ordered by client, not by time: shuffle within the file.
    order = rng.permutation(n)
    return frame.select(ROSBANK_COLUMNS)[order]


def _draw(
    rng: np.random.Generator, values: np.ndarray, is_churn: np.ndarray, loyal: np.ndarray, churn: np.ndarray
) -> np.ndarray:
    """One draw per event from the loyal or the churner distribution, vectorized."""
    out = np.empty(len(is_churn), dtype=values.dtype)
    out[~is_churn] = rng.choice(values, size=int((~is_churn).sum()), p=loyal / loyal.sum())
    out[is_churn] = rng.choice(values, size=int(is_churn.sum()), p=churn / churn.sum())
    return out


def write_rosbank(frame: pl.DataFrame, folder: str | Path) -> Path:
    """Write ``train.csv.gz`` as on the Hub (comma separated, header, gzipped)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.csv.gz"
    with gzip.open(path, "wb", compresslevel=1) as handle:
        frame.write_csv(handle, null_value="")
    return path
