"""Helpers shared by test modules (test modules never import each other)."""

import hashlib
import http.server
import re
import socket
import threading
import time

import numpy as np

from featx.config import ExtractConfig
from featx.store import StoreWriter

from seqmodels.detection.annotations import Segment, step_targets


def synthetic_steps(n, rng, dim=8, steps=60):
    """Per-step features: class prototype + noise inside segments, noise outside."""
    protos = np.eye(dim)[:3] * 2.0
    seqs, segs = [], []
    for _ in range(n):
        s1 = rng.integers(5, 20)
        s2 = s1 + rng.integers(8, 15) + rng.integers(5, 10)
        video = [Segment(float(s1), float(s1 + rng.integers(8, 15)), str(rng.integers(0, 3))),
                 Segment(float(s2), float(min(s2 + rng.integers(8, 15), steps)), str(rng.integers(0, 3)))]
        t = np.arange(steps, dtype=float)
        y = step_targets(t, t + 1, video, ["0", "1", "2"])
        x = rng.normal(0, 0.5, (steps, dim))
        x[y > 0] += protos[y[y > 0] - 1]
        seqs.append(x.astype(np.float32))
        segs.append(video)
    return seqs, segs


# A toy store: feature rows written straight through StoreWriter, no video or backbone.
STORE_DIM = 6


def toy_config(**changes) -> ExtractConfig:
    base = dict(
        backbone="toy", weights="random-init", fps=2.0, weights_sha256="ab" * 32, feature_dim=STORE_DIM,
        input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic", crop_pct=1.0,
        versions={"featx": "test"},
    )
    return ExtractConfig(**{**base, **changes})


def toy_record(video_id: str) -> dict:
    return {"path": f"/data/{video_id}.mp4", "video_id": video_id, "error": None, "fps": 25.0, "frames": 50,
            "duration": 2.0, "width": 64, "height": 48, "seconds": 0.1, "finished_at": time.time()}


def add_toy_video(writer: StoreWriter, video_id: str, steps: int, seed: int = 0) -> np.ndarray:
    feats = np.random.default_rng(seed).normal(size=(steps, STORE_DIM)).astype(np.float32)
    t = np.arange(steps) * 0.5
    frames = np.arange(steps) * 12
    writer.add_video(toy_record(video_id), writer.table(video_id, t, t + 0.5, frames, frames + 12, feats))
    return feats


# featx.progress's plain lines when stderr is not a terminal: "check: 1/2 videos (50%), 0 s"
PROGRESS_LINE = re.compile(r"^[\w ]+: \d+(/\d+)? \w+s( \(\d+%\))?, \d+ s(, .*)?$")


def one_error_line(result, *needles) -> str:
    """A CliRunner result that failed the way every bad input must: exit 1, one `error:` line on stderr (progress
    bars and plain progress lines aside), no traceback; each needle in that line. Returns the line."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line
             and not PROGRESS_LINE.match(line)]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def encode_h264(path, images, fps=8, pix_fmt="yuv420p", rotation=None, options=None, gop=None):
    """Write (H, W, 3) uint8 RGB `images` as an h264 video at `fps` (encoder `options`, a display rotation and a
    keyframe interval `gop` when given); returns the path."""
    import av

    images = list(images)
    h, w = images[0].shape[:2]
    options = dict(options or {})
    if gop is not None:  # libx264 takes the interval from its own options (codec_context.gop_size is ignored)
        options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def gray_ramp_video(path, frames=40, gop=None):
    """32x32 h264 frames of one grey level each (k * 6 for frame k, modulo 252), 8 fps, no B-frames."""
    images = (np.full((32, 32, 3), k * 6 % 252, np.uint8) for k in range(frames))
    return encode_h264(path, images, 8, options={"bf": "0"}, gop=gop)


def edit_list_cut(full, cut, seconds):
    """A `-c copy` cut of `full` (what `ffmpeg -ss T -c copy` writes): every packet shifted `seconds` earlier, so
    those before the cut point keep negative timestamps and the MP4's edit list hides them (the frame count
    still declares them); the demuxer keeps the hidden ones from the cut's keyframe on, marked to discard."""
    import av
    from fractions import Fraction

    with av.open(str(full)) as source, av.open(str(cut), "w") as target:
        original = source.streams.video[0]
        copy = target.add_stream_from_template(original)
        shift = int(Fraction(seconds) / original.time_base)
        for packet in source.demux(original):
            if packet.dts is None:
                continue
            packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, copy
            target.mux(packet)
    return cut


def featx_command() -> str:
    """The installed `featx` console script beside this Python."""
    import shutil
    import sys
    from pathlib import Path

    path = shutil.which("featx", path=str(Path(sys.executable).parent))
    assert path, "the featx console script is installed with the package"
    return path


REV = "0123456789abcdef0123456789abcdef01234567"  # a hub commit hash


class Server:
    """A local HTTP server of `files` (URL path -> bytes), with the headers huggingface_hub reads."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def _headers(self) -> bytes | None:
                body = files.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                if body is None:
                    self.send_header("X-Error-Code", "EntryNotFound")
                else:
                    self.send_header("X-Repo-Commit", REV)
                    self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                return body

            def do_HEAD(self):
                self._headers()

            def do_GET(self):
                body = self._headers()
                if body:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def go_offline(monkeypatch, how: str) -> None:
    """No network for featx, two ways: HF_HUB_OFFLINE set ("HF_HUB_OFFLINE"), or every hub pointed at a closed
    local port ("unreachable": a download would be tried and fail at once)."""
    import huggingface_hub.constants

    from featx.backbones import hub

    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    else:
        nowhere = f"http://127.0.0.1:{closed_port()}"
        monkeypatch.setenv(hub.TORCHVISION_URL_ENV, nowhere)
        monkeypatch.setenv("HF_ENDPOINT", nowhere)
