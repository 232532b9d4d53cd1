"""The card templates (Jinja2, huggingface_hub's card format): installed as ``llm4es_hf.model_cards``."""
