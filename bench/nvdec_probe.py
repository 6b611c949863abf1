"""What PyNvVideoCodec gives for one video, beside what PyAV gives: for the next GPU session to fix featx.nvdec
quickly if tests/test_nvdec.py's GPU tests fail. Prints the demuxer's time base, the frames decoded with and
without the end-of-stream packet, the first frames' getPTS() next to PyAV's frame.pts, and a frame's tensor.
    python bench/nvdec_probe.py VIDEO
"""

from __future__ import annotations

import sys

import av
import torch

from featx.nvdec import _import


def main(path: str) -> None:
    nvc = _import()
    with av.open(path) as c:
        s = c.streams.video[0]
        pyav = [f.pts for f in c.decode(s)]
        print(f"pyav: {len(pyav)} frames, time_base {s.time_base}, start {s.start_time}, pts {pyav[:8]}")
    demuxer = nvc.CreateDemuxer(filename=path)
    print(f"demuxer time base {demuxer.GetTimebaseNum()}/{demuxer.GetTimebaseDen()}, codec {demuxer.GetNvCodecId()}")
    decoder = nvc.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), cudacontext=0, cudastream=0,
                                usedevicememory=True, outputColorType=nvc.OutputColorType.RGB)
    frames, packets = [], 0
    for packet in demuxer:
        packets += 1
        frames += [(f.getPTS(), f) for f in decoder.Decode(packet)]
    print(f"nvdec: {packets} packets, {len(frames)} frames before the end-of-stream packet")
    try:
        tail = decoder.Decode(nvc.PacketData())
        print(f"end-of-stream packet flushed {len(tail)} more frames")
        frames += [(f.getPTS(), f) for f in tail]
    except Exception as exc:
        print(f"end-of-stream packet failed: {type(exc).__name__}: {exc}")
    print(f"nvdec pts {[p for p, _ in frames[:8]]}")
    x = torch.from_dlpack(frames[0][1])
    print(f"frame 0: {tuple(x.shape)} {x.dtype} {x.device}, mean {x.float().mean().item():.2f}; {frames[0][1]}")


if __name__ == "__main__":
    main(sys.argv[1])
