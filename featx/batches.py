"""Batches that span video boundaries, and the backbone calls that run them.

On CUDA the host never waits for the card while there is work to gather: each batch is copied into a pinned
staging buffer, sent with a non-blocking copy, and its features come back into pinned memory behind a CUDA
event; the host gathers the next batch meanwhile (`depth` batches in flight). On the CPU the call is simply
synchronous. With `pad=True` every call has the full batch shape (the tail is padded), which `torch.compile`
needs to avoid compiling again for a ragged last batch.

With `resize` (`--resize-on device`) the pieces are frames at their decoded size, which differs between videos:
they are staged back to back in one flat buffer and copied to the device in one go, where each run of pieces of
one size is resized, cropped and rounded to uint8 in one call (`resize_crop`) before the backbone normalises the
whole batch. With `--decoder nvdec` the pieces are already CUDA tensors on the backbone's device (featx.nvdec):
nothing is staged, they are resized there as they are.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from featx.errors import FeatxError
from featx.video import Preprocess

# What torch's antialiased interpolate can do, by the name timm's data config gives the filter.
DEVICE_FILTERS = ("bilinear", "bicubic")


def check_device_filter(interpolation: str, backbone: str) -> None:
    """Raise a one-line FeatxError when `--resize-on device` cannot use the backbone's resize filter."""
    if interpolation not in DEVICE_FILTERS:
        raise FeatxError(f"--resize-on device resizes with {' or '.join(DEVICE_FILTERS)}, but {backbone} asks for "
                         f"{interpolation}; use --resize-on cpu")


def resize_crop(frames, pre: Preprocess):
    """(N, H, W, 3) uint8 upright frames (a torch tensor, on any device) -> (N, h, w, 3) uint8 backbone inputs: the
    CPU path's geometry (featx.video: shorter side to `pre.resize_shorter`, centre crop `pre.crop`), resized with
    torch's antialiased `interpolate` in float32 and rounded back to uint8, as FFmpeg's scaler's output is."""
    import torch
    import torch.nn.functional as F

    _, h, w, _ = frames.shape
    height, width = pre.resized(w, h)
    top, left = pre.crop_box(height, width)
    x = frames.permute(0, 3, 1, 2).float()  # (N, 3, H, W)
    x = F.interpolate(x, size=(height, width), mode=pre.interpolation, align_corners=False, antialias=True)
    x = x[:, :, top : top + pre.crop[0], left : left + pre.crop[1]]  # (N, 3, h, w)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)  # (N, h, w, 3)


class _Slot:
    """One batch's staging memory: (B, H, W, 3) uint8 pixels (or, for frames of any size, a flat uint8 buffer that
    grows as needed) in and (B, D) float32 features out."""

    def __init__(self, batch_size: int, frame_shape: tuple[int, ...] | None, dim: int, pinned: bool):
        import torch

        self.pinned = pinned
        shape = (batch_size, *frame_shape) if frame_shape is not None else (0,)
        self.pixels = torch.empty(shape, dtype=torch.uint8, pin_memory=pinned)
        self.features = torch.empty((batch_size, dim), dtype=torch.float32, pin_memory=pinned)
        self.done = None  # CUDA event recorded after the features' copy back

    def flat(self, nbytes: int):
        """The flat staging buffer, at least `nbytes` long (its last batch has finished: see BatchRunner._slot)."""
        import torch

        if self.pixels.numel() < nbytes:
            self.pixels = torch.empty((nbytes,), dtype=torch.uint8, pin_memory=self.pinned)
        return self.pixels[:nbytes]


