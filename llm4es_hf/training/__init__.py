"""Training stage: fine-tune an LLM on the corpus texts.

- ``sft``: next-token prediction with TRL's SFTTrainer (LoRA or full), the paper's objective;
- ``contrastive``: two slices of one user's events as a positive pair, with sentence-transformers.

Import from the module you use (``llm4es_hf.training.sft``, ``llm4es_hf.training.contrastive``): each
pulls its own stack (TRL, or sentence-transformers) only when used.
"""
