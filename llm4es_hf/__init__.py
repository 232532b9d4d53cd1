"""llm4es-hf: user embeddings from event sequences with a fine-tuned LLM (LLM4ES)."""

__version__ = "0.1.0"