class BatchRunner:
    """Runs the backbone on batches given as lists of (n_i, H, W, 3) uint8 pieces; results come back in order.
    With `resize` the pieces are upright frames of any size, resized and cropped on the backbone's device."""

    def __init__(self, backbone, batch_size: int, pad: bool = False, depth: int = 2, resize: Preprocess | None = None):
        self._backbone, self._batch_size, self._pad, self._resize = backbone, batch_size, pad, resize
        self._cuda = backbone.device.type == "cuda"
        self._depth = depth if self._cuda else 1
        self._slots: list[_Slot] = []
        self._next = 0
        self._in_flight: deque[tuple[_Slot, int]] = deque()  # (slot, frames) in submission order

    def submit(self, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """Start one batch; returns the (n, D) features of the batches that finished, oldest first."""
        if self._resize is not None:
            return self._submit_resized(pieces)
        slot = self._slot(pieces[0].shape[1:])
        staged = slot.pixels.numpy()
        at = 0
        for piece in pieces:
            staged[at : at + len(piece)] = piece
            at += len(piece)
        rows = self._batch_size if self._pad else at
        if self._cuda:
            self._send_back(slot, self._backbone.forward(slot.pixels[:rows].to(self._backbone.device, non_blocking=True)))
        else:
            slot.features[:rows] = self._backbone.forward(slot.pixels[:rows])
        self._in_flight.append((slot, at))
        return self._finished(keep=self._depth - 1)

    def _submit_resized(self, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """submit() for frames of any size: one copy of all their bytes to the device, then one resize_crop per run
        of consecutive pieces of one frame size, then the backbone on the whole batch."""
        import torch

        if isinstance(pieces[0], torch.Tensor):  # frames decoded on the device (featx.nvdec): no staging
            return self._run_resized([torch.cat(r) if len(r) > 1 else r[0] for r in _runs(pieces)], self._slot(None))
        slot = self._slot(None)
        flat = slot.flat(sum(p.nbytes for p in pieces))
        staged, at = flat.numpy(), 0
        for piece in pieces:
            staged[at : at + piece.nbytes] = piece.reshape(-1)
            at += piece.nbytes
        raw = flat.to(self._backbone.device, non_blocking=True) if self._cuda else flat
        runs, at = [], 0
        for run in _runs(pieces):  # consecutive pieces of one size lie back to back: one view each
            n, shape = sum(len(p) for p in run), run[0].shape[1:]
            runs.append(raw[at : at + n * int(np.prod(shape))].view(n, *shape))
            at += n * int(np.prod(shape))
        return self._run_resized(runs, slot)

    def _run_resized(self, runs: list, slot: _Slot) -> list[np.ndarray]:
        """Resize and crop each (n, H, W, 3) uint8 run of frames of one size, on the backbone's device, then run
        the backbone on the whole batch."""
        import torch

        crops = [resize_crop(run, self._resize) for run in runs]
        x = torch.cat(crops) if len(crops) > 1 else crops[0]  # (B, h, w, 3) uint8
        frames = len(x)
        if self._pad and frames < self._batch_size:
            x = torch.cat([x, x.new_zeros((self._batch_size - frames, *x.shape[1:]))])
        feats = self._backbone.forward(x)
        if self._cuda:
            self._send_back(slot, feats)
        else:
            slot.features[: len(x)] = feats
        self._in_flight.append((slot, frames))
        return self._finished(keep=self._depth - 1)

    def _send_back(self, slot: _Slot, feats) -> None:
        """Queue the copy of a CUDA batch's (rows, D) features into the slot's pinned memory, and an event after it."""
        import torch

        slot.features[: len(feats)].copy_(feats, non_blocking=True)
        slot.done = torch.cuda.Event()
        slot.done.record()

    def drain(self) -> list[np.ndarray]:
        """Wait for every batch in flight; their features, oldest first."""
        return self._finished(keep=0)

    def _finished(self, keep: int) -> list[np.ndarray]:
        out = []
        while len(self._in_flight) > keep:
            slot, n = self._in_flight.popleft()
            if slot.done is not None:
                slot.done.synchronize()
            out.append(slot.features[:n].numpy().copy())  # the slot is reused for a later batch
        return out

    def _slot(self, frame_shape: tuple[int, ...] | None) -> _Slot:
        """The next staging slot in the ring; its earlier batch has finished (at most `depth` are in flight)."""
        if len(self._slots) < self._depth:
            dim = self._backbone.config.feature_dim
            self._slots.append(_Slot(self._batch_size, frame_shape, dim, pinned=self._cuda))
        slot = self._slots[self._next % len(self._slots)]
        self._next += 1
        return slot


def _runs(pieces: list) -> list[list]:
    """`pieces` split into runs of consecutive pieces whose frames have one size."""
    runs = []
    for piece in pieces:
        if runs and runs[-1][-1].shape[1:] == piece.shape[1:]:
            runs[-1].append(piece)
        else:
            runs.append([piece])
    return runs


class Batcher:
    """Queues frame chunks of many videos and runs the backbone on full batches of them."""

    def __init__(self, runner: BatchRunner, batch_size: int):
        self._runner, self._batch_size = runner, batch_size
        self._queue: deque[tuple[int, np.ndarray]] = deque()  # (video index, (N, H, W, 3) pixels)
        self._owners: deque[list[tuple[int, int]]] = deque()  # per batch in flight: (video index, frames)
        self.queued = 0  # frames queued, not yet submitted
        self.pending = 0  # frames submitted whose features have not come back

    def put(self, i: int, pixels: np.ndarray) -> None:
        self._queue.append((i, pixels))
        self.queued += len(pixels)

    def ready(self) -> bool:
        return self.queued >= self._batch_size

    def run(self) -> list[tuple[int, np.ndarray]]:
        """Submit up to one batch from the queue; returns (video index, (n, D) features) of finished batches."""
        owners, pieces, taken = [], [], 0
        while self._queue and taken < self._batch_size:
            i, pixels = self._queue.popleft()
            room = self._batch_size - taken
            if len(pixels) > room:
                self._queue.appendleft((i, pixels[room:]))
                pixels = pixels[:room]
            owners.append((i, len(pixels)))
            pieces.append(pixels)
            taken += len(pixels)
        self.queued -= taken
        self.pending += taken
        self._owners.append(owners)
        return self._split(self._runner.submit(pieces))

    def drain(self) -> list[tuple[int, np.ndarray]]:
        """Features of every batch still in flight."""
        return self._split(self._runner.drain())

    def _split(self, batches: list[np.ndarray]) -> list[tuple[int, np.ndarray]]:
        out = []
        for feats in batches:
            at = 0
            for i, n in self._owners.popleft():
                out.append((i, feats[at : at + n]))
                at += n
            self.pending -= at
        return out
