"""Memory format of conv nets on this machine: channels-last or NCHW, decided by measurement.

On GPUs channels-last is the rule for conv nets (tensor cores want NHWC). On CPUs it depends on
the CPU: a ResNet-18 step ran 1.2x faster channels-last on a 2-core AVX2 EPYC, but ~5 % slower on
a 2-core Sapphire Rapids (AMX). A probe in the first steps of a run cannot resolve 5 % on a
shared 2-core machine, so the choice is measured once per CPU model, torch version, backbone and
input size (alternating the two formats, median of several rounds), cached in the user's cache
folder and reused; ``config.json`` records the choice and where it came from.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

CACHE_ENV = "WORKBENCH_CACHE_DIR"  # overrides the cache folder (tests point it at a tmp dir)
CACHE_FILE = "memory_format.json"
ROUNDS = 5  # alternating rounds per format
BATCH = 16  # images per measured step (2 views each)


def cache_dir() -> Path:
    """``$WORKBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/ssl-workbench`` (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ssl-workbench"


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's ``/proc/cpuinfo`` fields (Linux; else empty), read once."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the first processor's block
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> list[str]:
    """The CPU flags that decide which kernels are fastest: AVX*, AMX*, FMA (Linux; else [])."""
    flags = _cpuinfo().get("flags", "").split()
    return sorted({f for f in flags if f.startswith(("avx", "amx", "fma"))})


def cpu_kind() -> str:
    """A short name for the CPU's widest units: amx, avx512-bf16, avx512, avx2 or other.

    The model name does not tell these apart ("AMD EPYC" covers AVX2-only and AVX-512 parts),
    and they decide which memory format and precision are fastest.
    """
    flags = set(cpu_flags())
    for kind, flag in (("amx", "amx_tile"), ("avx512-bf16", "avx512_bf16"),
                       ("avx512", "avx512f"), ("avx2", "avx2")):  # fmt: skip
        if flag in flags:
            return kind
    return "other"


def cache_key(backbone: nn.Module, input_size: int) -> str:
    """What the choice depends on: CPU model and kind, torch version, threads, backbone, size."""
    n_params = sum(p.numel() for p in backbone.parameters())
    return (
        f"{cpu_model()} ({cpu_kind()}) | torch {torch.__version__} | "
        f"{torch.get_num_threads()} threads | "
        f"{type(backbone).__name__}({n_params}) | {int(input_size)}px"
    )


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def measure_step_seconds(
    backbone: nn.Module, input_size: int, rounds: int = ROUNDS
) -> dict[str, float]:
    """Median seconds of a forward + backward step in each format, alternating the formats.

    The backbone is copied: the caller's module and its weights are left as they are.

    Returns:
        ``{"nchw_s": ..., "channels_last_s": ...}``.
    """
    net = copy.deepcopy(backbone).train()
    gen = torch.Generator().manual_seed(0)  # the global RNG (the run's seeding) stays untouched
    x = torch.randn(2 * BATCH, 3, input_size, input_size, generator=gen)
    times: dict[bool, list[float]] = {False: [], True: []}

    def step(cl: bool) -> float:
        fmt = torch.channels_last if cl else torch.contiguous_format
        net.to(memory_format=fmt)  # type: ignore[call-overload]
        xi = x.contiguous(memory_format=fmt)
        t0 = time.perf_counter()
        net(xi).float().pow(2).mean().backward()
        dt = time.perf_counter() - t0
        net.zero_grad(set_to_none=True)
        return dt

    step(False), step(True)  # warm-up: oneDNN primitives for both formats
    for i in range(rounds):
        order = (False, True) if i % 2 == 0 else (True, False)
        for cl in order:
            times[cl].append(step(cl))
    return {
        "nchw_s": statistics.median(times[False]),
        "channels_last_s": statistics.median(times[True]),
    }


def choose_channels_last(
    backbone: nn.Module, accelerator: str, input_size: int, world_size: int = 1
) -> dict[str, Any]:
    """Whether to train ``backbone`` channels-last, and why (recorded in config.json).

    GPUs, non-conv backbones and multi-process runs (every rank must pick the same format)
    follow the rule (:func:`prefers_channels_last`); a conv net on one CPU process uses the
    cached measurement for this CPU model, torch version, backbone and input size, measuring it
    (a few seconds) the first time.

    Returns:
        ``{"channels_last": bool, "source": "rule" | "measured" | "cache", ...}`` with the
        measured step times and the cache key where measured.
    """
    from workbench.nn.backbones import prefers_channels_last

    rule = prefers_channels_last(backbone)
    if accelerator != "cpu" or not rule or world_size > 1:
        return {"channels_last": rule, "source": "rule"}
    key = cache_key(backbone, input_size)
    path = cache_dir() / CACHE_FILE
    cached = _read_cache(path).get(key)
    if isinstance(cached, dict) and "channels_last" in cached:
        return {**cached, "source": "cache", "key": key}
    times = measure_step_seconds(backbone, input_size)
    entry = {
        "channels_last": times["channels_last_s"] < times["nchw_s"],
        **{k: round(v, 5) for k, v in times.items()},
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[key] = entry
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: measure again next time rather than fail the run
    return {**entry, "source": "measured", "key": key}
