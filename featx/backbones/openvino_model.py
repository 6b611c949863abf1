"""The backbone as OpenVINO's model for the CPU: converted once from torch (the IR cached on disk), compiled, and
checked against torch float32 on every load.

The IR is cached under `cache_dir()` by a key of everything that decides it: the backbone, its weights' sha256,
the layer tapped, inflation, mean cube, the input shape, and the versions of torch, OpenVINO, timm and
transformers; OpenVINO's own CACHE_DIR keeps the compiled blob per precision, so a second run starts in about a
second. Each load checks the IR's files against the sha256 recorded when it was written (a damaged file is converted
again, never read: a damaged IR can abort OpenVINO), compiles it at float32 and compares its outputs with torch float32's on a seeded random batch
of two inputs (`agreement`; milliseconds for a 2D backbone, seconds for the largest clip models): a cached IR that
no longer agrees (damaged, or made from model code that has changed since) is converted again, and a model that
does not agree when fresh is recorded as such in `<key>.json` beside the IR, as is a model OpenVINO cannot
convert, so that `--runtime auto` decides once per key to run torch.

OpenVINO sends usage events to Google Analytics at import and on conversion unless its user opted out, and writes
~/intel: featx imports and converts on its users' behalf and sends nothing (`import_openvino`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

from featx.errors import FeatxError, exception_line

_OV_PRECISION = {"float32": "f32", "bfloat16": "bf16"}
CACHE_ENV = "FEATX_CACHE"  # overrides ~/.cache/featx
# OpenVINO's outputs must be torch float32's to this minimum cosine per row on the check batch (the bound the
# tests hold every family to); measured 0.9999998 on the default backbone.
MIN_COSINE = 0.9999


def import_openvino():
    """`import openvino` with its usage telemetry off: while OpenVINO imports, `openvino_telemetry` cannot be
    imported, so its converter binds its own stand-in (`telemetry_stub`, what it uses where that package is not
    installed) for good; other code can import openvino_telemetry afterwards. ImportError where OpenVINO is not
    installed."""
    if "openvino" not in sys.modules and "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # makes its import raise ImportError
        try:
            import openvino  # noqa: F401
        finally:
            del sys.modules["openvino_telemetry"]
    import openvino

    return openvino


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "featx") / "openvino"


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
    """The converter's telemetry modules get OpenVINO's stand-in while it runs, in case OpenVINO was imported
    before featx (by the user's own code) with its telemetry on."""
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
        raise FeatxError(f"OpenVINO could not convert this backbone ({exception_line(exc)}); use --runtime torch") from None
    converted.reshape([-1, *example_shape[1:]])  # any batch size
    return converted


def _saved(ov, converted, xml: Path):
    """Where to compile `converted` from: the IR saved at `xml` (written under a temporary name, then renamed,
    the .xml last), or the model itself, with one warning line, where the cache folder cannot be written."""
    partial = xml.parent / f".{xml.stem}.{os.getpid()}.xml"
    try:
        xml.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_partials(xml)
        ov.save_model(converted, partial, compress_to_fp16=False)
        os.replace(partial.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(partial, xml)
    except (OSError, RuntimeError) as exc:  # OpenVINO's writer raises RuntimeError (a full or read-only disk)
        for leftover in (partial, partial.with_suffix(".bin")):
            with contextlib.suppress(OSError):
                leftover.unlink()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[-1][:120]
        print(f"warning: cannot keep the converted model in {xml.parent} ({reason}); it converts again on every "
              f"run: set {CACHE_ENV} to a writable folder", file=sys.stderr, flush=True)
        return converted
    return xml


def _remove_dead_partials(xml: Path) -> None:
    """Half-written IRs (`.<key>.<pid>.xml/.bin`) of conversions whose process is gone."""
    from featx.store.lease import pid_alive

    for leftover in xml.parent.glob(f".{xml.stem}.*"):
        pid = leftover.name.split(".")[2] if leftover.name.count(".") >= 3 else ""
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _ir_digest(xml: Path) -> str | None:
    """sha256 of the IR's two files (.xml, .bin), or None where either is missing."""
    from featx.digests import file_sha256

    files = (xml, xml.with_suffix(".bin"))
    return ":".join(file_sha256(f) for f in files) if all(f.is_file() for f in files) else None


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


def _agrees(measured: dict) -> bool:
    return measured.get("min_cosine", float("nan")) >= MIN_COSINE  # NaN (nothing measured, a zero output): no


def _write_json(path: Path, data: dict) -> None:
    """Best effort: an unwritable cache folder only means the next run decides again (`_saved` warned)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(data, sort_keys=True))
        os.replace(partial, path)
    except OSError:
        pass


def read_verdict(path: Path) -> dict | None:
    """A key's recorded verdict: {"why": str} (OpenVINO could not convert it) or {"ok": bool, "min_cosine":
    float, ...}; None where there is none, or it is not one of these (then decided again)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("why"), str):
        return data
    ok, cosine = data.get("ok"), data.get("min_cosine")
    return data if isinstance(ok, bool) and isinstance(cosine, (int, float)) else None


