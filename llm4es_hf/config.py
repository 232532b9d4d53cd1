"""Dataclass configs parsed like TRL scripts: dataclass defaults < YAML recipe < command line."""

from __future__ import annotations

import sys
from argparse import ArgumentDefaultsHelpFormatter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from .errors import Llm4esError


class HelpFormatter(ArgumentDefaultsHelpFormatter):
    """``--help`` shows each default once: a help text that already says ``(default: ...)`` (e.g.
    "the model's export, else 2048" for a ``None`` field) gets no second, literal one."""

    def _get_help_string(self, action):  # noqa: ANN001, ANN202
        help_text = action.help or ""
        return help_text if "(default:" in help_text else super()._get_help_string(action)


def parse_config(
    dataclass_types: Sequence[type],
    args: Sequence[str] | None,
    *,
    prog: str,
    description: str = "",
    positional: Sequence[str] = (),
) -> tuple[Any, ...]:
    """Parse ``--config FILE`` (alias ``--recipe``) plus command-line overrides with TRL's TrlParser.

    ``positional`` names the fields that leading bare arguments fill, in order (``llm4es
    export-st FOLDER``). Unknown YAML keys and missing files become an Llm4esError naming the
    key or file.
    """
    args = ["--config" if a == "--recipe" else a for a in (sys.argv[1:] if args is None else args)]
    leading = []
    while args and len(leading) // 2 < len(positional) and not args[0].startswith("-"):
        leading += [f"--{positional[len(leading) // 2]}", args.pop(0)]
    args = leading + args
    if "--config" in args:
        index = args.index("--config")
        if index + 1 >= len(args):
            raise Llm4esError("--config needs a YAML file", key="config")
        path = Path(args[index + 1])
        if not path.exists():
            raise Llm4esError("recipe file not found", file=path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise Llm4esError(f"invalid YAML: {err}", file=path) from err
        if not isinstance(data, dict):
            raise Llm4esError("a recipe must be a YAML mapping of keys to values", file=path)
        known = {name for cls in dataclass_types for name in cls.__dataclass_fields__} | {"env"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise Llm4esError(f"unknown key(s) {unknown}; see `{prog} --help` for the keys", file=path, key=unknown[0])
    parser = TrlParser(list(dataclass_types), prog=prog, description=description, formatter_class=HelpFormatter)
    try:
        return parser.parse_args_and_config(args)
    except ValueError as err:
        raise Llm4esError(str(err)) from err


def load_recipe(dataclass_types: Sequence[type], recipe: str | Path | None = None, **overrides: Any) -> tuple[Any, ...]:
    """The dataclasses of a recipe YAML with ``overrides`` on top (the Python way to say
    ``--config recipe.yaml --key value``); unknown keys are errors, as on the command line."""
    data: dict[str, Any] = {}
    if recipe is not None:
        path = Path(recipe)
        if not path.exists():
            raise Llm4esError("recipe file not found", file=path)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data.update(overrides)
    known = {name for cls in dataclass_types for name in cls.__dataclass_fields__}
    unknown = sorted(set(data) - known)
    if unknown:
        raise Llm4esError(f"unknown key(s) {unknown}", file=recipe, key=unknown[0])
    try:
        return TrlParser(list(dataclass_types)).parse_dict(data)
    except ValueError as err:
        raise Llm4esError(str(err), file=recipe) from err
