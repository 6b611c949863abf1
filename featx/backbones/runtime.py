"""`--runtime openvino`: the frozen backbone compiled by OpenVINO for the CPU, instead of run by torch.

Measured on this 2-core machine (bench/runtime.py; numbers in bench/README.md), tf_efficientnet_lite0 at 224 px:
OpenVINO float32 runs the model 3.6x as fast as torch float32 channels_last (2.1x end to end, where decoding
then takes half the time), with the same features (cosine 0.9999998 per row, relative L2 3e-6). bfloat16 (AMX / AVX-512 BF16) is faster again but not the same features:
minimum cosine 0.993, relative L2 0.12 per row on synthetic frames with the bundled ImageNet weights, so it runs
only when asked (`--precision bfloat16`); auto is float32. The model is converted once (torch -> OpenVINO IR,
seconds to a minute) and the IR is cached on disk under a key of everything that decides it: the backbone, its
weights' sha256, the layer tapped, the input shape, and the torch and OpenVINO versions (`cache_dir()`);
OpenVINO's own CACHE_DIR keeps the compiled blob per precision, so a second run starts in about a second.

The batch axis is dynamic (the last batch of a run is smaller); the rest of the input shape is fixed by the
config. Precision: float32 (auto) or bfloat16 (`--precision`); float16 is refused. The runtime and the precision
are the store's identity.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from featx.errors import FeatxError

RUNTIMES = ("torch", "openvino")
_OV_PRECISION = {"float32": "f32", "bfloat16": "bf16"}
CACHE_ENV = "FEATX_CACHE"  # overrides ~/.cache/featx


def require_openvino():
    try:
        import openvino
    except ImportError:
        raise FeatxError("--runtime openvino needs OpenVINO: pip install 'featx[fast]'") from None
    return openvino


def cpu_has_bf16() -> bool:
    """Whether OpenVINO runs bfloat16 natively on this CPU (AMX or AVX-512 BF16)."""
    ov = require_openvino()
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve(precision: str) -> str:
    """The precision OpenVINO runs at: auto is float32 (the features torch's float32 gives, to 1e-5)."""
    if precision == "auto":
        return "float32"
    if precision == "bfloat16" and not cpu_has_bf16():
        raise FeatxError("--precision bfloat16: this CPU has no native bfloat16 (AMX or AVX-512 BF16); use float32")
    if precision not in _OV_PRECISION:
        raise FeatxError(f"--runtime openvino runs float32 or bfloat16, not --precision {precision}")
    return precision


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "featx") / "openvino"


def _key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


class OpenVINOModel:
    """A torch module's forward compiled by OpenVINO: float32 torch tensor in, float32 torch tensor out."""

    def __init__(self, compiled, threads: int):
        self._compiled, self.threads = compiled, threads
        self._request = compiled.create_infer_request()

    def __call__(self, x):
        import torch

        out = self._request.infer([x.detach().contiguous().cpu().numpy()])[self._compiled.output(0)]
        return torch.from_numpy(out.copy())

    def parameters(self):  # nothing to freeze: the weights live in the compiled model
        return iter(())


def compile_model(model, example_shape: tuple[int, ...], precision: str, identity: dict, threads: int) -> OpenVINOModel:
    """`model` (frozen, eval, on the CPU) compiled for inputs (B, *example_shape[1:]) at `precision`, through the
    on-disk IR cache keyed by `identity` (plus the shape and versions)."""
    ov = require_openvino()
    import torch

    key = _key({**identity, "shape": list(example_shape[1:]), "torch": torch.__version__, "openvino": ov.__version__})
    folder = cache_dir()
    xml = folder / f"{key}.xml"
    if not xml.is_file():
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on torch internals: nothing a user can act on
                converted = ov.convert_model(model, example_input=torch.zeros(example_shape))
        except Exception as exc:  # a model OpenVINO's frontend cannot trace: say so, and how to go on
            raise FeatxError(f"OpenVINO could not convert this backbone ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:160]}); use --runtime torch") from None
        converted.reshape([-1, *example_shape[1:]])  # any batch size
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{key}.{os.getpid()}.xml"
        ov.save_model(converted, partial, compress_to_fp16=False)
        os.replace(partial.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(partial, xml)  # the .xml last: it is what marks the entry complete
    core = ov.Core()
    core.set_property({"CACHE_DIR": str(folder / "compiled")})
    compiled = core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
                                                    "INFERENCE_NUM_THREADS": threads})
    return OpenVINOModel(compiled, threads)
