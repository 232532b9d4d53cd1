"""`llm4es sft` = `accelerate launch recipes/sft.py`: fine-tune a causal LM on LLM4ES user texts.

    accelerate launch [--config_file recipes/accelerate_configs/cpu.yaml] recipes/sft.py \
        --config recipes/movielens/sft_full.yaml [--key value ...]
    llm4es sft --config recipes/movielens/sft_full.yaml          # one process
    accelerate launch -m llm4es_hf.cli sft --config ...           # several, like the line above

Options: our data arguments (SFTScriptArguments), TRL's SFTConfig (bf16 unset = automatic: bf16
where the hardware has it, also on CPU) and ModelConfig. Precedence: dataclass defaults < YAML
recipe < command line. Unknown YAML keys are errors. A missing corpus is built from
``corpus_recipe`` first (once, by the main process); ``--push_to_hub`` publishes the model to
``main`` and a run branch at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trl import ModelConfig

from ..cards import write_model_card
from ..config import parse_config
from ..hardware import process_state
from ..hub import push_model
from ..training.sft import LLM4ESSFTConfig, SFTScriptArguments, run_sft
from .corpus import ensure_corpus


def main(argv: list[str] | None = None) -> int:
    script_args, training_args, model_args = parse_config(
        [SFTScriptArguments, LLM4ESSFTConfig, ModelConfig], argv, prog="llm4es sft", description=__doc__
    )
    ensure_corpus(script_args.corpus, script_args.corpus_recipe, script_args.corpus_config)
    push = training_args.push_to_hub
    info = run_sft(script_args, training_args, model_args)
    if push:
        publish_trained_model(training_args, info)
    return 0


def publish_trained_model(training_args: Any, info: dict[str, Any]) -> None:
    """Push a trained model folder once, from the main process, with its card naming the repo."""
    if not process_state().is_main_process:
        return
    output_dir = Path(training_args.output_dir)
    repo_id = training_args.hub_model_id or output_dir.name
    write_model_card(output_dir, info, repo_id=repo_id)
    push_model(
        output_dir,
        repo_id,
        revision=getattr(training_args, "hub_revision", None),
        private=training_args.hub_private_repo is not False,
    )
