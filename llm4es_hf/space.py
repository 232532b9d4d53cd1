"""The demo Space: pick a known user or upload events -> what the model sees -> nearest users.

``build_demo`` returns a ``gr.Blocks``; ``spaces/llm4es-demo/app.py`` is a thin script that
reads the model and index locations from the environment and launches it. Every handler
turns bad input into a readable message in the page (``gr.Error``), never a stack trace,
and the app keeps serving.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .assets import model_file
from .errors import Llm4esError
from .extras import require
from .schema import load_schema
from .search import QueryEncoder, UserIndex, event_columns, label_distribution

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 1_000_000
MAX_EVENTS = 2_000
MAX_USER_CHOICES = 2_000
MAX_MAP_POINTS = 20_000
MAX_K = 50
MAP_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def readable_errors(action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Our errors become their message in the page; anything else a short note (logged in full)."""
    gr = require("gradio")  # the `space` extra

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def wrapped(*args: Any) -> Any:
            try:
                return handler(*args)
            except gr.Error:
                raise
            except Llm4esError as err:
                raise gr.Error(str(err), title=f"Cannot {action}", print_exception=False) from None
            except Exception as err:  # the page must keep serving whatever the input was
                logger.exception("unexpected error while trying to %s", action)
                raise gr.Error(
                    f"{type(err).__name__}: {err}", title=f"Cannot {action}", print_exception=False
                ) from None

        return wrapped

    return decorate


def read_card(model: str | None) -> str:
    """The model card text (front matter dropped) of a local folder or a Hub model id."""
    if not model:
        return "_No model configured._"
    from huggingface_hub import ModelCard

    path = model_file(model, "README.md")
    if path is None:
        return f"_`{model}` has no model card (README.md)._"

    return ModelCard(path.read_text()).text


