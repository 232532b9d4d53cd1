"""Contrastive fine-tuning (CoLES-style, on text) of an LLM4ES model, as our users launch it:

    accelerate launch [--config_file recipes/accelerate_configs/cpu.yaml] recipes/contrastive.py \
        --config recipes/movielens/contrastive_lora.yaml [--key value ...]

Two random slices of a user's events are positives, the other users of the batch negatives
(sentence-transformers' MultipleNegativesRankingLoss over the LLM4ES SentenceTransformer).
Options: our data/objective arguments (llm4es_hf.contrastive.ContrastiveScriptArguments),
sentence-transformers' training arguments (bf16 unset = automatic) and TRL's ModelConfig (LoRA).
Precedence: dataclass defaults < YAML recipe < command line. Unknown YAML keys are errors.
`python recipes/contrastive.py --help` lists every key.
"""

import sys

from trl import ModelConfig

from llm4es_hf.config import parse_config
from llm4es_hf.contrastive import ContrastiveScriptArguments, LLM4ESContrastiveConfig, run_contrastive
from llm4es_hf.errors import Llm4esError


def main(argv: list[str] | None = None) -> int:
    try:
        script_args, training_args, model_args = parse_config(
            [ContrastiveScriptArguments, LLM4ESContrastiveConfig, ModelConfig],
            argv,
            prog="recipes/contrastive.py",
            description=__doc__,
        )
        run_contrastive(script_args, training_args, model_args)
    except Llm4esError as err:
        print(f"recipes/contrastive.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
