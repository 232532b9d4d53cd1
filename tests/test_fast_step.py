"""The cheaper training step (llm4es_hf.training.fast_step): the chunked loss gives the model's own
loss and gradients, skipping PEFT's input cast changes no number under autocast, and the SFT
trainer takes the chunked loss on CPU."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

from llm4es_hf.training import fast_step
from llm4es_hf.training.fast_step import NO_LOGITS, chunked_loss_head, linear_cross_entropy, skip_adapter_input_cast

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = dict(vocab_size=301, hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    config.update(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, **overrides)
    return LlamaForCausalLM(LlamaConfig(**config))


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three rows of different lengths, right-padded, pads out of the labels."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 301, (3, 19), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    return ids, mask, ids.masked_fill(mask == 0, -100)


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def model_loss(model, ids, mask, labels, *, bf16: bool = False, **loss_kwargs) -> torch.Tensor:
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, **loss_kwargs).loss
    loss.backward()
    return loss.detach()


def chunked_loss(model, ids, mask, labels, *, bf16: bool = False, chunk_rows: int = 7, **kwargs) -> torch.Tensor:
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=ids, attention_mask=mask, logits_to_keep=NO_LOGITS, output_hidden_states=True)
        assert out.logits.shape[1] == 0  # no logits were built
        head = chunked_loss_head(model)
        loss = linear_cross_entropy(out.hidden_states[-1], head.weight, labels, chunk_rows=chunk_rows, **kwargs)
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("chunk_rows", [1, 7, 64])
def test_chunked_loss_is_the_models_own_loss_and_gradients(chunk_rows):
    """fp32, every weight trainable (the tied head/embedding too), chunks that split rows and
    padding: the same loss and the same gradient for every weight."""
    model = llama()
    ids, mask, labels = batch()
    expected, expected_grads = model_loss(model, ids, mask, labels), grads(model)
    got = chunked_loss(model, ids, mask, labels, chunk_rows=chunk_rows)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    got_grads = grads(model)
    assert got_grads.keys() == expected_grads.keys() and "model.embed_tokens.weight" in got_grads
    for name, grad in expected_grads.items():
        assert torch.allclose(got_grads[name], grad, rtol=1e-4, atol=1e-6), name


def test_chunked_loss_divides_by_the_accumulated_token_count():
    """With the Trainer's num_items_in_batch (tokens over every accumulated micro-batch) the loss
    is the sum over this batch divided by that count, as transformers' loss computes it."""
    model = llama()
    ids, mask, labels = batch()
    expected = model_loss(model, ids, mask, labels, num_items_in_batch=torch.tensor(100))
    expected_grads = grads(model)
    got = chunked_loss(model, ids, mask, labels, num_items_in_batch=torch.tensor(100))
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    for name, grad in grads(model).items():
        assert torch.allclose(grad, expected_grads[name], rtol=1e-4, atol=1e-7), name


def test_chunked_loss_under_bf16_autocast_matches_within_bf16_rounding():
    model = llama()
    ids, mask, labels = batch()
    expected, expected_grads = model_loss(model, ids, mask, labels, bf16=True), grads(model)
    got = chunked_loss(model, ids, mask, labels, bf16=True)
    assert float(got) == pytest.approx(float(expected), rel=1e-4)
    for name, grad in grads(model).items():
        scale = float(expected_grads[name].abs().max())
        assert float((grad - expected_grads[name]).abs().max()) <= 0.02 * scale, name


def test_chunked_loss_head_only_where_logits_are_a_plain_projection():
    assert chunked_loss_head(llama()) is not None
    lora = get_peft_model(llama(), LoraConfig(r=4, target_modules=PROJECTIONS))
    assert chunked_loss_head(lora) is lora.get_base_model().lm_head  # PEFT forwards logits_to_keep
    on_head = get_peft_model(llama(), LoraConfig(r=4, target_modules=["q_proj", "lm_head"]))
    assert chunked_loss_head(on_head) is None  # an adapter on the head: its logits are not weight @ hidden
    biased = llama()
    biased.lm_head = torch.nn.Linear(32, 301, bias=True)
    assert chunked_loss_head(biased) is None
    capped = Gemma3TextConfig(
        vocab_size=301, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, final_logit_softcapping=30.0,
    )  # fmt: skip
    assert chunked_loss_head(Gemma3ForCausalLM(capped)) is None
    assert chunked_loss_head(
        Gemma3ForCausalLM(Gemma3TextConfig(**{**capped.to_dict(), "final_logit_softcapping": None}))
    )


def lora_model() -> torch.nn.Module:
    model = get_peft_model(llama(), LoraConfig(r=4, lora_alpha=8, target_modules=PROJECTIONS, init_lora_weights=False))
    model.train()
    return model


def test_skipping_the_adapters_input_cast_changes_no_number_under_autocast():
    """A LoRA model under bf16 autocast, and in fp32: with PEFT's input cast off, the same loss
    and the same adapter gradients, bit for bit."""
    ids, mask, labels = batch()
    plain, hooked = lora_model(), lora_model()
    assert skip_adapter_input_cast(hooked) == 14  # 2 layers x 7 projections
    for bf16 in (True, False):
        expected, got = (
            model_loss(plain, ids, mask, labels, bf16=bf16),
            model_loss(hooked, ids, mask, labels, bf16=bf16),
        )
        assert torch.equal(got, expected)
        expected_grads, got_grads = grads(plain), grads(hooked)
        assert expected_grads.keys() == got_grads.keys() and any("lora_A" in name for name in got_grads)
        for name, grad in expected_grads.items():
            assert torch.equal(got_grads[name], grad), name


@pytest.mark.parametrize("bf16", ["false", "true"])
def test_sft_trainer_takes_the_chunked_loss_on_cpu(tmp_path, tiny_model, tiny_corpus, monkeypatch, bf16):
    """recipes/sft.py on CPU (fused_lm_head unset) scores every step with linear_cross_entropy, in
    the autocast dtype under bf16: accelerate's autocast covers the model's forward, not the loss."""
    import importlib.util
    from pathlib import Path

    import llm4es_hf.training.sft as sft

    calls = []

    def counting(*args, **kwargs):
        autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        calls.append((args[0].shape, autocast))  # the dtype the chunked loss's matmuls run in
        return linear_cross_entropy(*args, **kwargs)

    monkeypatch.setattr(sft, "linear_cross_entropy", counting)
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("sft_recipe_fast", root / "recipes" / "sft.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    args = ["--corpus", str(tiny_corpus), "--model_name_or_path", str(tiny_model), "--output_dir", str(tmp_path)]
    args += ["--max_steps", "2", "--per_device_train_batch_size", "2", "--max_length", "64", "--bf16", bf16]
    args += ["--report_to", "none", "--save_strategy", "no", "--use_peft", "true", "--lora_r", "4"]
    assert recipe.main(args) == 0
    dtype = torch.bfloat16 if bf16 == "true" else None
    assert len(calls) == 2 and all(shape[0] == 2 and shape[-1] == 32 and kind == dtype for shape, kind in calls)
    assert fast_step.NO_LOGITS.numel() == 0


def test_skip_false_restores_peft_cast():
    """benchmarks/train.py times the step as it ran before by turning PEFT's cast back on."""
    model = lora_model()
    skip_adapter_input_cast(model)
    assert skip_adapter_input_cast(model, skip=False) == 14
    flags = [m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    assert flags and all(flags)
