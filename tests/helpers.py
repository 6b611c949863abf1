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


# Tiny random transformers models (test_hf_video, test_runtime_families): 4 frames, 32 x 32 crops of frames resized
# to 40 first, 32-wide, one layer. transformers is imported only when one is built.
HF_SMALL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
HF_FRAMES, HF_CROP, HF_SHORTER = 4, 32, 40
HF_VIDEO_KINDS = ("videomae", "vjepa2", "timesformer", "vivit", "xclip")  # featx.backbones.hf_video.ADAPTERS keys


def tiny_hf_video_model(kind: str):
    """A tiny random transformers model of `kind` (an ADAPTERS key) and the processor its repos publish."""
    import transformers as t

    size, crop_size, small = {"shortest_edge": HF_SHORTER}, {"height": HF_CROP, "width": HF_CROP}, HF_SMALL
    if kind == "videomae":
        config = t.VideoMAEConfig(image_size=HF_CROP, patch_size=16, num_frames=HF_FRAMES, use_mean_pooling=False,
                                  **small)
        return t.VideoMAEModel(config), t.VideoMAEImageProcessor(size=size, crop_size=crop_size,
                                                                 image_mean=[0.485, 0.456, 0.406],
                                                                 image_std=[0.229, 0.224, 0.225])
    if kind == "vjepa2":
        config = t.VJEPA2Config(crop_size=HF_CROP, patch_size=16, frames_per_clip=HF_FRAMES, pred_hidden_size=32,
                                pred_num_hidden_layers=1, pred_num_attention_heads=2, **small)
        return t.VJEPA2Model(config), t.VJEPA2VideoProcessor(crop_size=HF_CROP)  # shorter side int(32 * 256 / 224)
    if kind == "timesformer":  # TimeSformer's repos publish VideoMAE's image processor with mean 0.45, std 0.225
        config = t.TimesformerConfig(image_size=HF_CROP, patch_size=16, num_frames=HF_FRAMES, **small)
        return t.TimesformerModel(config), t.VideoMAEImageProcessor(size=size, crop_size=crop_size,
                                                                    image_mean=[0.45] * 3, image_std=[0.225] * 3)
    if kind == "vivit":  # rescale 1/127.5 with offset -1, then mean 0.5 / std 0.5: featx folds both into mean/std
        config = t.VivitConfig(image_size=HF_CROP, num_frames=HF_FRAMES, tubelet_size=[2, 16, 16], **small)
        return t.VivitModel(config, add_pooling_layer=False), t.VivitImageProcessor(size=size, crop_size=crop_size)
    vision = {**small, "image_size": HF_CROP, "patch_size": 16, "num_frames": HF_FRAMES, "mit_hidden_size": 32,
              "mit_num_hidden_layers": 1, "mit_num_attention_heads": 2, "mit_intermediate_size": 64}
    config = t.XCLIPConfig(text_config={**small, "vocab_size": 100}, vision_config=vision, projection_dim=32,
                           prompt_layers=1, prompt_attention_heads=2)
    return t.XCLIPModel(config), t.CLIPImageProcessor(size=size, crop_size=crop_size)


def tiny_image_text_pair(folder, family="clip"):
    """A random CLIP (or SigLIP) pair (16-wide towers, 8-d CLIP projection), a word-level tokenizer and the
    family's image processor for 32 x 32 inputs (CLIP: shorter side, then a centre crop; SigLIP: a square
    resize), written by transformers' save_pretrained into `folder`."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["red", "green", "blue", "square", "a", "photo"]
    vocab = {w: i for i, w in enumerate(["<s>", "</s>", "<unk>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 1)])
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                                     pad_token="</s>", unk_token="<unk>",
                                                     model_input_names=["input_ids", "attention_mask"])
    text = dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    torch.manual_seed(0)
    if family == "clip":
        model = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
        processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        model = transformers.SiglipModel(transformers.SiglipConfig(text_config=text, vision_config=vision))
        processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
