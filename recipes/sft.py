"""Fine-tune a causal LM on LLM4ES user texts (stage 3), as our users launch it:

    accelerate launch [--config_file recipes/accelerate_configs/cpu.yaml] recipes/sft.py \
        --config recipes/movielens/sft_full.yaml [--key value ...]

Options: our data arguments (llm4es_hf.train.SFTScriptArguments), TRL's SFTConfig (bf16
unset = automatic: bf16 where the hardware has it, also on CPU) and ModelConfig.
Precedence: dataclass defaults < YAML recipe < command line. Unknown YAML keys are errors.
`python recipes/sft.py --help` lists every key.
"""

import sys

from trl import ModelConfig

from llm4es_hf.config import parse_config
from llm4es_hf.errors import Llm4esError
from llm4es_hf.train import LLM4ESSFTConfig, SFTScriptArguments, run_sft


def main(argv: list[str] | None = None) -> int:
    try:
        script_args, training_args, model_args = parse_config(
            [SFTScriptArguments, LLM4ESSFTConfig, ModelConfig], argv, prog="recipes/sft.py", description=__doc__
        )
        run_sft(script_args, training_args, model_args)
    except Llm4esError as err:
        print(f"recipes/sft.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
