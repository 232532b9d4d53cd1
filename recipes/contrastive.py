"""Contrastive fine-tuning (CoLES-style, on text) of an LLM4ES model, as our users launch it:

    accelerate launch [--config_file recipes/accelerate_configs/cpu.yaml] recipes/contrastive.py \
        --config recipes/movielens/contrastive_lora.yaml [--key value ...]

The same as `llm4es contrastive` (llm4es_hf/cli/contrastive.py holds the body);
`python recipes/contrastive.py --help` lists every key.
"""

import sys

from llm4es_hf.cli import reporting_errors
from llm4es_hf.cli.contrastive import main as contrastive


def main(argv: list[str] | None = None) -> int:
    return reporting_errors("contrastive", lambda: contrastive(argv))


if __name__ == "__main__":
    sys.exit(main())