class Demo:
    """State and handlers of the demo: the index, the lazily loaded query encoder, the map."""

    def __init__(
        self,
        index: UserIndex,
        model: str | None = None,
        *,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        max_events: int = MAX_EVENTS,
    ) -> None:
        self.index = index
        self.model = model or index.info.get("model")
        self.max_upload_bytes = max_upload_bytes
        self.max_events = max_events
        self._encoder: QueryEncoder | None = None
        texts = index.texts()
        self.texts = (
            dict(zip(texts["user_id"].to_list(), texts["text"].to_list(), strict=True)) if texts is not None else {}
        )
        self.map_rows = np.arange(len(index.users))
        if len(self.map_rows) > MAX_MAP_POINTS:
            self.map_rows = np.random.default_rng(0).choice(len(index.users), MAX_MAP_POINTS, replace=False)

    @property
    def encoder(self) -> QueryEncoder:
        if self._encoder is None:
            self._encoder = QueryEncoder(self.index, self.model, max_events=self.max_events, max_users=1)
        return self._encoder

    @functools.cached_property
    def columns(self) -> list[str]:
        """The raw columns an events CSV has (from the index's schema, without loading the model)."""
        if self.index.folder is None or not (self.index.folder / "schema.yaml").exists():
            return []
        return event_columns(load_schema(self.index.folder / "schema.yaml"))

    # ----- handlers -----------------------------------------------------------------
    def known_user(self, user_id: str | None, k: float, label: str | None) -> tuple:
        if not user_id or not str(user_id).strip():
            raise Llm4esError("pick a user id first", column="user_id")
        user_id = str(user_id).strip()
        neighbors = self.index.neighbors_of(user_id, self._k(k))
        text = self.texts.get(user_id, "(this index stores no texts)")
        query_xy = self.index.project(self.index.vector(user_id))[0]
        return self._outputs(text, neighbors, label, query_xy, f"user {user_id}")

    def new_events(self, upload: str | None, pasted: str | None, k: float, label: str | None) -> tuple:
        path = self._events_file(upload, pasted)
        try:
            ids, texts = self.encoder.texts(path)
        except Llm4esError as err:  # name the upload as the user knows it, not by its temporary path
            shown = Path(upload).name if upload else "pasted CSV"
            raise Llm4esError(err.message, file=shown, row=err.row, column=err.column, key=err.key) from None
        vectors = self.index.prepare(self.encoder.embed(texts))
        neighbors = self.index.search_vectors(vectors, self._k(k))[0]
        return self._outputs(texts[0], neighbors, label, self.index.project(vectors)[0], f"uploaded user {ids[0]}")

    def _k(self, k: float) -> int:
        k = int(k)
        if not 1 <= k <= MAX_K:
            raise Llm4esError(f"k must be between 1 and {MAX_K}, got {k}", key="k")
        return k

    def _events_file(self, upload: str | None, pasted: str | None) -> str:
        """The uploaded file, or the pasted text written to a temporary CSV; both size-checked."""
        if upload:
            size = Path(upload).stat().st_size
            if size > self.max_upload_bytes:
                raise Llm4esError(
                    f"the file is {size:,} bytes; at most {self.max_upload_bytes:,} are accepted",
                    file=Path(upload).name,
                )
            return upload
        if not pasted or not pasted.strip():
            raise Llm4esError("upload a CSV file or paste CSV text first (header: " + ",".join(self.columns) + ")")
        data = pasted.strip().encode()
        if len(data) > self.max_upload_bytes:
            raise Llm4esError(f"the pasted text is {len(data):,} bytes; at most {self.max_upload_bytes:,} accepted")
        with tempfile.NamedTemporaryFile("wb", suffix=".csv", prefix="pasted-", delete=False) as handle:
            handle.write(data + b"\n")
        return handle.name

    def _outputs(self, text: str, neighbors: pl.DataFrame, label: str | None, query_xy: np.ndarray, name: str) -> tuple:
        label = label if label in self.index.label_columns else (self.index.label_columns or [None])[0]
        shares = label_distribution(neighbors, label) if label else {}
        return (
            text,
            neighbors.to_pandas(),
            shares,
            self.map_figure(label, query_xy, neighbors["user_id"].to_list(), name),
        )

    def map_figure(self, label: str | None, query_xy: np.ndarray | None, neighbor_ids: list[str], name: str) -> Any:
        """All users in the 2-D PCA map coloured by ``label``; neighbours ringed, the query a star."""
        figure_class = require("matplotlib.figure").Figure  # the `space` extra

        users = self.index.users
        fig = figure_class(figsize=(7, 5.5), dpi=90)
        axes = fig.add_subplot()
        xy = users.select("x", "y").to_numpy()[self.map_rows]
        if label:
            values = users[label].fill_null("unknown").to_numpy()[self.map_rows]
            top = [v for v, _ in pl.Series(values).value_counts(sort=True).iter_rows()][: len(MAP_COLORS)]
            for color, value in zip(MAP_COLORS, top, strict=False):
                chosen = values == value
                axes.scatter(*xy[chosen].T, s=9, alpha=0.55, color=color, label=str(value))
            rest = ~np.isin(values, top)
            if rest.any():
                axes.scatter(*xy[rest].T, s=9, alpha=0.4, color="#bbbbbb", label="other")
        else:
            axes.scatter(*xy.T, s=9, alpha=0.5, color=MAP_COLORS[0], label="users")
        if neighbor_ids:
            rows = np.flatnonzero(users["user_id"].is_in(neighbor_ids).to_numpy())
            ring = users.select("x", "y").to_numpy()[rows]
            axes.scatter(*ring.T, s=70, facecolors="none", edgecolors="black", linewidths=1.2, label="neighbours")
        if query_xy is not None:
            axes.scatter([query_xy[0]], [query_xy[1]], s=260, marker="*", color="red", edgecolors="black", label=name)
        axes.set_xlabel(f"{len(users):,} users (PCA of the embeddings), coloured by {label or 'nothing'}")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.legend(loc="best", fontsize=8, markerscale=1.2)
        fig.tight_layout()
        return fig


