"""The README's commands, run as a user runs them.

Every line of the fenced shell blocks (and every Python block) of README.md, then of each
recipes/*/README.md, then of docs/*.md, runs in that order in one folder where nothing is built
yet (no corpus, no model: the README's first line builds them), with the smallest budgets its
command line allows (BUDGETS, appended to the line). A line that already ran, word for word (with
or without the ``.venv/bin/`` before its command), is not run twice. Lines that need the network,
a GPU or a server that runs until stopped are skipped by name, with the reason (SKIPS). The test
reads the files: when a line changes there, the test runs the new line.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_sources import SHOP_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted((ROOT / "recipes").glob("*/README.md")), *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell", "console"}

# (pattern, reason): the first pattern found in a line skips it.
SKIPS: list[tuple[str, str]] = [
    (
        r"^make (quickstart|test)\b",
        "the README's two commands: this suite is `make test`; test_quickstart.py runs the quickstart",
    ),
    (r"^make setup\b", "the set-up: this suite already runs inside it"),
    (r"\.\.\.", "an elided example line"),
    (r"^vllm\b", "needs a GPU inference server (vLLM)"),
    (r"--backend openai", "needs an OpenAI-compatible server (test_enrich.py runs it against a fake one)"),
    (r"accelerate_configs/(fsdp|zero3|ddp)\.yaml", "needs GPUs (FSDP, DeepSpeed ZeRO-3, DDP on CUDA)"),
    (r"recipes/(rosbank|gender|age|mixed)/", "needs the paper's bank data from the Hub and Llama-3.x on GPUs"),
    (r"publish-corpus|--push[-_]to[-_]hub", "needs the Hub (test_loopback_hub.py pushes to a loopback Hub)"),
    (r"\bLLM4ES_(INDEX|MODEL)=\S*/", "needs a model and an index published on the Hub"),
    (r"\"org/", "needs a model published on the Hub"),
    (r"spaces/llm4es-demo/app\.py", "a server that runs until stopped (test_space.py drives the Space)"),
    (r"outputs/quickstart/", "needs `make quickstart`'s outputs (test_quickstart.py runs the quickstart)"),
    (r"libfakeintel", "the opt-in MKL shim for AMD CPUs: a C compiler, then the whole quickstart (test_quickstart.py)"),
    (
        r"\bgemma3-270m\b",
        "the larger bundled model: minutes per run on 2 cores (test_assets.py converts it and embeds with it)",
    ),
]

# (pattern, extra arguments appended to the line): the smallest budgets each command allows.
BUDGETS: list[tuple[str, list[str]]] = [
    (r"^llm4es synthetic\b", ["--users", "40"]),
    (r"^llm4es enrich\b", ["--fraction", "0.003", "--max-new-tokens", "8", "--max-retries", "0", "--no-progress"]),
    (r"^llm4es corpus\b", ["--enrich_max_users", "1", "--max_new_tokens", "8", "--max_retries", "0"]),
    (
        r"\brecipes/sft\.py\b",
        [
            "--max_steps",
            "2",
            "--max_length",
            "64",
            "--per_device_train_batch_size",
            "2",
            "--gradient_accumulation_steps",
            "1",
            "--save_strategy",
            "no",
        ],
    ),
    (r"^llm4es embed\b", ["--max-length", "16", "--batch-size", "64"]),
    (r"^llm4es evaluate\b", ["--folds", "2"]),
    (
        r"^llm4es quickstart\b",
        ["--max-tokens", "96", "--embed-tokens", "96", "--train-steps", "2", "--batch-size", "2"]  # Rosbank header: 50
        + ["--enrich-users", "1", "--enrich-new-tokens", "8", "--embed-batch-size", "32"],
    ),
    (
        r"\brecipes/contrastive\.py\b",
        ["--max_steps", "1", "--max_users", "16", "--per_device_train_batch_size", "8", "--max_slice_tokens", "48"],
    ),
]


def shell_lines(readme: Path) -> list[str]:
    """The steps of a README in order: each command of its fenced shell blocks (continuations joined,
    comments and blanks dropped) and each fenced Python block whole, prefixed ``python -c``."""
    lines: list[str] = []
    fence: str | None = None
    pending, python = "", []
    for raw in readme.read_text(encoding="utf-8").splitlines():
        marker = raw.strip()
        if marker.startswith("```"):
            if fence == "python":
                lines.append("python -c " + shlex.quote("\n".join(python)))
                python = []
            fence = None if fence is not None else marker[3:].strip()
            continue
        if fence == "python":
            python.append(raw)
        if fence not in SHELL_FENCES:
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = " ".join(shlex.split(pending + raw, comments=True, posix=False))
        pending = ""
        if line:
            lines.append(line)
    return lines


def skip_reason(line: str) -> str | None:
    return next((reason for pattern, reason in SKIPS if re.search(pattern, line)), None)


def command_of(line: str) -> str:
    """The command a line runs, however it spells the path to it (``.venv/bin/llm4es`` or ``llm4es``)."""
    return re.sub(r"^\.venv/bin/", "", line)


def budget(line: str) -> list[str]:
    return [arg for pattern, extra in BUDGETS if re.search(pattern, command_of(line)) for arg in extra]


CASES = [
    pytest.param(readme, index, line, id=f"{readme.relative_to(ROOT)}:{index + 1}:{line[:60]}")
    for readme in READMES
    for index, line in enumerate(shell_lines(readme))
]


def write_user_files(folder: Path, home: Path) -> None:
    """What a user of the README has at hand: their own events and schema, a viewer's ratings, bank files."""
    from llm4es_hf.sources.synthetic import generate_rosbank, write_rosbank

    (folder / "my_schema.yaml").write_text(yaml.safe_dump(SHOP_SCHEMA))
    rows = "".join(f"u{i % 7},2024-01-{1 + i % 28:02d} 10:00,{'AB'[i % 2]},{i}.5,{i % 2}\n" for i in range(70))
    (folder / "events.csv").write_text("customer,ts,item,price,churn\n" + rows)
    shutil.copy(ROOT / "spaces" / "llm4es-demo" / "examples" / "viewer.csv", folder / "my_viewer.csv")
    write_rosbank(generate_rosbank(30, 20, seed=1), home / "data" / "rosbank-churn")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The user's folder: the repo's recipes and the venv, their own data files, nothing built."""
    folder = tmp_path_factory.mktemp("user")
    for name in ("recipes", "spaces", "benchmarks", "docs"):
        (folder / name).symlink_to(ROOT / name)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    (folder / "home").mkdir()
    write_user_files(folder, folder / "home")
    return folder


RAN: dict[str, str] = {}  # command (command_of) -> where it ran first


def environment(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    cache = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))  # converted bundled model, kept
    env.update(
        HOME=str(work / "home"),
        XDG_CACHE_HOME=cache,
        HF_HOME=os.environ.get("HF_HOME", str(Path(cache) / "huggingface")),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        GRADIO_ANALYTICS_ENABLED="False",
        TOKENIZERS_PARALLELISM="false",
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONUNBUFFERED="1",
    )
    return env


def check_outputs(line: str, work: Path) -> None:
    """What a line must leave behind beyond exit code 0."""
    run = re.search(r"^llm4es quickstart\b.*--output-dir (\S+)", line)
    if run:
        for name in ("quickstart.json", "model/README.md", "index/index.json", "evaluation/report.md"):
            assert (work / run.group(1) / name).exists(), f"{line}: no {name} in the run folder"
    recipe = re.search(r"recipes/sft\.py --config (\S+)", line)
    if recipe:
        output = work / yaml.safe_load((work / recipe.group(1)).read_text())["output_dir"]
        assert (output / "model.safetensors").exists(), f"{line}: no weights in {output}"
        assert (output / "README.md").exists(), f"{line}: no model card in {output}"


@pytest.mark.slow
@pytest.mark.parametrize(("readme", "index", "line"), CASES)
def test_readme_line(readme: Path, index: int, line: str, work: Path) -> None:
    command_line = command_of(line)
    reason = skip_reason(line) or (f"ran already as {RAN[command_line]}" if command_line in RAN else None)
    if reason:
        pytest.skip(reason)
    RAN[command_line] = f"{readme.relative_to(ROOT)} line {index + 1}"
    env = environment(work)
    command = [env["HOME"] + arg[1:] if arg.startswith("~/") else arg for arg in shlex.split(line)] + budget(line)
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (
        f"{readme.relative_to(ROOT)} line {index + 1} failed ({result.returncode}): {shlex.join(command)}\n"
        f"--- stderr ---\n{result.stderr[-4000:]}\n--- stdout ---\n{result.stdout[-2000:]}"
    )
    check_outputs(line, work)


def test_readmes_have_the_headline_commands() -> None:
    """The parser sees the README's launch line, and every line is either run or skipped for a named reason."""
    lines = [line for readme in READMES for line in shell_lines(readme)]
    assert "accelerate launch recipes/sft.py --config recipes/movielens/sft_full.yaml" in lines
    assert any(line.startswith("llm4es embed ") for line in lines)
    assert all("\\" not in line and not line.startswith("#") for line in lines)
    assert any(skip_reason(line) for line in lines) and any(not skip_reason(line) for line in lines)
