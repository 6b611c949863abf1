"""Optical flow for the two-stream path (Simonyan & Zisserman 2014; TSN, Wang et al. 2016).

- `optical_flow`: dense flow between two RGB frames, Farneback (OpenCV) or TV-L1 (needs opencv-contrib);
- `encode_flow` / `decode_flow`: flow fields as uint8 images, clipped to +-`bound` pixels (TSN stores them
  so, with bound 20), which is how they travel through featx's pipeline and an optional cache;
- `FlowFields`: a video's flow fields as its sampled frames arrive in chunks (in a decoding worker for the
  OpenCV methods, so `--workers N` scales flow like decoding; in the main process, batched on the extraction
  device, for RAFT: `Raft`, `load_raft`);
- `FlowStacker` / `flow_stacks`: for each sampled frame t, the L fields t->t+1 ... t+L-1->t+L stacked as 2L
  channels (x0, y0, x1, y1, ...), the last field repeated past the end of the video;
- `cross_modality_init`: a network for flow made from an RGB one: its first convolution's weights are averaged
  over the RGB channels and replicated over the flow channels (TSN's initialisation): 2L channels for a 2D
  network on stacks of L fields, 2 for a 3D one on flow clips (one field per time step).
"""

from __future__ import annotations

import numpy as np

from featx.errors import FeatxError

CPU_METHODS = ("farneback", "tvl1")  # OpenCV, computed in the decoding workers
RAFT_MODELS = {"raft-small": "raft_small", "raft-large": "raft_large"}  # --flow -> torchvision builder
# --flow -> torchvision's weights (FlyingChairs + FlyingThings3D, its C_T_V2 recipe): what `--weights-flow` unset loads
RAFT_WEIGHTS = {"raft-small": "Raft_Small_Weights.C_T_V2", "raft-large": "Raft_Large_Weights.C_T_V2"}
METHODS = (*CPU_METHODS, *RAFT_MODELS)
BOUND = 20.0  # pixels: flow is clipped to +-BOUND before it is stored as uint8


def _cv2():
    try:
        import cv2
    except ImportError:
        raise FeatxError("optical flow needs OpenCV: pip install 'featx[flow]' (opencv-python-headless)") from None
    return cv2


def optical_flow(a: np.ndarray, b: np.ndarray, method: str = "farneback") -> np.ndarray:
    """(H, W, 3) uint8 RGB frames -> (H, W, 2) float32 flow (dx, dy) in pixels, from a to b."""
    cv2 = _cv2()
    ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    if method == "tvl1":
        if not hasattr(cv2, "optflow"):
            raise FeatxError("--flow tvl1 needs opencv-contrib-python-headless (cv2.optflow); use --flow farneback")
        return cv2.optflow.DualTVL1OpticalFlow_create().calc(ga, gb, None)
    raise FeatxError(f"--flow must be one of {', '.join(CPU_METHODS)} here, not {method!r}")


def check_method(method: str) -> None:
    """Fail now, in one line, if `method` cannot run here (rather than in every video of a run)."""
    if method in CPU_METHODS:
        frame = np.zeros((8, 8, 3), np.uint8)
        optical_flow(frame, frame, method)
    elif method not in RAFT_MODELS:
        raise FeatxError(f"--flow must be one of {', '.join(METHODS)}, not {method!r}")


def encode_flow(flow: np.ndarray, bound: float = BOUND) -> np.ndarray:
    """(H, W, 2) float flow -> (H, W, 2) uint8: 128 is no motion, 0 and 255 are -bound and +bound."""
    return np.round(np.clip(flow, -bound, bound) * (127.5 / bound) + 127.5).astype(np.uint8)


def decode_flow(encoded: np.ndarray, bound: float = BOUND) -> np.ndarray:
    return (encoded.astype(np.float32) - 127.5) * (bound / 127.5)