def key_of(identity: dict, example_shape: tuple[int, ...], ov) -> str:
    """The cache key: `identity` (backbone, weights, layer, ...), the input shape, and the versions of the code
    that builds and converts the model."""
    import timm
    import torch

    try:
        from importlib.metadata import version

        transformers = version("transformers")
    except Exception:  # not installed
        transformers = None
    versions = {"torch": torch.__version__, "openvino": ov.__version__, "timm": timm.__version__,
                "transformers": transformers}
    text = json.dumps({**identity, "shape": list(example_shape[1:]), **versions}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _compile(ov, source, precision: str, threads: int, digest: str | None = None) -> OpenVINOModel:
    """`source` (an IR's path, or an OpenVINO model) compiled for the CPU. OpenVINO keeps an IR file's compiled
    blob in its CACHE_DIR, one folder per IR `digest`: it tells files apart by path, size and time, so an IR
    converted again within a second would otherwise get the old one's blob."""
    config = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[precision], "INFERENCE_NUM_THREADS": threads}
    if isinstance(source, Path):
        config["CACHE_DIR"] = str(source.parent / "compiled" / (digest or "unknown")[:16])
        source = str(source)
    return OpenVINOModel(shared_core(ov).compile_model(source, "CPU", config), threads)


@functools.cache
def shared_core(ov):
    """One OpenVINO Core for the process, never released: when the last Core goes, OpenVINO unloads its CPU
    plugin while the plugin's threads still wait, and the next signal they receive (Ctrl-C) ends the process in
    a segmentation fault (seen after a torch forward pass, tests/test_runtime.py)."""
    return ov.Core()


def _checked(ov, model, source, example_shape, threads: int, digest: str | None) -> tuple[OpenVINOModel | None, dict]:
    """(`source` compiled at float32, its agreement with torch float32); (None, {}) where a cached IR cannot be
    compiled."""
    try:
        compiled = _compile(ov, source, "float32", threads, digest)
    except RuntimeError:
        if not isinstance(source, Path):
            raise
        return None, {}
    return compiled, agreement(model, compiled, example_shape)


def compile_model(model, example_shape: tuple[int, ...], precision: str, identity: dict, threads: int,
                  required: bool = True) -> OpenVINOModel | None:
    """`model` (frozen, eval, on the CPU) compiled for inputs (B, *example_shape[1:]) at `precision`, through the
    on-disk IR cache keyed by `identity` (`key_of`), after checking its float32 outputs against torch's (see the
    module's docstring). required=False (--runtime auto): None, instead of an error or a warning, where OpenVINO
    cannot convert the model or does not give torch float32's outputs."""
    ov = import_openvino()
    key = key_of(identity, example_shape, ov)
    xml, verdict_file = cache_dir() / f"{key}.xml", cache_dir() / f"{key}.json"
    verdict = read_verdict(verdict_file)
    if verdict is not None and ("why" in verdict or not verdict["ok"] and not required):
        if required:
            raise FeatxError(verdict["why"])
        return None  # decided before: torch
    digest = _ir_digest(xml)
    intact = digest is not None and verdict is not None and verdict.get("ir_sha256") == digest  # damaged: not read
    compiled, measured = _checked(ov, model, xml, example_shape, threads, digest) if intact else (None, {})
    source = xml
    if compiled is None or not _agrees(measured) and (verdict is None or verdict["ok"]):  # new, damaged or stale
        try:
            source = _saved(ov, _convert(ov, model, example_shape), xml)
            digest = _ir_digest(xml) if source == xml else None
            compiled, measured = _checked(ov, model, source, example_shape, threads, digest)
            if compiled is None:
                raise FeatxError("OpenVINO could not compile this backbone; use --runtime torch")
        except FeatxError as exc:
            _write_json(verdict_file, {"why": str(exc)})
            if required:
                raise
            return None
        _write_json(verdict_file, {**measured, "ok": _agrees(measured), "ir_sha256": digest})
    if not _agrees(measured):
        if not required:
            return None
        print(f"warning: OpenVINO's float32 outputs of this backbone are not torch's (minimum cosine "
              f"{measured.get('min_cosine', float('nan')):.6f} on a random batch); --runtime torch gives torch's",
              file=sys.stderr, flush=True)
    return compiled if precision == "float32" else _compile(ov, source, precision, threads, digest)
