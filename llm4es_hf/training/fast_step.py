"""A cheaper training step with the model's own numbers: what the CPU profile of a LoRA step found.

**The loss from the last hidden states, a chunk of positions at a time.** A causal LM's own
loss first builds the logits of every position (batch x length x vocabulary: on SmolLM2 with
8 x 257 tokens that is 99M values, 395 MB once upcast to fp32), then its log-softmax, then in the
backward a zero-filled gradient of the same size and the log-softmax's backward. On a CPU each of
those is a pass over memory that no core can hide. ``linear_cross_entropy`` computes the same loss
and its gradient for a few hundred positions at a time (logits, log-softmax, softmax minus the
one-hot target, the gradient of the hidden states) and keeps only that gradient for the backward.
The numbers are the model's own: the same matmul precision (the autocast dtype), the logits upcast
to fp32 before the softmax, the same token-weighted mean.

**No round trip to fp32 for an adapter's input under autocast.** PEFT casts an adapter's input to
the adapter's weight dtype (fp32) and autocast then casts it back to bf16 for the matmul: the bf16
inputs of o_proj and down_proj made that round trip for nothing. ``skip_adapter_input_cast`` turns
PEFT's cast off where the step runs under autocast; the numbers do not change, bit for bit. (Casting
each block's input once for its three projections and their adapters gained a few percent more,
but then the gradients of those readers are summed in bf16 instead of fp32: not done.)

On SmolLM2-135M, LoRA r 16 on the 7 projections, 8 x 257 tokens on a 2-core AMX CPU, the two
together made a step 1.13x faster in bf16 and 1.14x in fp32, with 1 GB less peak memory
(benchmarks/train.py --lora --lora-runs lora-new-plain-step).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

IGNORE_INDEX = -100


def compute_dtype(device_type: str, fallback: torch.dtype) -> torch.dtype:
    """The dtype autocast gives a matmul here, or ``fallback`` outside autocast."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return fallback


class LinearCrossEntropy(torch.autograd.Function):
    """Sum of ``-log softmax(hidden @ weight.T)[label]`` over the labeled rows, over ``normalizer``;
    the gradients are computed in the forward, chunk by chunk, and scaled in the backward."""

    @staticmethod
    def forward(  # noqa: ANN205
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        normalizer: torch.Tensor,
        chunk_rows: int,
        dtype: torch.dtype,
    ):
        ctx.weight_dtype = weight.dtype
        head = weight.to(dtype)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if weight.requires_grad else None
        )
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        scale = 1.0 / normalizer.to(torch.float32)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], chunk_rows):
                rows = hidden[start : start + chunk_rows].to(dtype)
                target = labels[start : start + chunk_rows]
                log_probs = torch.log_softmax(rows @ head.T, dim=-1, dtype=torch.float32)
                labeled = target != IGNORE_INDEX
                picked = torch.where(labeled, target, 0)
                total -= torch.where(labeled, log_probs.gather(1, picked[:, None]).squeeze(1), 0.0).sum()
                grad_logits = log_probs.exp_()  # the softmax, in place
                where = labeled.nonzero().squeeze(1)
                grad_logits[where, picked[where]] -= 1.0
                row_scale = (labeled * scale).to(dtype)[:, None]  # per row: applied after the matmul
                grad_logits = grad_logits.to(dtype)
                grad_hidden[start : start + chunk_rows] = (grad_logits @ head) * row_scale
                if grad_weight is not None:
                    grad_weight += (grad_logits.T @ (rows * row_scale)).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):  # noqa: ANN205
        grad_hidden, grad_weight = ctx.saved_tensors
        weight_grad = None if grad_weight is None else (grad_weight * grad_output).to(ctx.weight_dtype)
        return grad_hidden * grad_output.to(grad_hidden.dtype), weight_grad, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    *,
    chunk_rows: int = 256,
) -> torch.Tensor:
    """The causal-LM loss of ``labels`` (batch x length, -100 ignored) from the last hidden states
    (batch x length x hidden) and the output head's weight (vocabulary x hidden), shifted by one
    position as transformers shifts it; the sum is divided by ``num_items_in_batch`` (the Trainer's
    token count over the accumulated micro-batches) or else by this batch's labeled tokens. The
    matmuls run in the autocast dtype in effect here, else in the hidden states' dtype: call it under
    the training's autocast (accelerate applies it to the model's forward only, not to a loss
    computed after it; in fp32 the head's matmuls took 4x as long on an AMX CPU)."""
    shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX).reshape(-1)
    if num_items_in_batch is None:
        num_items_in_batch = (shifted != IGNORE_INDEX).sum()
    normalizer = torch.as_tensor(num_items_in_batch, device=hidden.device)
    flat = hidden.reshape(-1, hidden.shape[-1])
    dtype = compute_dtype(hidden.device.type, hidden.dtype)
    return LinearCrossEntropy.apply(flat, weight, shifted.to(flat.device), normalizer, chunk_rows, dtype)


NO_LOGITS = torch.empty(0, dtype=torch.long)  # logits_to_keep: no position gets logits


def chunked_loss_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The plain output head whose weight ``linear_cross_entropy`` can score with, or None where the
    model's logits are more than ``hidden @ weight.T`` (a bias, an adapter on the head, logit
    soft-capping or scaling, a loss other than the causal-LM one) or its forward cannot skip them."""
    if hasattr(model, "get_base_model"):  # a PEFT model: its forward passes logits_to_keep on
        model = model.get_base_model()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if any(getattr(config, key, None) not in (None, 1, 1.0) for key in ("final_logit_softcapping", "logit_scale")):
        return None
    if getattr(model.config, "loss_type", None) not in (None, "ForCausalLM"):
        return None
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return None
    return head


def skip_adapter_input_cast(model: torch.nn.Module, skip: bool = True) -> int:
    """For a model trained under autocast: let PEFT's adapters take their input in the dtype it
    comes in, since autocast casts their matmuls anyway (``skip=False`` restores PEFT's cast). Only
    under autocast: without it, PEFT's cast is what lets a bf16 base model feed fp32 adapters.
    Returns the adapter layers changed."""
    changed = 0
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = not skip
            changed += 1
    return changed
