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

import json
from pathlib import Path

from accelerate import PartialState
from trl import ModelConfig

from ..cards import write_model_card
from ..config import parse_config
from ..corpus import CorpusConfig, build_corpus
from ..hub import push_model
from ..train import LLM4ESSFTConfig, SFTScriptArguments, run_sft


def _corpus_ready(folder: Path, config: str) -> bool:
    """The folder is a built corpus whose ``config`` holds what was asked for (enriched: real rewrites)."""
    summary = folder / "corpus_summary.json"
    if not (folder / config).is_dir() or not summary.exists():
        return False
    return config != "enriched" or bool(json.loads(summary.read_text()).get("enrichment"))


def ensure_corpus(args: SFTScriptArguments) -> None:
    """Build ``args.corpus`` from ``args.corpus_recipe`` when it is missing, once per launch.

    Under a multi-process launch the main process builds while the others wait, then all read the
    same folder. Training on the serialized config skips the recipe's LLM rewrites (minutes of
    generation on a CPU that this run would not use); `llm4es corpus --recipe ...` builds them.
    """
    if not (args.corpus and args.corpus_recipe) or _corpus_ready(Path(args.corpus), args.corpus_config):
        return
    state = PartialState()
    with state.main_process_first():
        if state.is_main_process and not _corpus_ready(Path(args.corpus), args.corpus_config):
            (config,) = parse_config(
                [CorpusConfig], ["--config", args.corpus_recipe, "--output_dir", args.corpus], prog="llm4es corpus"
            )
            if args.corpus_config == "serialized":
                config.enrich_variants = []
            print(f"building the corpus {args.corpus} from {args.corpus_recipe} (config {args.corpus_config})")
            build_corpus(config)


def main(argv: list[str] | None = None) -> int:
    script_args, training_args, model_args = parse_config(
        [SFTScriptArguments, LLM4ESSFTConfig, ModelConfig], argv, prog="llm4es sft", description=__doc__
    )
    ensure_corpus(script_args)
    push = training_args.push_to_hub
    info = run_sft(script_args, training_args, model_args)
    if push and PartialState().is_main_process:
        output_dir = Path(training_args.output_dir)
        repo_id = training_args.hub_model_id or output_dir.name
        write_model_card(output_dir, info, repo_id=repo_id)
        push_model(
            output_dir,
            repo_id,
            revision=training_args.hub_revision,
            private=training_args.hub_private_repo is not False,
        )
    return 0
