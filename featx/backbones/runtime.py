"""`--runtime`: what runs the frozen backbone, torch or OpenVINO's model compiled for the CPU
(featx.backbones.openvino_model), and `auto` (the default), which picks OpenVINO at float32 on the CPU where
it converts the backbone and gives torch float32's outputs, else torch.

Measured on this 2-core machine (bench/runtime.py; numbers in bench/README.md), tf_efficientnet_lite0 at 224 px:
OpenVINO float32 runs the model 3.4x as fast as torch float32 channels_last (2.0x end to end, where decoding
then takes half the time), with the same features (cosine 0.9999998 per row, relative L2 3e-6). bfloat16 (AMX /
AVX-512 BF16) is faster again but not the same features: minimum cosine 0.990, relative L2 0.15 per row on
synthetic frames with the bundled ImageNet weights, so it runs only when asked (`--precision bfloat16`); int8
(NNCF) fell to 0.94 (bench/int8.py) and is not offered.

The runtime and the precision are the store's identity; a run into an existing store under `auto` takes the
store's (`settle_for_store`), so a store started on one machine stays one store on another.
"""

from __future__ import annotations

import dataclasses

from featx.errors import FeatxError

OPENVINO_PRECISIONS = ("float32", "bfloat16")


def require_openvino():
    from featx.backbones.openvino_model import import_openvino

    try:
        return import_openvino()
    except ImportError:
        raise FeatxError("--runtime openvino needs OpenVINO: pip install openvino (featx's base install has it)") from None


def has_openvino() -> bool:
    try:
        require_openvino()
    except FeatxError:
        return False
    return True


def cpu_has_bf16() -> bool:
    """Whether OpenVINO runs bfloat16 natively on this CPU (AMX or AVX-512 BF16)."""
    from featx.backbones.openvino_model import shared_core

    return "BF16" in shared_core(require_openvino()).get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve(precision: str) -> str:
    """The precision OpenVINO runs at: auto is float32 (the features torch's float32 gives, to 1e-5)."""
    if precision == "auto":
        return "float32"
    if precision == "bfloat16" and not cpu_has_bf16():
        raise FeatxError("--precision bfloat16: this CPU has no native bfloat16 (AMX or AVX-512 BF16); use float32")
    if precision not in OPENVINO_PRECISIONS:
        raise FeatxError(f"--runtime openvino runs float32 or bfloat16, not --precision {precision}")
    return precision


def settle_runtime(config, out, compile: bool = False, device: str = "auto"):
    """(config, device) as a run into the store `out` takes them: under --runtime auto the store's runtime and
    precision where `out` is a store (`settle_for_store`), torch with --compile (torch.compile compiles torch's
    module); device auto is the CPU for OpenVINO."""
    from featx.store import read_config

    if compile and config.runtime == "openvino":
        raise FeatxError("--compile is torch.compile: leave it out with --runtime openvino (compiled already)")
    if compile and config.runtime == "auto":
        config = dataclasses.replace(config, runtime="torch")
    config = settle_for_store(config, read_config(out), str(out))
    return config, "cpu" if config.runtime == "openvino" and device == "auto" else device


def settle_for_store(config, existing, where: str):
    """`config` to extend the store at `where` whose config is `existing` (None: a new store): the store's runtime
    under --runtime auto, and its precision under --precision auto (the same runtime asked for, or auto), so that a
    store started on one machine stays one store on another; one line saying how to go on where this machine
    cannot run them. A store OpenVINO made is not carried into settings OpenVINO does not run (--stream flow, a
    precision it lacks): auto then runs torch, and the store's own check names what differs."""
    if existing is None:
        return config
    runtime = existing.runtime if config.runtime == "auto" else config.runtime
    precision = existing.precision if config.precision == "auto" and runtime == existing.runtime else config.precision
    if config.runtime == "auto" and runtime == "openvino" and (config.stream != "rgb" or precision not in OPENVINO_PRECISIONS):
        return config
    if config.runtime == "auto" and runtime == "openvino":
        ran = f"{where} was extracted by OpenVINO at {precision}"
        if not has_openvino():
            raise FeatxError(f"{ran}, which is not installed here: pip install openvino to extend it, or give another --out")
        if precision == "bfloat16" and not cpu_has_bf16():
            raise FeatxError(f"{ran}, which this CPU cannot run (no AMX or AVX-512 BF16): extend it on such a CPU, "
                             "or give another --out")
    return dataclasses.replace(config, runtime=runtime, precision=precision)


def automatic(config, device) -> bool:
    """Whether --runtime auto tries OpenVINO: on the CPU, RGB, at a precision OpenVINO runs, where installed."""
    if device.type != "cpu" or config.stream != "rgb" or not has_openvino():
        return False
    return config.precision in ("auto", "float32") or config.precision == "bfloat16" and cpu_has_bf16()
