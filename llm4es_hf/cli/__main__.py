"""`python -m llm4es_hf.cli` (and `accelerate launch -m llm4es_hf.cli <command>`) = `llm4es`."""

import sys

from . import main

sys.exit(main())