def flow_stacks(frames: np.ndarray, length: int, method: str = "farneback") -> np.ndarray:
    """(T, H, W, 3) sampled frames -> (T, H, W, 2 * length) uint8 stacks, one per frame (see the module)."""
    stacker = FlowStacker(length)
    parts = [stacker.push(FlowFields(method).push(frames)), stacker.finish()]
    return np.concatenate([p for p in parts if p is not None])


def cross_modality_init(model, length: int):
    """Make `model` (a CNN built for 3 RGB channels, 2D or 3D) take 2L flow channels (x, y of `length` fields), in
    place: the first convolution's weights become their mean over RGB, repeated 2L times (TSN, Wang et al. 2016,
    sec. 3.2: "average the weights across the RGB channels and replicate this average by the channel number of
    temporal network input"). A 2D network takes stacks of L fields; a 3D one takes (2, T, H, W) flow clips,
    one field per time step (length 1). The convolution may sit inside a wrapper (an inflated one). Returns
    the model."""
    import torch
    from torch import nn

    convs = (nn.Conv2d, nn.Conv3d)
    first = next((m for m in model.modules() if isinstance(m, convs) and m.in_channels == 3), None)
    if first is None or first.groups != 1:
        raise FeatxError("the backbone has no 3-channel first convolution to initialise for flow")
    with torch.no_grad():
        mean = first.weight.mean(dim=1, keepdim=True)  # (out, 1, k, k) or (out, 1, t, k, k)
        repeat = (1, 2 * length) + (1,) * (mean.ndim - 2)
        first.weight = nn.Parameter(mean.repeat(*repeat).contiguous())
    first.in_channels = 2 * length
    return model


