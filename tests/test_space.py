"""The demo Space: its metadata, the handlers' readable errors, the API through gradio_client, and
the page driven in headless Chromium (Debian's, through Playwright) against `app.py` itself."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import gradio as gr
import pytest
import yaml

from llm4es_hf.search import UserIndex
from llm4es_hf.space import Demo, build_demo

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "spaces" / "llm4es-demo"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BAD_CSV = "user_id,when,film\n1,yesterday,Heat\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_space_metadata_agrees_with_the_package():
    from packaging.requirements import Requirement

    front = yaml.safe_load((SPACE / "README.md").read_text().split("---")[1])
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["space"]
    gradio_pin = next(d for d in pinned if d.startswith("gradio"))
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py" and (SPACE / "app.py").exists()
    assert gradio_pin == f"gradio=={front['sdk_version']}" and gr.__version__ == front["sdk_version"]
    requirements = [
        Requirement(line.split("#")[0].strip())
        for line in (SPACE / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip() and not line.startswith("-")
    ]
    names = {r.name for r in requirements}
    assert "llm4es-hf" in names and "gradio" not in names  # gradio comes from sdk_version only
    assert {"search"} <= next(r for r in requirements if r.name == "llm4es-hf").extras  # faiss for the index
    assert next(r for r in requirements if r.name == "llm4es-hf").specifier.contains("0.1.0")
    app = (SPACE / "app.py").read_text()
    for repo in re.findall(r'"LLM4ES_\w+": "([^"]+)"', app):
        assert repo in front["models"] + front["datasets"]


@pytest.fixture(scope="module")
def demo_state(movielens_index) -> Demo:
    return Demo(UserIndex.load(movielens_index), max_upload_bytes=3_000, max_events=100)


def test_handlers_return_text_neighbours_shares_and_map(demo_state):
    text, neighbors, shares, figure = demo_state.known_user("10", 5, "gender")
    assert text.startswith("Movie|Rating") and list(neighbors["rank"]) == [1, 2, 3, 4, 5]
    assert "10" not in set(neighbors["user_id"]) and abs(sum(shares.values()) - 1) < 1e-6
    assert figure.axes[0].get_legend() is not None
    _, _, age_shares, _ = demo_state.known_user("10", 5, "age")
    assert set(age_shares) <= set(demo_state.index.users["age"].unique())
    pasted = (SPACE / "examples" / "viewer.csv").read_text()
    text, neighbors, _, _ = demo_state.new_events(None, pasted, 3, "gender")
    assert "Blade Runner" in text and len(neighbors) == 3  # the latest events fit the budget


@pytest.mark.parametrize(
    ("handler", "args", "message"),
    [
        ("known_user", ("no-such-user", 5, "gender"), "unknown user id 'no-such-user'"),
        ("known_user", ("", 5, "gender"), "pick a user id"),
        ("known_user", ("10", 500, "gender"), "k must be between 1 and 50"),
        ("new_events", (None, "", 5, "gender"), "upload a CSV file or paste"),
        ("new_events", (None, BAD_CSV, 5, "gender"), r"unknown columns \['when', 'film'\]"),
        ("new_events", (None, "x" * 4_000, 5, "gender"), "the pasted text is 4,000 bytes"),
        (
            "new_events",
            (None, "\x00\x01garbage", 5, "gender"),
            "file pasted CSV, row 1: cannot tell the column separator",
        ),
    ],
)
def test_bad_input_becomes_a_message_in_the_page(demo_state, handler, args, message):
    from llm4es_hf.space import readable_errors

    with pytest.raises(gr.Error, match=message) as err:
        readable_errors("search")(getattr(demo_state, handler))(*args)
    assert "Traceback" not in str(err.value)


def test_too_many_events_and_oversized_files(demo_state, tmp_path):
    from llm4es_hf.space import readable_errors

    rows = "\n".join(f"u,{i},M{i},D,3" for i in range(150))
    with pytest.raises(gr.Error, match="too many events: 150 rows"):
        readable_errors("search")(demo_state.new_events)(
            None, "user_id,timestamp,movie_title,genres,rating\n" + rows, 5, "gender"
        )
    big = tmp_path / "big.csv"
    big.write_text("user_id,timestamp,movie_title,genres,rating\n" + rows * 3)
    with pytest.raises(gr.Error, match="at most 3,000 are accepted"):
        readable_errors("search")(demo_state.new_events)(str(big), None, 5, "gender")


def test_gradio_client_api(movielens_index, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    demo = build_demo(movielens_index)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert set(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) == {
            "/neighbors_of_user",
            "/neighbors_of_events",
        }
        text, table, shares, _ = client.predict("10", 4, "gender", api_name="/neighbors_of_user")
        assert text.startswith("Movie|Rating") and len(table["data"]) == 4
        assert table["headers"][:3] == ["rank", "user_id", "similarity"]
        assert {c["label"] for c in shares["confidences"]} <= {"F", "M"}
        viewer = handle_file(str(SPACE / "examples" / "viewer.csv"))
        text, table, _, _ = client.predict(viewer, "", 3, "age", api_name="/neighbors_of_events")
        assert "Blade Runner" in text and len(table["data"]) == 3
        with pytest.raises(AppError, match="unknown user id 'nobody'"):
            client.predict("nobody", 4, "gender", api_name="/neighbors_of_user")
        bad = tmp_path / "bad.csv"
        bad.write_text(BAD_CSV)
        with pytest.raises(AppError, match="unknown columns"):
            client.predict(handle_file(str(bad)), "", 3, "gender", api_name="/neighbors_of_events")
        # still serving after the errors
        assert len(client.predict("11", 2, "gender", api_name="/neighbors_of_user")[1]["data"]) == 2
    finally:
        demo.close()


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: `make setup` installs it (apt-get install chromium)")
    return path


def test_browser_pick_a_user_then_a_malformed_upload(movielens_index, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    env = {**os.environ, "LLM4ES_INDEX": str(movielens_index), "GRADIO_SERVER_PORT": str(port)}
    env.pop("LLM4ES_MODEL", None)
    app = subprocess.Popen(
        [sys.executable, str(SPACE / "app.py")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if app.poll() is not None or time.time() > deadline:
                    pytest.fail(f"app.py did not start:\n{app.stdout.read() if app.poll() is not None else ''}")
                time.sleep(0.5)
        bad = tmp_path / "malformed.csv"
        bad.write_text(BAD_CSV)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            expect(page.get_by_text("943 users")).to_be_visible()

            user_box = page.locator("#user-id input")
            user_box.click()
            user_box.fill("10")
            page.keyboard.press("Enter")
            page.locator("#search-user").click()
            expect(page.locator("#neighbors")).to_contain_text("similarity", timeout=60_000)
            expect(page.locator("#neighbors")).to_contain_text("train", timeout=60_000)
            expect(page.locator("#text textarea")).to_have_value(re.compile("^Movie\\|Rating"))

            page.get_by_role("tab", name="New events (CSV)").click()
            page.locator("#upload input[type=file]").set_input_files(str(bad))
            page.locator("#search-events").click()
            expect(page.get_by_text(re.compile("unknown columns")).first).to_be_visible(timeout=60_000)
            assert "Traceback" not in page.content()

            page.get_by_role("tab", name="Known user").click()  # the app keeps serving
            user_box.click()
            user_box.fill("11")
            page.keyboard.press("Enter")
            page.locator("#search-user").click()
            expect(page.locator("#text textarea")).not_to_have_value(re.compile("^$"), timeout=60_000)
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)


def test_demo_loads_model_and_index_from_hub_repo_ids(movielens_index, tiny_model, loopback_hub, monkeypatch):
    from llm4es_hf.hub import push_index, push_model
    from llm4es_hf.space import default_locations

    push_index(movielens_index, "org/ml-index")
    push_model(tiny_model, "org/tiny-llm4es", revision="run-1")
    monkeypatch.setenv("LLM4ES_INDEX", "org/ml-index")
    monkeypatch.setenv("LLM4ES_MODEL", "org/tiny-llm4es")
    model, index = default_locations(ROOT)
    demo_state = Demo(UserIndex.load(index), model)
    assert demo_state.model == "org/tiny-llm4es"
    example = (SPACE / "examples" / "viewer.csv").read_text()
    text, neighbors, _, _ = demo_state.new_events(None, example, 4, "gender")
    assert "Blade Runner" in text and len(neighbors) == 4
    # the same events embedded from the local folders give the same neighbours
    local = Demo(UserIndex.load(movielens_index), str(tiny_model))
    assert local.new_events(None, example, 4, "gender")[1]["user_id"].tolist() == neighbors["user_id"].tolist()
