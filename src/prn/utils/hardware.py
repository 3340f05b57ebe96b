"""What this machine's CPU can do in bfloat16, for ``trainer.precision=bf16-mixed`` on a CPU.

oneDNN runs bf16 convolutions and matmuls natively only on CPUs with AVX512-BF16 or AMX
(doubling the arithmetic peak of AVX-512 float32); elsewhere it converts to float32 and
back, so bf16 autocast brings no speed there, only rounding.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

log = logging.getLogger(__name__)


def _cpu_flag(probe_name: str) -> bool:
    """``torch.cpu._is_<flag>_supported()``; False where this torch build lacks the probe."""
    probe = getattr(torch.cpu, probe_name, None)
    return bool(probe()) if callable(probe) else False


def cpu_bf16_support() -> dict[str, Any]:
    """The vector capability torch dispatches to and the CPU's bf16 instructions."""
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": _cpu_flag("_is_avx512_bf16_supported"),
        "amx": _cpu_flag("_is_amx_tile_supported"),
    }


def cpu_has_native_bf16() -> bool:
    """True where bf16 convolutions and matmuls run on bf16 instructions (AVX512-BF16 or AMX).

    A CPU that has them but is held below AVX-512 (``ATEN_CPU_CAPABILITY=avx2`` for torch's kernels,
    ``ONEDNN_MAX_CPU_ISA=AVX2`` for oneDNN's, as when timing what an AVX2-only machine does) emulates bf16.
    """
    support = cpu_bf16_support()
    held_below_avx512 = not support["capability"].startswith("AVX512") or _onednn_isa_below_avx512()
    return (support["avx512_bf16"] or support["amx"]) and not held_below_avx512


def _onednn_isa_below_avx512() -> bool:
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL"
    return limit.upper() != "ALL" and not limit.upper().startswith(("AVX512", "AVX10"))


def training_precision(precision: str | int, accelerator: str) -> str | int:
    """``precision`` for Lightning, with ``auto`` resolved to what measured fastest at equal metrics.

    ``auto``: bf16-mixed when training runs on a CPU with native bf16 (bottle, schedule=cpu: steps
    1.7–2.5× faster, metrics within the float32 seed spread; docs/results.md, "Speed"), 32-true elsewhere (on
    an H200 bf16 was 1.04–1.33× slower at batch 8–64; without bf16 instructions it is emulated).
    Test and predict run in float32 either way (``PRNModule.predict_maps_and_scores``).
    """
    if precision != "auto":
        return precision
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    return "bf16-mixed" if on_cpu and cpu_has_native_bf16() else "32-true"


def warn_if_bf16_is_emulated(precision: str | int, device: torch.device) -> None:
    """Log a warning when a CPU run asks for bf16 that this CPU can only emulate."""
    if device.type == "cpu" and str(precision).startswith("bf16") and not cpu_has_native_bf16():
        log.warning(
            "trainer.precision=%s on a CPU without AVX512-BF16 or AMX (%s): bf16 is emulated here and "
            "will not be faster; use trainer.precision=32-true",
            precision,
            cpu_bf16_support(),
        )
