"""EventSchema: the single YAML description of an event data set.

One schema per data set (the built-in ones ship as ``llm4es_hf/schemas/<name>.yaml`` and load
by name) says which column is the user id, which is the event time and how to parse it, how each
field is rendered for the LLM (its header and formatter, code -> description maps), which columns
are labels and which must never be published.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import Llm4esError

BUILTIN_SCHEMAS = importlib.resources.files("llm4es_hf") / "schemas"

FIELD_KINDS = ("category", "number", "date", "text")
NUMBER_FORMATS = ("round", "int", "log_amount")
DATE_FORMATS = ("iso_date", "iso_datetime", "days")
TIME_PARSES = ("unix_seconds", "unix_days", "day_time", "strptime")
LABEL_TASKS = ("binary", "multiclass")
POLICIES = {"bad_rows": ("error", "drop"), "duplicates": ("keep", "drop")}


@dataclass
class TimeSpec:
    """The event time column and how to parse raw values into seconds since epoch.

    parse: ``unix_seconds`` / ``unix_days`` (numbers), ``day_time`` ("<day> HH:MM:SS",
    a day index plus a clock time) or ``strptime`` with ``format`` (e.g. "%d%b%y:%H:%M:%S").
    """

    column: str
    parse: str = "unix_seconds"
    format: str | None = None


@dataclass
class FieldSpec:
    """One event field as the LLM sees it."""

    name: str
    kind: str
    header: str
    column: str | None = None
    format: str | None = None
    decimals: int = 2
    codes: dict[str, str] | None = None
    codes_file: str | None = None
    codes_from: str | None = None
    codes_columns: list[str] | None = None
    unknown: str = "Unknown ({code})"
    missing: str = "unknown"
    in_text: bool = True  # false: read and kept for the baselines, left out of the LLM's text

    @property
    def source_column(self) -> str:
        return self.column or self.name


@dataclass
class LabelSpec:
    """A user-level target."""

    name: str
    task: str
    column: str | None = None
    positive: str | None = None

    @property
    def source_column(self) -> str:
        return self.column or self.name


@dataclass
class DomainWords:
    """Words that let prompts and cards speak about any domain (banking, ratings, ...)."""

    event: str = "event"
    events: str = "events"
    user: str = "user"
    description: str = "a sequence of timestamped events"


@dataclass
class EventSchema:
    """A data set's description; see the module docstring."""

    name: str
    user_id: str
    time: TimeSpec
    fields: list[FieldSpec]
    labels: list[LabelSpec] = field(default_factory=list)
    sensitive: list[str] = field(default_factory=list)
    group_by: str | None = None
    bad_rows: str = "error"
    duplicates: str = "keep"
    encoding: str = "utf-8"
    domain: DomainWords = field(default_factory=DomainWords)
    license: str = "unknown"
    path: Path | None = None
    input_dir: Path | None = None

    @property
    def text_fields(self) -> list[FieldSpec]:
        """The fields the LLM sees, in order (``in_text``); every field is read and kept."""
        return [f for f in self.fields if f.in_text]

    @property
    def headers(self) -> list[str]:
        return [f.header for f in self.text_fields]

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise Llm4esError(f"schema {self.name!r} has no field {name!r}", key="fields")

    def label(self, name: str) -> LabelSpec:
        for spec in self.labels:
            if spec.name == name:
                return spec
        known = [label.name for label in self.labels]
        raise Llm4esError(f"schema {self.name!r} has no label {name!r}; labels: {known}", key="labels")

    def code_map(self, spec: FieldSpec) -> dict[str, str]:
        """The code -> description map of a category field.

        Sources are merged in this order, later ones winning: ``codes_file``,
        ``codes_from`` (a package such as iso18245), inline ``codes``. An empty map
        means the raw values are shown as they are.
        """
        mapping: dict[str, str] = {}
        if spec.codes_file:
            mapping.update(read_codes_file(self._relative(spec.codes_file), spec.codes_columns))
        if spec.codes_from:
            mapping.update(package_codes(spec.codes_from))
        if spec.codes:
            mapping.update({str(k): str(v) for k, v in spec.codes.items()})
        return mapping

    def _relative(self, name: str) -> Path:
        """Resolve a file named in the schema: ``{input}`` is the data folder being read,
        other relative paths are relative to the schema file."""
        if "{input}" in name:
            if self.input_dir is None:
                raise Llm4esError(f"{name!r} refers to the input folder, but none was given", key="codes_file")
            return Path(name.replace("{input}", str(self.input_dir)))
        path = Path(name)
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return path