def build_demo(
    index: str | Path | UserIndex,
    model: str | None = None,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_events: int = MAX_EVENTS,
    example_csv: str | Path | None = None,
) -> Any:
    """The Space's ``gr.Blocks`` over an index (folder, Hub data set id or loaded) and a model."""
    gr = require("gradio")  # the `space` extra

    loaded = index if isinstance(index, UserIndex) else UserIndex.load(index)
    demo_state = Demo(loaded, model, max_upload_bytes=max_upload_bytes, max_events=max_events)
    labels = loaded.label_columns
    user_ids = loaded.users["user_id"].to_list()
    example = Path(example_csv).read_text() if example_csv and Path(example_csv).exists() else ""

    known = readable_errors("find the neighbours of this user")(demo_state.known_user)
    uploaded = readable_errors("embed these events")(demo_state.new_events)

    with gr.Blocks(title="LLM4ES: similar users") as demo:
        gr.Markdown(
            "# LLM4ES: find similar users\n"
            f"A fine-tuned LLM turns each user's event history into a vector (LLM4ES). "
            f"**{len(user_ids):,} users** indexed ({loaded.info.get('kind')} cosine search, "
            f"{loaded.dimension} dimensions); model: `{demo_state.model}`. Pick a known user, or upload "
            "a user's events as CSV with the columns "
            f"`{','.join(demo_state.columns) or '(schema unknown)'}`."
        )
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tab("Known user"):
                    user_box = gr.Dropdown(
                        choices=user_ids[:MAX_USER_CHOICES],
                        value=None,
                        allow_custom_value=True,
                        label="User id",
                        elem_id="user-id",
                    )
                    user_button = gr.Button("Find similar users", variant="primary", elem_id="search-user")
                with gr.Tab("New events (CSV)"):
                    upload_box = gr.File(label="Events CSV", file_types=[".csv"], type="filepath", elem_id="upload")
                    paste_box = gr.Textbox(
                        label="or paste CSV",
                        lines=8,
                        value=example,
                        placeholder=",".join(demo_state.columns),
                        elem_id="paste",
                    )
                    events_button = gr.Button("Embed and search", variant="primary", elem_id="search-events")
                k_box = gr.Slider(1, MAX_K, value=10, step=1, label="Neighbours (k)")
                label_box = gr.Dropdown(
                    choices=labels, value=labels[0] if labels else None, label="Label to show", elem_id="label"
                )
            with gr.Column(scale=2):
                text_box = gr.Textbox(label="What the model sees (serialized events)", lines=12, elem_id="text")
        neighbors_box = gr.Dataframe(label="Nearest users", elem_id="neighbors", interactive=False)
        with gr.Row():
            shares_box = gr.Label(label="Label among the neighbours", elem_id="shares")
            map_box = gr.Plot(label="Map of all users", elem_id="map")
        with gr.Accordion("Model card", open=False):
            gr.Markdown(read_card(demo_state.model))
        outputs = [text_box, neighbors_box, shares_box, map_box]
        user_button.click(known, [user_box, k_box, label_box], outputs, api_name="neighbors_of_user")
        user_box.select(known, [user_box, k_box, label_box], outputs, api_name=False)
        events_button.click(
            uploaded, [upload_box, paste_box, k_box, label_box], outputs, api_name="neighbors_of_events"
        )
        demo.load(lambda label: demo_state.map_figure(label, None, [], ""), [label_box], [map_box], api_name=False)
    return demo


def default_locations(root: Path, run: str | Path | None = None) -> tuple[str | None, str]:
    """Model and index: those of a run folder of `llm4es quickstart` (``run``, else $LLM4ES_RUN: its
    ``model/`` and ``index/``), else $LLM4ES_MODEL / $LLM4ES_INDEX, else the index `llm4es quickstart`
    wrote under ``root`` and the model that index names (None here means: the index's own model)."""
    run = run or os.environ.get("LLM4ES_RUN")
    if run:
        folder = Path(run)
        if not (folder / "index").is_dir() or not (folder / "model").is_dir():
            raise Llm4esError("not a run folder of `llm4es quickstart` (it has no index/ and model/)", file=folder)
        return str(folder / "model"), str(folder / "index")
    return os.environ.get("LLM4ES_MODEL"), os.environ.get("LLM4ES_INDEX", str(root / "outputs/quickstart/index"))


def example_events(index: str | Path, fallback: Path) -> Path:
    """The upload box's example: ``example_events.csv`` beside a run's index (one user's raw rows the
    quickstart kept), else ``fallback`` (the Space's MovieLens viewer)."""
    kept = Path(index).parent / "example_events.csv"
    return kept if kept.is_file() else fallback
