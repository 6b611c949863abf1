"""Decoding on the GPU (`--decoder nvdec`): NVIDIA's hardware video decoder through PyNvVideoCodec.

Why PyNvVideoCodec rather than torchcodec's CUDA decoder: its wheel (26 MB, `pip install 'featx[nvdec]'`)
bundles the libavformat it demuxes with and its CUDA 12 / 13 bindings, so it installs offline from a carried
wheel; torchcodec needs FFmpeg's shared libraries installed on the system, which the lent GPU machines lack.

Each video is demuxed (PyNvVideoCodec's libavformat) and decoded by NVDEC into interleaved RGB on the card; each
frame becomes a CUDA tensor through DLPack, is cloned out of the decoder's reusable surface, turned upright on the
card (the display matrix, read with PyAV) and handed on as a Frames event whose pixels are a CUDA tensor, which
featx.batches resizes, crops and normalises on the same card (`--resize-on device`'s `resize_crop`): no frame
visits host memory. Which frames are kept, their numbers and times, follow PyAV's path exactly (FrameSelector,
a pure function of the frames' timestamps, tested against PyAV's choice on the CPU).

NOT YET RUN ON A GPU: written against PyNvVideoCodec 2.2.4's documented API (CreateDemuxer, CreateDecoder,
DecodedFrame.getPTS, __dlpack__); tests/test_nvdec.py's GPU test and bench/gpu_check.sh check it on one.
Without the package or a CUDA device, `featx extract --decoder nvdec` says why in one line and decodes with PyAV.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from featx.decode_pool import Decoded, Event, Failed, Frames, probe_quietly
from featx.errors import FeatxError, exception_line
from featx.timegrid import TimeSampler
from featx.video import (DecodedVideo, FrameChunk, FrameClock, Preprocess, check_shape, check_whole, container_info,
                         open_video, quarter_turns, upright)

# libavutil's AV_NOPTS_VALUE: a frame without a timestamp (FrameClock then continues the clock)
_NO_PTS = -(2**63)


def unavailable(device) -> str | None:
    """Why NVDEC cannot decode for `device` (a torch.device) here, in a few words; None when it can."""
    try:
        _import()
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "PyNvVideoCodec":
            return "PyNvVideoCodec is not installed (pip install 'featx[nvdec]')"
        return f"PyNvVideoCodec failed to import ({exception_line(exc)})"
    except Exception as exc:  # no driver, no libnvcuvid: the package raises RuntimeError with a long guide
        return f"PyNvVideoCodec failed to import ({exception_line(exc)})"
    if device.type != "cuda":
        return f"no CUDA device (--device is {device})"
    return None


def _import():
    """PyNvVideoCodec, without the multi-line diagnostics its __init__ logs when it fails to import."""
    log = logging.getLogger("PyNvVideoCodec")
    quiet, log.disabled = log.disabled, True
    try:
        import PyNvVideoCodec

        return PyNvVideoCodec
    finally:
        log.disabled = quiet


class FrameSelector:
    """The frames PyAV's path keeps, decided frame by frame from the timestamps NVDEC gives, in output order.

    A frame timed before the stream's start is pre-roll that an MP4 edit list hides (a `-c copy` cut): FFmpeg's
    decoder drops it, so it is neither numbered nor kept here. Every other frame is numbered in output order,
    timed by FrameClock (a frame without a timestamp continues the clock) and kept when TimeSampler keeps it:
    the same numbers and times as featx.video's full decode. `shown` and `last` then feed check_whole and the
    DecodedVideo.
    """

    def __init__(self, time_base: Fraction, start: Fraction, step: float, fps: float | None):
        self.time_base, self.start = time_base, start
        self._clock, self._sampler = FrameClock(start, step), TimeSampler(fps)
        self.shown = 0  # frames shown so far (numbered)
        self.last = 0.0  # time of the last shown frame

    def push(self, pts: int | None) -> tuple[int, float] | None:
        """(frame number, time) when the frame with timestamp `pts` (None: none) is kept, else None."""
        if pts == _NO_PTS:
            pts = None
        if pts is not None and pts * self.time_base < self.start:
            return None  # hidden by an edit list
        t = self._clock.time(pts, self.time_base)
        n, self.shown, self.last = self.shown, self.shown + 1, t
        return (n, t) if self._sampler.keep(t) else None


def select_frames(pts: Iterable[int | None], time_base: Fraction, start: Fraction, step: float,
                  fps: float | None) -> tuple[list[int], list[float], int, float]:
    """(frame numbers kept, their times, frames shown, time of the last shown) for frames with timestamps `pts`
    (in `time_base` units, output order): FrameSelector over a whole video."""
    selector, index, times = FrameSelector(time_base, start, step, fps), [], []
    for p in pts:
        if (kept := selector.push(p)) is not None:
            index.append(kept[0])
            times.append(kept[1])
    return index, times, selector.shown, selector.last


def _turns(container, stream) -> int:
    """The display matrix's quarter turns, read off the first frame PyAV decodes (one frame on the CPU: PyAV 18
    has no stream-level getter for the matrix)."""
    for frame in container.decode(stream):
        return quarter_turns(frame)
    return 0


def _rgb(frame, turns: int, device):
    """A decoded frame -> (H, W, 3) uint8 CUDA tensor, upright, owning its memory (the decoder reuses its surface)."""
    import torch

    x = torch.from_dlpack(frame)
    if x.device != device:
        raise FeatxError(f"NVDEC gave a frame on {x.device}, not {device}")
    if x.dim() == 3 and x.shape[0] == 3 and x.shape[-1] != 3:  # planar (3, H, W)
        x = x.permute(1, 2, 0)
    x = x.clone()
    return torch.rot90(x, turns, dims=(0, 1)).contiguous() if turns else x


def stream_frames_nvdec(path: str | Path, fps: float | None, pre: Preprocess, device, chunk: int = 16,
                        gpu_id: int | None = None) -> Iterator[FrameChunk | DecodedVideo]:
    """featx.video.stream_frames on the GPU: FrameChunks whose pixels are (N, H, W, 3) uint8 CUDA tensors on
    `device`, upright at their decoded size, then one DecodedVideo. Raises FeatxError as stream_frames does."""
    import torch

    nvc = _import()
    container = open_video(path)  # PyAV reads the container's facts: the same VideoInfo, start and step as PyAV's path
    try:
        stream = container.streams.video[0]
        info = container_info(container)
        check_shape(info, pre)
        start = Fraction(stream.start_time or 0) * (stream.time_base or 1)
        step = 1.0 / info.fps if info.fps > 0 else 0.0
        turns = _turns(container, stream)
    finally:
        container.close()
    gpu = (device.index or 0) if gpu_id is None else gpu_id
    try:
        demuxer = nvc.CreateDemuxer(filename=str(path))
        decoder = nvc.CreateDecoder(gpuid=gpu, codec=demuxer.GetNvCodecId(), cudacontext=0, cudastream=0,
                                    usedevicememory=True, outputColorType=nvc.OutputColorType.RGB)
        time_base = Fraction(demuxer.GetTimebaseNum(), demuxer.GetTimebaseDen())
    except Exception as exc:  # an unsupported codec (NVDEC has no decoder for it) or a container it cannot read
        raise FeatxError(f"NVDEC cannot decode this video ({exception_line(exc)})") from None
    selector = FrameSelector(time_base, start, step, fps)
    idx, times, pixels = [], [], []
    try:
        for frames in _decoded(demuxer, decoder, nvc):
            for frame in frames:
                kept = selector.push(frame.getPTS())
                if kept is None:
                    continue
                idx.append(kept[0])
                times.append(kept[1])
                pixels.append(_rgb(frame, turns, device))
                if len(idx) == chunk:
                    yield FrameChunk(np.array(idx, np.int64), np.array(times), torch.stack(pixels))
                    idx, times, pixels = [], [], []
    except FeatxError:
        raise
    except Exception as exc:
        raise FeatxError(f"NVDEC decoding failed ({exception_line(exc)})") from None
    check_whole(info, selector.shown, selector.last, step)
    if idx:
        yield FrameChunk(np.array(idx, np.int64), np.array(times), torch.stack(pixels))
    yield DecodedVideo(info=upright(info, turns), frames_decoded=selector.shown, end_time=selector.last + step)


def _decoded(demuxer, decoder, nvc):
    """Lists of decoded frames, in output order: one per packet, then what an empty (end-of-stream) packet flushes
    out of the decoder's reorder queue."""
    for packet in demuxer:
        yield decoder.Decode(packet)
    try:
        end = nvc.PacketData()  # bsl 0: end of stream (a second one, if the demuxer sent one, flushes nothing)
    except TypeError:  # not constructible from Python in some version: the GPU test's frame counts tell if lost
        return
    yield decoder.Decode(end)


def nvdec_events(paths: list[Path], fps: float | None, pre: Preprocess, device, chunk: int = 16) -> Iterator[Event]:
    """decode_pool.decode_events on the GPU, in this process (NVDEC is the card's own engine: no worker
    processes). Every failure becomes a Failed event, as there."""
    for i, path in enumerate(paths):
        try:
            for item in stream_frames_nvdec(path, fps, pre, device, chunk):
                yield Decoded(i, item) if isinstance(item, DecodedVideo) else Frames(i, item)
        except FeatxError as exc:
            yield Failed(i, str(exc), probe_quietly(path))
        except Exception as exc:  # a decoder bug must not stop the dataset; it is recorded in the manifest
            yield Failed(i, f"{type(exc).__name__}: {exc}", probe_quietly(path))