def read_codes_file(path: Path, columns: list[str] | None = None) -> dict[str, str]:
    """Read a code -> description CSV (``,`` ``;`` or tab separated, header line first).

    ``columns`` names the code and the description column; by default the first two.
    """
    if not path.exists():
        raise Llm4esError("code description file not found", file=path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise Llm4esError(f"not valid UTF-8 at byte {err.start}", file=path) from err
    lines = text.splitlines()
    if not lines:
        raise Llm4esError("empty code description file", file=path)
    separator = max(",;\t", key=lines[0].count)
    rows = list(csv.reader(lines, delimiter=separator))
    header = [name.strip() for name in rows[0]]
    if columns is None:
        positions = (0, 1)
    else:
        for name in columns:
            if name not in header:
                raise Llm4esError(f"no such column; the file has {header}", file=path, column=name)
        positions = (header.index(columns[0]), header.index(columns[1]))
    if len(header) < 2:
        raise Llm4esError("expected a header and two columns (code, description)", file=path, row=1)
    out = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) <= max(positions):
            raise Llm4esError("expected a code and a description", file=path, row=line_no)
        out[row[positions[0]].strip()] = row[positions[1]].strip()
    return out


@functools.cache
def package_codes(name: str) -> dict[str, str]:
    """The code -> description map of a package (``codes_from``): iso18245 merchant category codes."""
    if name == "iso18245":
        import iso18245

        codes = {}
        for mcc in iso18245.get_all_mccs():
            description = mcc.iso_description or mcc.usda_description or mcc.stripe_description
            if description:
                codes[mcc.mcc] = description
                codes[str(int(mcc.mcc))] = description
        return codes
    raise Llm4esError(f"unknown codes_from {name!r}; known: ['iso18245']", key="codes_from")


def _build(cls: type, data: Any, where: str) -> Any:
    """Build a dataclass from a mapping, failing on unknown or missing keys."""
    if not isinstance(data, dict):
        raise Llm4esError(f"expected a mapping, got {type(data).__name__}", key=where)
    names = {f.name for f in fields(cls)} - {"path", "input_dir"}
    unknown = sorted(set(data) - names)
    if unknown:
        raise Llm4esError(f"unknown key(s) {unknown}; allowed: {sorted(names)}", key=f"{where}.{unknown[0]}")
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise Llm4esError(f"missing required key {missing[0]!r}", key=f"{where}.{missing[0]}")
    return cls(**data)


def _check_choice(value: str | None, allowed: tuple[str, ...], key: str) -> None:
    if value is not None and value not in allowed:
        raise Llm4esError(f"{value!r} is not one of {list(allowed)}", key=key)


