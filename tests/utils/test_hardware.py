"""The CPU's bf16 support, and the warning when a CPU run asks for bf16 it can only emulate."""

import logging

import torch

from prn.utils import hardware


def test_support_names_the_capability_and_the_bf16_instructions():
    support = hardware.cpu_bf16_support()
    assert support["capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(support["avx512_bf16"], bool) and isinstance(support["amx"], bool)
    held_below = not support["capability"].startswith("AVX512")
    assert hardware.cpu_has_native_bf16() == ((support["avx512_bf16"] or support["amx"]) and not held_below)


def test_bf16_instructions_do_not_count_while_torch_or_onednn_is_held_to_avx2(monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 / ONEDNN_MAX_CPU_ISA=AVX2 time an AVX2-only machine: bf16 is emulated there."""
    monkeypatch.setattr(
        hardware, "cpu_bf16_support", lambda: {"capability": "AVX512", "avx512_bf16": True, "amx": False}
    )
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert hardware.cpu_has_native_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert hardware.cpu_has_native_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not hardware.cpu_has_native_bf16()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: {"capability": "AVX2", "avx512_bf16": True, "amx": False})
    assert not hardware.cpu_has_native_bf16()


def test_bf16_on_a_cpu_without_bf16_instructions_warns_and_names_the_fix(monkeypatch, caplog):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger=hardware.__name__):
        hardware.warn_if_bf16_is_emulated("32-true", torch.device("cpu"))
        hardware.warn_if_bf16_is_emulated("bf16-mixed", torch.device("cuda"))
        assert not caplog.records
        hardware.warn_if_bf16_is_emulated("bf16-mixed", torch.device("cpu"))
    assert len(caplog.records) == 1 and "trainer.precision=32-true" in caplog.text


def test_bf16_on_a_cpu_with_bf16_instructions_is_silent(monkeypatch, caplog):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level(logging.WARNING, logger=hardware.__name__):
        hardware.warn_if_bf16_is_emulated("bf16-mixed", torch.device("cpu"))
    assert not caplog.records


def test_auto_precision_trains_in_bf16_only_on_a_cpu_with_bf16_instructions(monkeypatch):
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    assert hardware.training_precision("auto", "cpu") == "bf16-mixed"
    assert hardware.training_precision("auto", "auto") == "bf16-mixed"
    assert hardware.training_precision("auto", "gpu") == "32-true"
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    assert hardware.training_precision("auto", "cpu") == "32-true"


def test_auto_precision_on_a_machine_with_a_gpu_is_float32(monkeypatch):
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    assert hardware.training_precision("auto", "auto") == "32-true"
    assert hardware.training_precision("auto", "cpu") == "bf16-mixed"


def test_an_explicit_precision_is_kept(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    assert hardware.training_precision("32-true", "cpu") == "32-true"
    assert hardware.training_precision("bf16-mixed", "gpu") == "bf16-mixed"
