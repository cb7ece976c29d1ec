"""The GPUs this process can see: name, memory (total, free, used by others), capability, bf16.

torch is imported inside the functions, so importing this module costs nothing. Memory used by
other processes comes from NVML (the `pynvml` module of nvidia-ml-py) when it is installed;
without it that figure is unknown (None) rather than guessed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GPU:
    """One visible CUDA device.

    Attributes:
        index: the CUDA index in this process (after CUDA_VISIBLE_DEVICES).
        name: the device name.
        total: memory in bytes.
        free: free memory in bytes (`torch.cuda.mem_get_info`; this process's own CUDA context,
            created to ask, is already taken from it).
        used_by_others: bytes other processes hold (NVML), or None when unknown.
        capability: compute capability (major, minor).
        bf16: whether the device computes in bfloat16 (Ampere, compute capability 8.0, and later).
    """

    index: int
    name: str
    total: int
    free: int
    used_by_others: int | None
    capability: tuple[int, int]
    bf16: bool

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["capability"] = f"{self.capability[0]}.{self.capability[1]}"
        return data


def visible() -> list[GPU]:
    """Every GPU this process can use; an empty list when torch sees no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [describe(i) for i in range(torch.cuda.device_count())]


def describe(index: int) -> GPU:
    """Facts about CUDA device `index`."""
    import torch

    props = torch.cuda.get_device_properties(index)
    free, total = torch.cuda.mem_get_info(index)
    major, minor = props.major, props.minor
    return GPU(
        index=index,
        name=props.name,
        total=int(total),
        free=int(free),
        used_by_others=_used_by_others(props),
        capability=(major, minor),
        bf16=major >= 8,
    )


def _used_by_others(props: Any) -> int | None:
    """Memory held by processes other than this one, from NVML; None when NVML cannot say."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver library, or no permission
        return None
    try:
        handle = _nvml_handle(pynvml, props)
        if handle is None:
            return None
        me = os.getpid()
        used = 0
        for getter in (
            pynvml.nvmlDeviceGetComputeRunningProcesses,
            pynvml.nvmlDeviceGetGraphicsRunningProcesses,
        ):
            for proc in getter(handle):
                if proc.pid != me and proc.usedGpuMemory:
                    used += int(proc.usedGpuMemory)
        return used
    except Exception:  # NVML says "not supported" on some cards and in some containers
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _nvml_handle(pynvml: Any, props: Any) -> Any:
    """The NVML handle of the device torch describes (NVML numbers devices its own way)."""
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        text = str(uuid)
        return pynvml.nvmlDeviceGetHandleByUUID(text if text.startswith("GPU-") else f"GPU-{text}")
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None:
        domain = getattr(props, "pci_domain_id", 0)
        device = getattr(props, "pci_device_id", 0)
        return pynvml.nvmlDeviceGetHandleByPciBusId(f"{domain:08x}:{bus:02x}:{device:02x}.0")
    return None
