"""Where and in what precision to compute: one answer for training, embedding and generation.

bf16 is chosen where the hardware computes it natively: GPUs that support it, and CPUs with
AVX512-BF16 or AMX. On other CPUs bf16 is emulated and runs several times slower than fp32,
so fp32 is the automatic choice there.
"""

from __future__ import annotations

from functools import cache

import torch
from accelerate import PartialState

from .errors import Llm4esError

DTYPE_NAMES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


@cache
def _cpuinfo_field(name: str) -> str:
    """The first ``name : value`` of /proc/cpuinfo ("" where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            line = next((line for line in info if line.split(":", 1)[0].strip() == name), "")
    except OSError:
        return ""
    return line.split(":", 1)[1].strip() if ":" in line else ""


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    return frozenset(_cpuinfo_field("flags").split())


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 matrix instructions (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def pick_device(device: str = "auto") -> str:
    """``auto``: CUDA, else Apple MPS, else CPU; any other value is used as given."""
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str = "auto", device: str = "cpu") -> torch.dtype:
    """``auto``: bf16 where ``device`` computes it natively (fp16 on older GPUs), else fp32."""
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPE_NAMES:
        raise Llm4esError(f"unknown dtype {dtype!r}; choose auto or one of {sorted(DTYPE_NAMES)}", key="dtype")
    return DTYPE_NAMES[dtype]


def training_precision() -> dict[str, bool]:
    """``bf16``/``fp16``/``use_cpu`` for transformers' TrainingArguments on this machine."""
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16, "use_cpu": False}
    return {"bf16": cpu_has_native_bf16(), "fp16": False, "use_cpu": True}


def describe() -> dict[str, object]:
    """What benchmarks print beside each figure: device, CPU bf16 support and the automatic dtype."""
    device = pick_device()
    return {
        "device": device,
        "cpu": _cpuinfo_field("model name"),
        "cpu_bf16": cpu_has_native_bf16(),
        "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2"))),
        "auto_dtype": str(pick_dtype("auto", device)).replace("torch.", ""),
    }


def process_state() -> PartialState:
    """This process' place in an ``accelerate launch`` (or torchrun) job: index, count, device.

    Where torch sees no accelerator it asks for CPU processes (gloo). Trap (accelerate 1.15): the
    torchrun launcher that recipes/accelerate_configs/cpu.yaml selects does not export
    ACCELERATE_USE_CPU, so a bare ``PartialState()`` there finds no backend and every process
    believes it is the only one (transformers' TrainingArguments passes ``cpu=True`` itself).
    """
    return PartialState(cpu=not torch.accelerator.is_available())
