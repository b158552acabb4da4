"""Writing the examplar media: H.264 videos whose decoded frames are the same on every build, and PNG images.

Every setting that could make an encode depend on anything but its frames is pinned in ``X264_PARAMS``.
"""
from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

X264_CRF = 18  # near-transparent quality for every video item
X264_PRESET = "veryfast"  # fast to build; the CRF sets the quality
#: x264 settings pinned for output that is identical on every run: one thread everywhere (frame, lookahead and
#: slice threads split the work by timing), and no macroblock-tree rate control (``rc-lookahead=0`` turns it
#: off). The mb-tree's SIMD float code made the same frames encode differently from one call to the next in
#: one process (up to 33 grey levels apart once decoded) and may round differently on another CPU.
X264_PARAMS = "threads=1:lookahead-threads=1:sliced-threads=0:rc-lookahead=0:mbtree=0"


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` (H, W even) -> planar yuv420p uint8 ``[H*3/2, W]``.

    BT.601 limited range with OpenCV's fixed-point converter (deterministic, and fast enough that encoding
    dominates the build). Done before the codec library, whose own converter gave run-to-run different bytes.
    """
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)


def write_mp4(frames: np.ndarray, path: str, fps: Fraction, crf: int = X264_CRF) -> None:
    """Encode ``[T, H, W, 3]`` RGB uint8 (H, W even) to H.264 yuv420p with libx264 at ``crf`` (``X264_PARAMS``).

    Written to ``path + ".part"`` and renamed when complete, so an interrupted build leaves no half file.
    """
    import av

    tmp = path + ".part"
    with av.open(tmp, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {"crf": str(crf), "preset": X264_PRESET, "x264-params": X264_PARAMS}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")
            frame.pts = i
            frame.time_base = 1 / fps
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def write_image(img: np.ndarray, path: str) -> None:
    """Write ``[H, W, 3]`` RGB uint8 as a PNG (lossless: the degradation is all in the pixels)."""
    from PIL import Image

    tmp = path + ".part"
    Image.fromarray(img).save(tmp, format="PNG", compress_level=6)
    os.replace(tmp, path)
