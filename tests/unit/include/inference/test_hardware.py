"""Hardware detection and the non-Intel policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from include.inference import DeviceNotAvailableError, UnsupportedHardwareError
from include.inference.hardware import HardwareInfo, check_hardware, detect_hardware, parse_cpuinfo

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8

processor\t: 1
vendor_id\t: SomethingElse
"""
AMD = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654\nflags\t\t: avx2 avx512f\n"


def test_cpuinfo_gives_vendor_model_and_flags() -> None:
    vendor, model, flags = parse_cpuinfo(INTEL)
    assert (vendor, model) == ("GenuineIntel", "Intel(R) Xeon(R) Platinum 8480+")
    assert flags == ["amx_bf16", "amx_int8", "amx_tile", "avx512f", "avx512_bf16", "avx512_vnni", "avx2"]
    assert parse_cpuinfo(AMD)[:2] == ("AuthenticAMD", "AMD EPYC 9654")


class FakeCore:
    available_devices = ["CPU"]

    def get_property(self, device: str, name: str) -> Any:
        return {"FULL_DEVICE_NAME": "Fake Xeon", "OPTIMIZATION_CAPABILITIES": ["FP32", "BF16"]}[name]


def test_detect_reads_cpuinfo_and_openvino(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(INTEL)
    info = detect_hardware("CPU", FakeCore(), str(cpuinfo))  # type: ignore[arg-type]
    assert info.is_intel
    assert info.has_amx
    assert (info.device_name, info.capabilities) == ("Fake Xeon", ["FP32", "BF16"])
    assert info.cpus >= 1
    assert "amx_bf16" in info.summary()


def test_a_device_that_is_not_present_is_named(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(INTEL)
    with pytest.raises(DeviceNotAvailableError, match=r"'NPU' is not present; available: CPU"):
        detect_hardware("NPU", FakeCore(), str(cpuinfo))  # type: ignore[arg-type]


def test_non_intel_fails_or_warns(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    amd = HardwareInfo(vendor="AuthenticAMD", cpu_model="AMD EPYC 9654", cpus=2)
    monkeypatch.delenv("AGENTFLOW_NON_INTEL_POLICY", raising=False)
    with pytest.raises(
        UnsupportedHardwareError, match=r"AuthenticAMD AMD EPYC 9654.*AGENTFLOW_NON_INTEL_POLICY=warn"
    ):
        check_hardware(amd)
    check_hardware(amd, "warn")
    assert "AuthenticAMD" in caplog.text
    monkeypatch.setenv("AGENTFLOW_NON_INTEL_POLICY", "warn")
    check_hardware(amd)  # the environment says warn
    with pytest.raises(UnsupportedHardwareError):
        check_hardware(amd, "fail")  # the argument wins
    check_hardware(HardwareInfo(vendor="GenuineIntel", cpu_model="x", cpus=1), "fail")
    with pytest.raises(ValueError, match="'fail' or 'warn'"):
        check_hardware(amd, "maybe")  # type: ignore[arg-type]


def test_this_machine_is_detected() -> None:
    info = detect_hardware("CPU")
    assert info.vendor != "unknown"
    assert "CPU" in info.available_devices
