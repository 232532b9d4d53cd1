"""Shards on disk, one way for every stage: names, atomic writes, manifests, claims and resume.

- names: ``<split>-0000k-of-0000N.parquet`` (``shard_name``), the layout of the corpus, of sharded
  embeddings and of the Hub's split files (``datasets.push_to_hub``);
- atomic writes: through a temporary name beside the file, flushed to disk, then renamed
  (``write_atomically``), so a reader, or a rerun after ``kill -9``, sees the whole file or none;
- claims: the first of several processes to hard-link its manifest into place owns the run
  (``claim``); the others check they run the same thing;
- resume: a sharded embeddings folder's ``manifest.json`` plans its shards; a rerun of the same run
  finds the finished ones (``start_shard_folder``, ``finished_shards``) and refuses another run's folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import Llm4esError

SHARDS_MANIFEST = "manifest.json"
TEMPORARY_SUFFIX = ".tmp"


def shard_stem(index: int, count: int) -> str:
    """``0000k-of-0000N``: shard ``index`` of ``count``."""
    return f"{index:05d}-of-{count:05d}"


def shard_name(split: str, index: int, count: int) -> str:
    """``<split>-0000k-of-0000N.parquet``, the shards' naming (and the Hub's split pattern)."""
    return f"{split}-{shard_stem(index, count)}.parquet"


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through a temporary name beside ``path``, flush it to disk, then rename: a reader, or a
    rerun after ``kill -9``, sees the whole file or no file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    try:
        write(temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    """``write_atomically`` for a text file (a manifest, a shard's stats)."""
    return write_atomically(path, lambda temporary: temporary.write_text(text))


def remove_temporary_files(folder: Path) -> list[Path]:
    """Delete what killed writers left (``.<name>.<pid>.tmp``); the files removed."""
    stale = sorted(folder.glob(f".*{TEMPORARY_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def claim(path: Path, text: str) -> bool:
    """Put ``text`` at ``path`` unless a file is there already (another process claimed the run first):
    True when this process wrote it. The file appears whole, by a hard link of a flushed temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.claim{TEMPORARY_SUFFIX}")
    try:
        write_text_atomically(temporary, text)
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


# ----- sharded embeddings: the manifest and the resume -----


def read_shards_manifest(folder: Path) -> dict[str, Any] | None:
    """The ``manifest.json`` of a sharded embeddings folder, None when there is none."""
    path = folder / SHARDS_MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise Llm4esError(f"not valid JSON: {err}", file=path) from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise Llm4esError("not a sharded embeddings manifest (no shards list)", file=path, key="shards")
    return manifest


def write_shards_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(folder / SHARDS_MANIFEST, json.dumps(manifest, indent=2))


def finished_shards(folder: Path, shards: Sequence[dict[str, Any]]) -> set[str]:
    """Names of the manifest's shards already written (a shard exists whole or not at all). Fails on
    a Parquet file the manifest does not list, or a shard whose row count is not the planned one."""
    planned = {shard["name"]: shard for shard in shards}
    done = set()
    for path in sorted(folder.glob("*.parquet")):
        shard = planned.get(path.name)
        if shard is None:
            raise Llm4esError(
                f"a Parquet file that {SHARDS_MANIFEST} does not list: not a shard of this run; move it elsewhere",
                file=path,
            )
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError) as err:
            raise Llm4esError(f"cannot read as Parquet: {err}", file=path) from err
        if rows != shard["stop"] - shard["start"]:
            raise Llm4esError(
                f"{rows} rows, but {SHARDS_MANIFEST} plans {shard['stop'] - shard['start']} for this shard", file=path
            )
        done.add(path.name)
    return done


def manifest_differences(old: Any, new: Any, where: str = "") -> list[str]:
    """How two runs' manifests differ, key by key, in words ([] when they are the same run)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            difference
            for key in dict.fromkeys([*old, *new])
            for difference in manifest_differences(old.get(key), new.get(key), f"{where}.{key}" if where else key)
        ]
    if old == new:
        return []
    if where == "shards":
        return [f"shards: {len(old or [])} planned there, {len(new or [])} now (--num-shards or --splits changed?)"]
    return [f"{where}: {_short(old)} there, {_short(new)} now"]


def _short(value: Any, width: int = 100) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def start_shard_folder(folder: Path, manifest: dict[str, Any]) -> set[str]:
    """Start a sharded output folder, or resume it if its manifest is this run's: (main process only)
    writes the manifest into a new or empty folder, refuses a folder of another run or of other
    files, removes what killed writers left; the shards already finished."""
    if folder.exists() and not folder.is_dir():
        raise Llm4esError("exists and is not a folder; give a folder (or X.parquet for one file)", file=folder)
    if read_shards_manifest(folder) is None:
        present = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
        if present:
            raise Llm4esError(
                f"the output folder holds {len(present)} files ({', '.join(present[:3])}"
                f"{', ...' if len(present) > 3 else ''}) but no {SHARDS_MANIFEST}: "
                "not a folder this command started; give a new or empty --output folder",
                file=folder,
            )
        write_shards_manifest(folder, manifest)
    finished = check_shard_folder(folder, manifest)
    remove_temporary_files(folder)
    return finished


def check_shard_folder(folder: Path, manifest: dict[str, Any]) -> set[str]:
    """The finished shards of a folder whose manifest is this run's; refuses to mix runs."""
    old = read_shards_manifest(folder)
    if old is None:
        raise Llm4esError(f"no {SHARDS_MANIFEST} (the main process writes it first)", file=folder)
    differences = manifest_differences(old, manifest)
    if differences:
        raise Llm4esError(
            "the folder holds shards of another run (" + "; ".join(differences) + "). To resume it, rerun the "
            "command that started it; to start over, delete the folder or give another --output",
            file=folder / SHARDS_MANIFEST,
        )
    return finished_shards(folder, old["shards"])
