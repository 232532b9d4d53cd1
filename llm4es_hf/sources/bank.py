"""Bank transaction data sets of the paper (Rosbank churn, Gender, Age group) in their raw
Hub formats, from the Hub id when reachable or from a local folder with the same files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import Llm4esError
from ..schema import EventSchema
from .base import read_table, require_rows


@dataclass(frozen=True)
class BankFiles:
    """Where a bank data set lives and which of its files we read."""

    repo_id: str
    events: tuple[str, ...]
    optional_events: tuple[str, ...] = ()
    labels: str | None = None


BANK_DATASETS = {
    "rosbank": BankFiles("dllllb/rosbank-churn", events=("train.csv",), optional_events=("test.csv",)),
    "gender": BankFiles("dllllb/transactions-gender", events=("transactions.csv",), labels="gender_train.csv"),
    "age": BankFiles(
        "dllllb/age-group-prediction",
        events=("transactions_train.csv",),
        optional_events=("transactions_test.csv",),
        labels="train_target.csv",
    ),
}


def find_file(folder: Path, name: str) -> Path | None:
    """The file under either name: plain or gzipped (the Hub stores ``.csv.gz``)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def dataset_folder(name: str, input_dir: str | Path | None) -> Path:
    """A local folder with the raw files: the one given, or a Hub snapshot of the data set."""
    files = BANK_DATASETS[name]
    if input_dir is not None:
        folder = Path(input_dir)
        if not folder.is_dir():
            raise Llm4esError("input folder not found", file=folder)
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(files.repo_id, repo_type="dataset"))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        wanted = ", ".join(files.events + ((files.labels,) if files.labels else ()))
        raise Llm4esError(
            f"cannot reach the Hub data set {files.repo_id} ({type(err).__name__}); download it where the Hub "
            f"is reachable and pass --input DIR with its files ({wanted}, plain or .gz)"
        ) from err


def bank_files(name: str, input_dir: str | Path | None) -> tuple[Path, list[Path], Path | None]:
    """The folder of a bank data set, its event files (in reading order) and its label file."""
    files = BANK_DATASETS[name]
    folder = dataset_folder(name, input_dir)
    events = []
    for file_name in files.events + files.optional_events:
        path = find_file(folder, file_name)
        if path is None and file_name in files.events:
            raise Llm4esError(f"missing {file_name} (or {file_name}.gz)", file=folder)
        if path is not None:
            events.append(path)
    labels = find_file(folder, files.labels) if files.labels else None
    if files.labels and labels is None:
        raise Llm4esError(f"missing label file {files.labels}", file=folder)
    return folder, events, labels


def read_bank(name: str, schema: EventSchema, input_dir: str | Path | None) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Raw events and labels of a bank data set. The schema's ``{input}`` code files
    (the data set's own description files) resolve against the folder read."""
    folder, event_paths, label_path = bank_files(name, input_dir)
    events = pl.concat([read_table(p, encoding=schema.encoding) for p in event_paths], how="diagonal_relaxed")
    require_rows(events, event_paths)
    labels = read_table(label_path, encoding=schema.encoding) if label_path is not None else None
    schema.input_dir = folder
    return events, labels
