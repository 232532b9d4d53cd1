"""`llm4es contrastive` = `accelerate launch recipes/contrastive.py`: contrastive fine-tuning (CoLES-style,
on text) of an LLM4ES model: two random slices of a user's events are positives, the other users of the
batch negatives (sentence-transformers' MultipleNegativesRankingLoss over the LLM4ES SentenceTransformer).

    accelerate launch [--config_file recipes/accelerate_configs/cpu.yaml] recipes/contrastive.py \
        --config recipes/movielens/contrastive_lora.yaml [--key value ...]

Options: our data/objective arguments (ContrastiveScriptArguments), sentence-transformers' training
arguments (bf16 unset = automatic) and TRL's ModelConfig (LoRA). Precedence: dataclass defaults < YAML
recipe < command line. Unknown YAML keys are errors. A missing corpus is built from ``corpus_recipe``.
"""

from __future__ import annotations

from trl import ModelConfig

from ..config import parse_config
from ..training.contrastive import ContrastiveScriptArguments, LLM4ESContrastiveConfig, run_contrastive
from .corpus import ensure_corpus
from .sft import publish_trained_model


def main(argv: list[str] | None = None) -> int:
    script_args, training_args, model_args = parse_config(
        [ContrastiveScriptArguments, LLM4ESContrastiveConfig, ModelConfig],
        argv,
        prog="llm4es contrastive",
        description=__doc__,
    )
    ensure_corpus(script_args.corpus, script_args.corpus_recipe)
    push = training_args.push_to_hub
    info = run_contrastive(script_args, training_args, model_args)
    if push:
        publish_trained_model(training_args, info)
    return 0
