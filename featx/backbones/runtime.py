"""`--runtime`: what runs the frozen backbone. torch, or OpenVINO's model compiled for the CPU; `auto` (the
default) picks OpenVINO at float32 on the CPU when it converts the backbone and gives torch float32's features.

Measured on this 2-core machine (bench/runtime.py; numbers in bench/README.md), tf_efficientnet_lite0 at 224 px:
OpenVINO float32 runs the model 3.4x as fast as torch float32 channels_last (2.0x end to end, where decoding
then takes half the time), with the same features (cosine 0.9999998 per row, relative L2 3e-6). bfloat16 (AMX /
AVX-512 BF16) is faster again but not the same features: minimum cosine 0.990, relative L2 0.15 per row on
synthetic frames with the bundled ImageNet weights, so it runs only when asked (`--precision bfloat16`).

The model is converted once (torch -> OpenVINO IR, seconds to a minute) and the IR is cached on disk under a key
of everything that decides it: the backbone, its weights' sha256, the layer tapped, the input shape, and the torch
and OpenVINO versions (`cache_dir()`); OpenVINO's own CACHE_DIR keeps the compiled blob per precision, so a second
run starts in about a second. Next to the IR, `<key>.json` records the conversion's check against torch float32
(or why it could not convert) and the IR's sha256, so `auto` decides once per key and a damaged IR converts again. Converting sends OpenVINO's usage telemetry
nowhere (featx converts on the user's behalf; `_no_telemetry`).

The batch axis is dynamic (the last batch of a run is smaller); the rest of the input shape is fixed by the
config. The runtime and the precision are the store's identity; resuming a store under `auto` keeps the store's
(`settle_for_store`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

from featx.errors import FeatxError

RUNTIMES = ("torch", "openvino")
_OV_PRECISION = {"float32": "f32", "bfloat16": "bf16"}
CACHE_ENV = "FEATX_CACHE"  # overrides ~/.cache/featx
# `auto` takes OpenVINO only when its features on a random batch are torch float32's to this minimum cosine per
# row (the bound the tests hold every family to); measured 0.9999998 on the default backbone.
MIN_COSINE = 0.9999


def require_openvino():
    try:
        import openvino
    except ImportError:
        raise FeatxError("--runtime openvino needs OpenVINO: pip install openvino (featx's base install has it)") from None
    return openvino


def has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


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


def settle_runtime(config, out, compile: bool = False):
    """--runtime auto as a run into the store `out` can take it: the store's runtime and precision where `out` is
    a store (`settle_for_store`); torch with --compile (torch.compile compiles torch's module)."""
    from featx.store import read_config

    if compile and config.runtime == "openvino":
        raise FeatxError("--compile is torch.compile: leave it out with --runtime openvino (compiled already)")
    config = settle_for_store(config, read_config(out), str(out))
    return dataclasses.replace(config, runtime="torch") if compile and config.runtime == "auto" else config


def settle_for_store(config, existing, where: str):
    """`config` to extend the store at `where` whose config is `existing` (None: a new store): under --runtime
    auto, the store's runtime and (under --precision auto) its precision, so that a store started on one machine
    stays one store on another; one line saying how to go on where this machine cannot run them."""
    if config.runtime != "auto" or existing is None:
        return config
    config = dataclasses.replace(config, runtime=existing.runtime,
                                 precision=existing.precision if config.precision == "auto" else config.precision)
    if existing.runtime == "openvino":
        ran = f"{where} was extracted by OpenVINO at {existing.precision}"
        if not has_openvino():
            raise FeatxError(f"{ran}, which is not installed here: pip install openvino to extend it, or give another --out")
        if existing.precision == "bfloat16" and not cpu_has_bf16():
            raise FeatxError(f"{ran}, which this CPU cannot run (no AMX or AVX-512 BF16): extend it on such a CPU, "
                             "or give another --out")
    return config


def automatic(config, device) -> bool:
    """Whether --runtime auto tries OpenVINO: on the CPU, RGB, at a precision OpenVINO runs, where installed."""
    wanted = config.precision in ("auto", "float32") or config.precision == "bfloat16" and has_openvino() and cpu_has_bf16()
    return device.type == "cpu" and config.stream == "rgb" and wanted and has_openvino()


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


@contextlib.contextmanager
def _no_telemetry():
    """OpenVINO's converter sends usage events to Google Analytics unless its user opted out (and writes ~/intel):
    featx converts on its users' behalf and sends nothing, so the converter's telemetry modules get OpenVINO's
    own stand-in (`telemetry_stub`, what it uses where openvino_telemetry is not installed) while it runs."""
    try:
        from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils, utils  # noqa: F401
    except ImportError:  # a layout this code does not know: nothing to swap
        yield
        return
    modules = [m for name, m in list(sys.modules.items()) if name.startswith("openvino.tools.ovc")
               and getattr(m, "tm", None) is not None and m.tm is not telemetry_stub]
    saved = [(m, m.tm) for m in modules]
    for m in modules:
        m.tm = telemetry_stub
    try:
        yield
    finally:
        for m, tm in saved:
            m.tm = tm


def _convert(ov, model, example_shape: tuple[int, ...]):
    """`model` as an OpenVINO model (batch axis dynamic); FeatxError with OpenVINO's reason when it cannot."""
    import torch

    try:
        with torch.inference_mode(), warnings.catch_warnings(), _no_telemetry():
            warnings.simplefilter("ignore")  # the tracer's notes on torch internals: nothing a user can act on
            converted = ov.convert_model(model, example_input=torch.zeros(example_shape))
    except Exception as exc:  # a model OpenVINO's frontend cannot trace: say so, and how to go on
        raise FeatxError(f"OpenVINO could not convert this backbone ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); use --runtime torch") from None
    converted.reshape([-1, *example_shape[1:]])  # any batch size
    return converted


def _saved(ov, converted, xml: Path):
    """Where to compile `converted` from: the IR saved at `xml` (written under a temporary name, then renamed,
    the .xml last), or the model itself, with one warning line, where the cache folder cannot be written."""
    partial = xml.parent / f".{xml.stem}.{os.getpid()}.xml"
    try:
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(converted, partial, compress_to_fp16=False)
        os.replace(partial.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(partial, xml)
    except OSError as exc:
        print(f"warning: cannot keep the converted model in {xml.parent} ({exc.strerror or exc}); it converts again "
              f"on every run: set {CACHE_ENV} to a writable folder", file=sys.stderr, flush=True)
        return converted
    return xml


def _ir_digest(xml: Path) -> str | None:
    """sha256 of the IR's two files (.xml, .bin), or None where either is missing."""
    from featx.digests import file_sha256

    files = (xml, xml.with_suffix(".bin"))
    return ":".join(file_sha256(f) for f in files) if all(f.is_file() for f in files) else None


def _intact(xml: Path, verdict: dict | None) -> bool:
    """Whether the cached IR at `xml` is the one `verdict` was measured on (its files' sha256)."""
    return verdict is not None and verdict.get("ir_sha256") is not None and verdict["ir_sha256"] == _ir_digest(xml)


def agreement(model, compiled: OpenVINOModel, example_shape: tuple[int, ...]) -> dict:
    """How closely the compiled model's outputs follow torch float32's on a seeded random batch of two inputs:
    {"min_cosine", "max_relative_l2"} per row."""
    import torch

    x = torch.randn((2, *example_shape[1:]), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = model(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x).float().flatten(1)
    got = compiled(x).float().flatten(1)
    cosine = torch.nn.functional.cosine_similarity(got.double(), want.double(), dim=1)
    relative = (got - want).double().norm(dim=1) / want.double().norm(dim=1).clamp_min(1e-12)
    return {"min_cosine": float(cosine.min()), "max_relative_l2": float(relative.max())}


def _write_json(path: Path, data: dict) -> None:
    """Best effort: an unwritable cache folder only means the next run decides again (`_saved` warned)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(data, sort_keys=True))
        os.replace(partial, path)
    except OSError:
        pass


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def compile_model(model, example_shape: tuple[int, ...], precision: str, identity: dict, threads: int,
                  required: bool = True) -> OpenVINOModel | None:
    """`model` (frozen, eval, on the CPU) compiled for inputs (B, *example_shape[1:]) at `precision`, through the
    on-disk IR cache keyed by `identity` (plus the shape and versions). required=False (--runtime auto): None,
    instead of an error, where OpenVINO cannot convert the model or its float32 features are not torch's to
    MIN_COSINE; that verdict is kept beside the IR, so it is reached once per key."""
    ov = require_openvino()
    import torch

    key = _key({**identity, "shape": list(example_shape[1:]), "torch": torch.__version__, "openvino": ov.__version__})
    xml, verdict_file = cache_dir() / f"{key}.xml", cache_dir() / f"{key}.json"
    verdict = _read_json(verdict_file)
    if verdict is not None and "why" in verdict:  # OpenVINO could not convert it: tried once per key
        if required:
            raise FeatxError(verdict["why"])
        return None
    source = xml
    if not _intact(xml, verdict):  # new, or damaged: converted (again), and measured again
        verdict = None
        try:
            source = _saved(ov, _convert(ov, model, example_shape), xml)
        except FeatxError as exc:
            _write_json(verdict_file, {"ok": False, "why": str(exc)})
            if required:
                raise
            return None
    compiled = _compile(ov, source, precision, threads)
    if verdict is None:  # measured once per converted model, at float32
        check = compiled if precision == "float32" else _compile(ov, source, "float32", threads)
        verdict = agreement(model, check, example_shape)
        verdict["ok"] = verdict["min_cosine"] >= MIN_COSINE
        if source == xml:
            _write_json(verdict_file, {**verdict, "ir_sha256": _ir_digest(xml)})
    if verdict.get("ok"):
        return compiled
    if required:
        print(f"warning: OpenVINO's float32 features of this backbone are not torch's (minimum cosine "
              f"{verdict.get('min_cosine', float('nan')):.6f} on a random batch); --runtime torch gives torch's",
              file=sys.stderr, flush=True)
        return compiled
    return None


def _compile(ov, source, precision: str, threads: int) -> OpenVINOModel:
    """`source` (an IR's path, or an OpenVINO model) compiled for the CPU; OpenVINO keeps the compiled blob of an
    IR file in its CACHE_DIR beside the IRs."""
    core = ov.Core()
    if isinstance(source, Path):
        core.set_property({"CACHE_DIR": str(source.parent / "compiled")})
        source = str(source)
    return OpenVINOModel(core.compile_model(source, "CPU", {"INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
                                                            "INFERENCE_NUM_THREADS": threads}), threads)
