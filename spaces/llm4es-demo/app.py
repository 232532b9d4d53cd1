"""LLM4ES demo Space: similar users from their event histories.

Run locally after `make quickstart`:  python spaces/llm4es-demo/app.py
On the run folder of `llm4es quickstart --source ...` (your own events):
    python spaces/llm4es-demo/app.py --run outputs/shop   (or LLM4ES_RUN=outputs/shop)
Point it elsewhere with LLM4ES_MODEL and LLM4ES_INDEX (a local folder or a Hub repo id: a model
repo, and a data set repo written by `llm4es index --push-to-hub`). On a Space (SPACE_ID set) the
defaults are the repos listed in README.md's front matter.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from llm4es_hf.errors import Llm4esError
from llm4es_hf.space import MAX_UPLOAD_BYTES, build_demo, default_locations, example_events

HERE = Path(__file__).resolve().parent
HUB_DEFAULTS = {
    "LLM4ES_MODEL": "llm4es-hf/smollm2-135m-llm4es-movielens",
    "LLM4ES_INDEX": "llm4es-hf/movielens-100k-user-index",
}
if os.environ.get("SPACE_ID"):
    for name, value in HUB_DEFAULTS.items():
        os.environ.setdefault(name, value)

parser = argparse.ArgumentParser(description="LLM4ES demo: nearest users of an index, in the browser")
parser.add_argument("--run", help="a run folder of `llm4es quickstart` (its model/ and index/); or set LLM4ES_RUN")
arguments, _ = parser.parse_known_args()  # gradio's reloader and Spaces may pass their own arguments
try:
    model, index = default_locations(HERE.parents[1], arguments.run)
    demo = build_demo(index, model, example_csv=example_events(index, HERE / "examples" / "viewer.csv"))
except Llm4esError as err:
    sys.exit(
        f"llm4es demo: {err}\n"
        "Run `make quickstart` first (it writes outputs/quickstart/{model,index}), give --run FOLDER "
        "(a quickstart's run folder), or set LLM4ES_INDEX and LLM4ES_MODEL to a folder or a Hub repo id."
    )

if __name__ == "__main__":
    demo.launch(max_file_size=MAX_UPLOAD_BYTES, show_error=True)
