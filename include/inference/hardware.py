"""What hardware an inference runs on: CPU vendor, model and ISA flags, OpenVINO device.

Read from ``/proc/cpuinfo`` and ``ov.Core().get_property(device, ...)``. Inference is meant for
Intel CPUs (the worker pool behind the ``intel`` queue); elsewhere :func:`check_hardware`
fails with a clear message, or only warns when the policy (argument, or
``AGENTFLOW_NON_INTEL_POLICY=warn``) says so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from include.inference._errors import DeviceNotAvailableError, UnsupportedHardwareError

if TYPE_CHECKING:
    import openvino as ov

log = logging.getLogger(__name__)

HardwarePolicy = Literal["fail", "warn"]
#: The ISA flags that matter for OpenVINO's CPU plugin, as /proc/cpuinfo spells them.
TRACKED_FLAGS = (
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "avx_vnni",
    "avx2",
)
INTEL_VENDOR = "GenuineIntel"


class HardwareInfo(BaseModel):
    """The hardware an inference runs on.

    :param vendor: the CPU vendor id (``GenuineIntel``, ``AuthenticAMD``, ...).
    :param cpu_model: the CPU model name.
    :param flags: the tracked ISA flags present (see :data:`TRACKED_FLAGS`).
    :param cpus: CPUs this process may run on (``os.sched_getaffinity``).
    :param device: the OpenVINO device asked for.
    :param device_name: OpenVINO's ``FULL_DEVICE_NAME`` of that device.
    :param available_devices: what OpenVINO can see.
    :param capabilities: OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the device.
    :param precision: the inference precision in effect (after compiling), if known.
    """

    vendor: str
    cpu_model: str
    flags: list[str] = Field(default_factory=list)
    cpus: int
    device: str = "CPU"
    device_name: str | None = None
    available_devices: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    precision: str | None = None

    @property
    def is_intel(self) -> bool:
        """Whether the CPU is an Intel one."""
        return self.vendor == INTEL_VENDOR

    @property
    def has_amx(self) -> bool:
        """Whether the CPU has AMX with BF16 (where OpenVINO runs f32 models in bf16)."""
        return "amx_bf16" in self.flags

    def summary(self) -> str:
        """One line for the task log."""
        return (
            f"{self.vendor} {self.cpu_model}, {self.cpus} CPU(s), flags [{' '.join(self.flags) or 'none'}], "
            f"OpenVINO device {self.device} ({self.device_name}), precision {self.precision or 'n/a'}"
        )


def parse_cpuinfo(text: str) -> tuple[str, str, list[str]]:
    """Vendor, model name and tracked flags of the first processor in ``/proc/cpuinfo`` text."""
    vendor, model, flags = "unknown", "unknown", set[str]()
    for line in text.splitlines():
        if not line.strip():
            if vendor != "unknown":
                break  # the first processor block is enough
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "vendor_id":
            vendor = value
        elif key == "model name":
            model = value
        elif key in ("flags", "Features"):
            flags = set(value.split())
    return vendor, model, [f for f in TRACKED_FLAGS if f in flags]


def affinity_cpus() -> int:
    """CPUs this process may run on (a worker pinned with ``cpuset`` sees its own)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def detect_hardware(
    device: str = "CPU", core: ov.Core | None = None, cpuinfo_path: str = "/proc/cpuinfo"
) -> HardwareInfo:
    """Read the hardware facts (cheap: no model is compiled).

    :raises DeviceNotAvailableError: ``device`` is not one OpenVINO can see.
    """
    try:
        vendor, model, flags = parse_cpuinfo(Path(cpuinfo_path).read_text())
    except OSError:
        vendor, model, flags = "unknown", "unknown", []
    if core is None:
        import openvino as ov

        core = ov.Core()
    available = list(core.available_devices)
    base = device.split(".")[0]
    if base != "AUTO" and not any(d.split(".")[0] == base for d in available):
        raise DeviceNotAvailableError(
            f"OpenVINO device {device!r} is not present; available: {', '.join(available) or 'none'}"
        )
    probe = "CPU" if base == "AUTO" else device
    name = str(core.get_property(probe, "FULL_DEVICE_NAME"))
    caps = [str(c) for c in core.get_property(probe, "OPTIMIZATION_CAPABILITIES")]
    return HardwareInfo(
        vendor=vendor,
        cpu_model=model,
        flags=flags,
        cpus=affinity_cpus(),
        device=device,
        device_name=name,
        available_devices=available,
        capabilities=caps,
    )


def hardware_policy(policy: HardwarePolicy | None = None) -> HardwarePolicy:
    """The policy in effect: the argument, else ``AGENTFLOW_NON_INTEL_POLICY``, else ``fail``."""
    value = policy or os.environ.get("AGENTFLOW_NON_INTEL_POLICY", "fail")
    if value not in ("fail", "warn"):
        raise ValueError(f"hardware policy must be 'fail' or 'warn', not {value!r}")
    return value  # type: ignore[return-value]


def check_hardware(info: HardwareInfo, policy: HardwarePolicy | None = None) -> None:
    """Refuse (or warn about) a CPU that is not Intel's.

    :raises UnsupportedHardwareError: non-Intel CPU and the policy is ``fail``.
    """
    if info.is_intel:
        return
    message = (
        f"OpenVINO inference runs on Intel workers (queue 'intel'), but this CPU is "
        f"{info.vendor} {info.cpu_model}; route the task to the intel queue, or set "
        "AGENTFLOW_NON_INTEL_POLICY=warn to run anyway"
    )
    if hardware_policy(policy) == "fail":
        raise UnsupportedHardwareError(message)
    log.warning("%s", message)
