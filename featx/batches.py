"""Batches that span video boundaries, and the backbone calls that run them.

On CUDA the host never waits for the card while there is work to gather: each batch is copied into a pinned
staging buffer, sent with a non-blocking copy, and its features come back into pinned memory behind a CUDA
event; the host gathers the next batch meanwhile (`depth` batches in flight). On the CPU the call is simply
synchronous. With `pad=True` every call has the full batch shape (the tail is padded), which `torch.compile`
needs to avoid compiling again for a ragged last batch.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class _Slot:
    """One batch's staging memory: (B, H, W, 3) uint8 pixels in and (B, D) float32 features out."""

    def __init__(self, batch_size: int, frame_shape: tuple[int, ...], dim: int, pinned: bool):
        import torch

        self.pixels = torch.empty((batch_size, *frame_shape), dtype=torch.uint8, pin_memory=pinned)
        self.features = torch.empty((batch_size, dim), dtype=torch.float32, pin_memory=pinned)
        self.done = None  # CUDA event recorded after the features' copy back


class BatchRunner:
    """Runs the backbone on batches given as lists of (n_i, H, W, 3) uint8 pieces; results come back in order."""

    def __init__(self, backbone, batch_size: int, pad: bool = False, depth: int = 2):
        self._backbone, self._batch_size, self._pad = backbone, batch_size, pad
        self._cuda = backbone.device.type == "cuda"
        self._depth = depth if self._cuda else 1
        self._slots: list[_Slot] = []
        self._next = 0
        self._in_flight: deque[tuple[_Slot, int]] = deque()  # (slot, frames) in submission order

    def submit(self, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """Start one batch; returns the (n, D) features of the batches that finished, oldest first."""
        slot = self._slot(pieces[0].shape[1:])
        staged = slot.pixels.numpy()
        at = 0
        for piece in pieces:
            staged[at : at + len(piece)] = piece
            at += len(piece)
        rows = self._batch_size if self._pad else at
        if self._cuda:
            import torch

            feats = self._backbone.forward(slot.pixels[:rows].to(self._backbone.device, non_blocking=True))
            slot.features[:rows].copy_(feats, non_blocking=True)
            slot.done = torch.cuda.Event()
            slot.done.record()
        else:
            slot.features[:rows] = self._backbone.forward(slot.pixels[:rows])
        self._in_flight.append((slot, at))
        return self._finished(keep=self._depth - 1)

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

    def _slot(self, frame_shape: tuple[int, ...]) -> _Slot:
        """The next staging slot in the ring; its earlier batch has finished (at most `depth` are in flight)."""
        if len(self._slots) < self._depth:
            dim = self._backbone.config.feature_dim
            self._slots.append(_Slot(self._batch_size, frame_shape, dim, pinned=self._cuda))
        slot = self._slots[self._next % len(self._slots)]
        self._next += 1
        return slot


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