def schema_from_dict(data: dict[str, Any], path: Path | None = None) -> EventSchema:
    """Validate a parsed YAML mapping and build the schema; errors name the offending key."""
    data = dict(data)
    for key, cls in (("time", TimeSpec), ("domain", DomainWords)):
        if key in data:
            data[key] = _build(cls, data[key], key)
    if not isinstance(data.get("fields", []), list) or not data.get("fields"):
        raise Llm4esError("must be a non-empty list of fields", key="fields")
    data["fields"] = [_build(FieldSpec, f, f"fields[{i}]") for i, f in enumerate(data["fields"])]
    data["labels"] = [_build(LabelSpec, item, f"labels[{i}]") for i, item in enumerate(data.get("labels") or [])]
    schema = _build(EventSchema, data, "schema")
    schema.path = path
    _check_choice(schema.time.parse, TIME_PARSES, "time.parse")
    if schema.time.parse == "strptime" and not schema.time.format:
        raise Llm4esError("parse 'strptime' needs a format such as '%d%b%y:%H:%M:%S'", key="time.format")
    for key, allowed in POLICIES.items():
        _check_choice(getattr(schema, key), allowed, key)
    names = set()
    for i, spec in enumerate(schema.fields):
        where = f"fields[{i}]"
        _check_choice(spec.kind, FIELD_KINDS, f"{where}.kind")
        if spec.name in names:
            raise Llm4esError(f"duplicate field name {spec.name!r}", key=f"{where}.name")
        names.add(spec.name)
        if not isinstance(spec.in_text, bool):
            raise Llm4esError(f"in_text must be true or false, got {spec.in_text!r}", key=f"{where}.in_text")
        if "|" in spec.header or "\n" in spec.header:
            raise Llm4esError("a header may not contain '|' or a newline", key=f"{where}.header")
        if spec.kind == "number":
            _check_choice(spec.format or "round", NUMBER_FORMATS, f"{where}.format")
        if spec.kind == "date":
            _check_choice(spec.format or "iso_date", DATE_FORMATS, f"{where}.format")
        if spec.kind != "category" and (spec.codes or spec.codes_file or spec.codes_from):
            raise Llm4esError("code maps are only for kind 'category'", key=f"{where}.codes")
        if spec.codes_columns is not None and len(spec.codes_columns) != 2:
            raise Llm4esError("give two columns: [code, description]", key=f"{where}.codes_columns")
        if spec.codes_file and "{input}" not in spec.codes_file and not schema._relative(spec.codes_file).exists():
            raise Llm4esError(f"code file {spec.codes_file!r} not found", key=f"{where}.codes_file")
    if not schema.text_fields:
        raise Llm4esError("every field has in_text: false; the text would be empty", key="fields")
    for i, spec in enumerate(schema.fields):
        if spec.in_text and spec.source_column in schema.sensitive:
            raise Llm4esError(
                f"column {spec.source_column!r} is marked sensitive: it may not be in the text (set in_text: false, "
                "or drop the field)",
                key=f"fields[{i}]",
            )
    if "event_time" in names - {f.name for f in schema.fields if f.kind == "date"}:
        raise Llm4esError("the field 'event_time' must have kind 'date'", key="fields")
    for i, label in enumerate(schema.labels):
        _check_choice(label.task, LABEL_TASKS, f"labels[{i}].task")
    if schema.group_by is not None and schema.group_by not in names:
        raise Llm4esError(f"group_by names no field: {schema.group_by!r}", key="group_by")
    return schema


def builtin_schemas() -> list[str]:
    """Names of the schemas shipped in the package (``llm4es_hf/schemas/<name>.yaml``)."""
    return sorted(Path(entry.name).stem for entry in BUILTIN_SCHEMAS.iterdir() if entry.name.endswith(".yaml"))


def schema_path(name_or_path: str | Path) -> Path:
    """The YAML file of a schema: a path as given, or a built-in name (``movielens``, ``rosbank``...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix in {".yaml", ".yml"} or len(path.parts) > 1 or path.is_dir():
        raise Llm4esError("schema file not found", file=path)
    builtin = BUILTIN_SCHEMAS / f"{name_or_path}.yaml"
    if builtin.is_file():
        return Path(str(builtin))
    raise Llm4esError(f"no built-in schema {str(name_or_path)!r}; built-in: {builtin_schemas()} (or pass a YAML file)")


def load_schema(path: str | Path) -> EventSchema:
    """Load and validate a schema: a YAML file, or the name of a built-in schema."""
    path = schema_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise Llm4esError(f"invalid YAML: {err}", file=path) from err
    try:
        return schema_from_dict(data or {}, path=path)
    except Llm4esError as err:
        raise Llm4esError(err.message, file=path, key=err.key) from err


def schema_to_dict(schema: EventSchema, *, inline_codes: bool = True) -> dict[str, Any]:
    """A plain mapping of the schema; with ``inline_codes`` every code map is written inline,
    so the saved schema describes the data on its own (no file or package lookups)."""
    data = asdict(schema)
    data.pop("path", None)
    data.pop("input_dir", None)
    for spec, out in zip(schema.fields, data["fields"], strict=False):
        if inline_codes and spec.kind == "category":
            codes = schema.code_map(spec)
            out.update(codes=codes or None, codes_file=None, codes_from=None, codes_columns=None)
        if out.get("in_text") is True:
            del out["in_text"]
        for key in [k for k, v in out.items() if v is None]:
            del out[key]
    for out in data["labels"]:
        for key in [k for k, v in out.items() if v is None]:
            del out[key]
    return data


def save_schema(schema: EventSchema, path: str | Path) -> None:
    """Write the schema as YAML with inline code maps."""
    Path(path).write_text(yaml.safe_dump(schema_to_dict(schema), sort_keys=False, allow_unicode=True), "utf-8")