class FlowFields:
    """One video's flow fields as its sampled frames arrive in chunks: for each frame, the field that arrives at
    it (from the frame before), encoded; the video's first frame has none and gets 128s (no motion), which
    `FlowStacker` skips. `pairs` turns (n, H, W, 3) frames a, b into (n, H, W, 2) float flow a -> b (default:
    OpenCV's `method`, pair by pair; `Raft` does a chunk in one batch). Memory: one frame."""

    def __init__(self, method: str = "farneback", pairs=None):
        self.pairs = pairs or (lambda a, b: np.stack([optical_flow(x, y, method) for x, y in zip(a, b)]))
        self._last = None  # the previous chunk's last frame

    def push(self, pixels: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 consecutive sampled frames -> (n, H, W, 2) uint8 encoded fields arriving at them."""
        out = np.full((*pixels.shape[:3], 2), 128, np.uint8)
        if self._last is None:  # the video's first frame: nothing arrives at it
            before, after, at = pixels[:-1], pixels[1:], 1
        else:
            before, after, at = np.concatenate([self._last[None], pixels[:-1]]), pixels, 0
        if len(after):
            out[at:] = encode_flow(self.pairs(before, after))
        self._last = pixels[-1].copy()  # the caller may reuse its buffer
        return out


class FlowStacker:
    """The flow stacks of one video's sampled frames as their fields arrive in chunks (from `FlowFields`), each
    emitted once the L fields after it are known (the same stacks as `flow_stacks` on the whole video); memory:
    about L fields."""

    def __init__(self, length: int):
        self.length = length
        self._fields: list[np.ndarray] = []  # encoded fields t -> t+1 from number self._first on
        self._first = 0
        self._emitted = 0
        self._seen = 0  # frames (fields arriving) so far
        self._shape = None  # (H, W)

    def push(self, fields: np.ndarray) -> np.ndarray | None:
        """Add the fields arriving at consecutive sampled frames, (n, H, W, 2) (FlowFields.push); returns the
        stacks completed, (k, H, W, 2L), or None."""
        for field in fields:
            if self._seen:  # the field arriving at frame t is field t-1 -> t; none arrives at frame 0
                self._fields.append(field)
            self._seen += 1
        self._shape = fields.shape[1:3]
        out = []
        while self._emitted + self.length <= self._seen - 1:  # fields emitted .. emitted + L - 1 exist
            out.append(self._stack(self._emitted))
            self._emitted += 1
        self._forget()
        return np.stack(out) if out else None

    def finish(self) -> np.ndarray | None:
        """At the end of the video: the stacks of the frames left, the last field repeated."""
        if not self._fields and self._seen:  # one frame: no motion
            self._fields, self._first = [np.full((*self._shape, 2), 128, np.uint8)], self._emitted
        out = [self._stack(t) for t in range(self._emitted, self._seen)]
        self._emitted = self._seen
        return np.stack(out) if out else None

    def _stack(self, t: int) -> np.ndarray:
        last = len(self._fields) - 1
        return np.concatenate([self._fields[min(t + k - self._first, last)] for k in range(self.length)], axis=-1)

    def _forget(self) -> None:
        drop = min(self._emitted - self._first, len(self._fields) - 1)
        if drop > 0:
            del self._fields[:drop]
            self._first += drop


class Raft:
    """torchvision's RAFT (Teed & Deng 2020) on the extraction device, as `FlowFields` pairs: (n, H, W, 3) uint8
    frames a, b -> (n, H, W, 2) float32 flow a -> b, all n pairs in one batch, in float32. Frames are scaled to
    [-1, 1] as torchvision's RAFT weights expect, and padded (edge pixels repeated) to a multiple of 8 and at
    least 128 px: RAFT works at 1/8 resolution and its 4-level correlation pyramid needs 16 x 16 feature maps
    (a 112 px clip backbone's frames get 16 px of padding)."""

    def __init__(self, model, device, updates: int = 12):
        self.model, self.device, self.updates = model, device, updates  # 12: torchvision's default

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        h, w = a.shape[1:3]
        pad_h, pad_w = max(128, -(-h // 8) * 8) - h, max(128, -(-w // 8) * 8) - w

        def prepare(frames):  # (n, H, W, 3) uint8 -> (n, 3, H', W') in [-1, 1]
            x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float()
            return F.pad(x / 127.5 - 1, (0, pad_w, 0, pad_h), mode="replicate")

        with torch.inference_mode():
            flow = self.model(prepare(a), prepare(b), num_flow_updates=self.updates)[-1]  # (n, 2, H', W')
        return flow[:, :, :h, :w].permute(0, 2, 3, 1).float().cpu().numpy()


def raft_checkpoint(method: str, verify: bool = False):
    """torchvision's weights of RAFT `method` (RAFT_WEIGHTS) in torch.hub's cache, downloaded there when missing;
    offline without them, one error line (featx.backbones.hub)."""
    from featx.backbones import hub

    return hub.url_checkpoint(method, hub.torchvision_weights(RAFT_WEIGHTS[method]).url, instead="--weights-flow PATH",
                              verify=verify)


def load_raft(method: str, weights: str | None, device) -> tuple[Raft, str, str]:
    """RAFT `method` (raft-small | raft-large) with torchvision's parameter names, weights read from the local file
    `weights`, or with None torchvision's own (RAFT_WEIGHTS, from torch.hub's cache or downloaded there:
    featx.backbones.hub), loaded strictly (featx.backbones.weights). Returns (Raft, weights source, sha256)."""
    from pathlib import Path

    import torchvision.models.optical_flow as tvf

    from featx.backbones.weights import file_sha256, load_into, read_state_dict

    if method not in RAFT_MODELS:
        raise FeatxError(f"--flow {method} is not RAFT; choose from {', '.join(RAFT_MODELS)}")
    if weights is None:
        found = raft_checkpoint(method)
        path, label, source = found.path, f"{method}'s cached weights {found.path}", found.source
    else:
        path = Path(weights).expanduser()
        label, source = f"--weights-flow {path}", str(path.resolve())
    state = read_state_dict(path, label)
    model = getattr(tvf, RAFT_MODELS[method])(weights=None)
    load_into(model, state, label, f"torchvision's {RAFT_MODELS[method]}", head=())
    for p in model.parameters():
        p.requires_grad_(False)
    return Raft(model.eval().to(device), device), source, file_sha256(path)
