"""Optical flow for the two-stream path (Simonyan & Zisserman 2014; TSN, Wang et al. 2016).

- `optical_flow`: dense flow between two RGB frames, Farneback (OpenCV) or TV-L1 (needs opencv-contrib);
- `encode_flow` / `decode_flow`: flow fields as uint8 images, clipped to +-`bound` pixels (TSN stores them
  so, with bound 20), which is how they travel through featx's pipeline and an optional cache;
- `flow_stacks`: for each sampled frame t, the L fields t->t+1 ... t+L-1->t+L stacked as 2L channels
  (x0, y0, x1, y1, ...), the last field repeated past the end of the video;
- `cross_modality_init`: a 2D network for 2L-channel flow stacks made from an RGB one: its first convolution's
  weights are averaged over the RGB channels and replicated over the 2L channels (TSN's initialisation).
"""

from __future__ import annotations

import numpy as np

from featx.errors import FeatxError

METHODS = ("farneback", "tvl1")
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
    raise FeatxError(f"--flow must be one of {', '.join(METHODS)}, not {method!r}")


def encode_flow(flow: np.ndarray, bound: float = BOUND) -> np.ndarray:
    """(H, W, 2) float flow -> (H, W, 2) uint8: 128 is no motion, 0 and 255 are -bound and +bound."""
    return np.round(np.clip(flow, -bound, bound) * (127.5 / bound) + 127.5).astype(np.uint8)


def decode_flow(encoded: np.ndarray, bound: float = BOUND) -> np.ndarray:
    return (encoded.astype(np.float32) - 127.5) * (bound / 127.5)


def flow_stacks(frames: np.ndarray, length: int, method: str = "farneback") -> np.ndarray:
    """(T, H, W, 3) sampled frames -> (T, H, W, 2 * length) uint8 stacks, one per frame (see the module)."""
    stacker = FlowStacker(length, method)
    parts = [stacker.push(frames), stacker.finish()]
    return np.concatenate([p for p in parts if p is not None])


def cross_modality_init(model, length: int):
    """Make `model` (a timm 2D CNN built for 3 channels) take 2L flow channels, in place: the first
    convolution's weights become their mean over RGB, repeated 2L times. Returns the model."""
    import torch
    from torch import nn

    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3), None)
    if first is None:
        raise FeatxError("the backbone has no 3-channel first convolution to initialise for flow")
    with torch.no_grad():
        mean = first.weight.mean(dim=1, keepdim=True)  # (out, 1, k, k)
        first.weight = nn.Parameter(mean.repeat(1, 2 * length, 1, 1).contiguous())
    first.in_channels = 2 * length
    return model


class FlowStacker:
    """The flow stacks of one video's sampled frames as they arrive in chunks, each emitted once the L frames
    after it are known (the same stacks as `flow_stacks` on the whole video); memory: about L frames."""

    def __init__(self, length: int, method: str = "farneback"):
        self.length, self.method = length, method
        self._last = None  # the previous frame
        self._fields: list[np.ndarray] = []  # encoded fields from number self._first on
        self._first = 0
        self._emitted = 0
        self._seen = 0

    def push(self, pixels: np.ndarray) -> np.ndarray | None:
        """Add consecutive sampled frames (n, H, W, 3); returns the stacks completed, (k, H, W, 2L), or None."""
        for frame in pixels:
            if self._last is not None:
                self._fields.append(encode_flow(optical_flow(self._last, frame, self.method)))
            self._last = frame
            self._seen += 1
        out = []
        while self._emitted + self.length <= self._seen - 1:  # fields emitted .. emitted + L - 1 exist
            out.append(self._stack(self._emitted))
            self._emitted += 1
        self._forget()
        return np.stack(out) if out else None

    def finish(self) -> np.ndarray | None:
        """At the end of the video: the stacks of the frames left, the last field repeated."""
        if not self._fields and self._seen:  # one frame: no motion
            h, w = self._last.shape[:2]
            self._fields, self._first = [np.full((h, w, 2), 128, np.uint8)], self._emitted
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
