"""Fine-tune a causal LM on LLM4ES user texts (stage 3), as our users launch it:

    accelerate launch [--config_file recipes/accelerate_configs/cpu.yaml] recipes/sft.py \
        --config recipes/movielens/sft_full.yaml [--key value ...]

Options: our data arguments (llm4es_hf.train.SFTScriptArguments), TRL's SFTConfig (bf16
unset = automatic: bf16 where the hardware has it, also on CPU) and ModelConfig.
Precedence: dataclass defaults < YAML recipe < command line. Unknown YAML keys are errors.
`python recipes/sft.py --help` lists every key.
"""

import json
import sys
from pathlib import Path

from accelerate import PartialState
from trl import ModelConfig

from llm4es_hf.config import parse_config
from llm4es_hf.corpus import CorpusConfig, build_corpus
from llm4es_hf.errors import Llm4esError
from llm4es_hf.train import LLM4ESSFTConfig, SFTScriptArguments, run_sft


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
    try:
        script_args, training_args, model_args = parse_config(
            [SFTScriptArguments, LLM4ESSFTConfig, ModelConfig], argv, prog="recipes/sft.py", description=__doc__
        )
        ensure_corpus(script_args)
        run_sft(script_args, training_args, model_args)
    except Llm4esError as err:
        print(f"recipes/sft.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
