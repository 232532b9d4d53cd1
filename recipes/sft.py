"""Fine-tune a causal LM on LLM4ES user texts (stage 3), as our users launch it:

    accelerate launch [--config_file recipes/accelerate_configs/cpu.yaml] recipes/sft.py \
        --config recipes/movielens/sft_full.yaml [--key value ...]

The same as `llm4es sft` (llm4es_hf/cli/sft.py holds the body). `python recipes/sft.py --help`
lists every key: our data arguments, TRL's SFTConfig and ModelConfig. Precedence: dataclass
defaults < YAML recipe < command line. Unknown YAML keys are errors.
"""

import sys

from llm4es_hf.cli import reporting_errors
from llm4es_hf.cli.sft import main as sft


def main(argv: list[str] | None = None) -> int:
    return reporting_errors("sft", lambda: sft(argv))


if __name__ == "__main__":
    sys.exit(main())
