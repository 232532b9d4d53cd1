"""Stage 2 of LLM4ES: a frozen instruct LLM rewrites serialized users into other textual forms.

Prompts (``prompts``), generators (``backends``: in-process transformers or an
OpenAI-compatible server), a crash-safe SQLite cache (``cache``) and the runner that
ties them together with quality checks and retries (``runner``). The command is
``llm4es enrich`` (``llm4es_hf.cli.enrich``).
"""

from .backends import (
    BACKENDS,
    Backend,
    Generation,
    GenerationConfig,
    OpenAIBackend,
    SamplingConfig,
    TransformersBackend,
    make_backend,
)
from .cache import CacheRecord, EnrichmentCache, record_key
from .prompts import VARIANTS, PromptVariant, build_messages, get_variant, render_prompt, system_prompt, user_prompt
from .runner import EnrichedRecord, EnrichmentReport, classify, enrich_records, enrich_texts, pick_users

__all__ = [
    "BACKENDS",
    "Backend",
    "VARIANTS",
    "CacheRecord",
    "EnrichedRecord",
    "EnrichmentCache",
    "EnrichmentReport",
    "Generation",
    "GenerationConfig",
    "OpenAIBackend",
    "PromptVariant",
    "SamplingConfig",
    "TransformersBackend",
    "build_messages",
    "classify",
    "enrich_records",
    "enrich_texts",
    "get_variant",
    "pick_users",
    "make_backend",
    "record_key",
    "render_prompt",
    "system_prompt",
    "user_prompt",
]
