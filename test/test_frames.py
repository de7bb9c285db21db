"""The Frame contract and the frames-directory format."""

import json
import struct
import zlib

import numpy as np
import pytest

from ssl_nav.errors import FormatError, FrameError
from ssl_nav.frames import (Frame, FramesWriter, SkippedFrame, count_frames, image_size_from_header, read_frames_dir,
                            read_image_rgb, read_instance, read_jsonl, write_png)
from ssl_nav.geometry import camera_pose, intrinsics_from_fov


def make_frame(fid="000000", h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 4.0, (h, w)).astype(np.float32)
    depth[0, 0] = 0.0
    mask = rng.integers(0, 5, (h, w)).astype(np.int32)
    return Frame(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth=depth, K=intrinsics_from_fov(w, h, 70),
                 T_world_cam=camera_pose([1, 2, 1.1], 0.3, 0.1), instance_mask=mask, stamp=1.5, frame_id=fid)


def test_frames_dir_round_trip(tmp_path):
    frames = [make_frame(f"{i:06d}", seed=i) for i in range(3)]
    with FramesWriter(tmp_path) as w:
        for f in frames:
            w.write(f)
    back = list(read_frames_dir(tmp_path))
    assert [b.frame_id for b in back] == [f.frame_id for f in frames]
    for a, b in zip(frames, back):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.instance_mask, b.instance_mask)
        np.testing.assert_allclose(b.depth, a.depth, atol=0.0006)  # mm quantisation
        np.testing.assert_allclose(b.T_world_cam, a.T_world_cam)
        assert b.stamp == a.stamp and b.depth[0, 0] == 0.0


def test_bad_frames_are_skipped_with_reasons(tmp_path):
    with FramesWriter(tmp_path) as w:
        w.write(make_frame("good"))
        bad_k = make_frame("badk")
        bad_k.K = np.zeros((3, 3))
        w.write(bad_k)
        w.write(make_frame("gone"))
    (tmp_path / "rgb" / "gone.png").unlink()
    with open(tmp_path / "frames.jsonl", "a") as fh:
        fh.write("{not json\n")
    out = list(read_frames_dir(tmp_path))
    assert isinstance(out[0], Frame)
    skipped = [o for o in out if isinstance(o, SkippedFrame)]
    assert [s.frame_id for s in skipped] == ["badk", "gone", "?"]
    assert "singular" in skipped[0].reason
    assert "gone.png" in skipped[1].reason and "not found" in skipped[1].reason
    assert skipped[2].line == 4 and "frames.jsonl:4" in skipped[2].reason


@pytest.mark.parametrize("mutate, match", [
    (lambda f: setattr(f, "depth", np.full_like(f.depth, np.nan)), "no valid pixel"),
    (lambda f: setattr(f, "depth", f.depth[:-1]), "does not match"),
    (lambda f: setattr(f, "instance_mask", f.instance_mask[:, :-1]), "instance_mask shape"),
    (lambda f: setattr(f, "quality", "medium"), "quality"),
    (lambda f: f.T_world_cam.__setitem__((0, 3), np.nan), "NaN"),
])
def test_validate_names_the_field(mutate, match):
    f = make_frame()
    mutate(f)
    with pytest.raises(FrameError, match=match):
        f.validate()


def test_read_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"a": 1}) + "\n\n[1]\n")
    it = read_jsonl(p)
    assert next(it) == (1, {"a": 1})
    with pytest.raises(FormatError, match=r"x.jsonl:3"):
        next(it)


def _one_good_frame(tmp_path):
    with FramesWriter(tmp_path) as w:
        w.write(make_frame("good"))
    return json.loads((tmp_path / "frames.jsonl").read_text())


@pytest.mark.parametrize("change, match", [
    ({"depth_scale": "abc"}, "key 'depth_scale' must be a positive finite number"),
    ({"depth_scale": 0}, "key 'depth_scale'"),
    ({"stamp": None}, "key 'stamp' must be a finite number"),
    ({"stamp": "now"}, "key 'stamp'"),
    ({"rgb": None}, "key 'rgb': must be a relative path"),
    ({"rgb": 5}, "key 'rgb': must be a relative path"),
    ({"depth": ["a"]}, "key 'depth': must be a relative path"),
    ({"rgb": "../outside.png"}, "key 'rgb': path '../outside.png' leaves"),
    ({"instance": "/etc/hostname"}, "key 'instance': path '/etc/hostname' is absolute"),
    ({"frame_id": {"a": 1}}, "key 'frame_id'"),
    ({"quality": ["low"]}, "key 'quality'"),
])
def test_fields_of_the_wrong_type_skip_the_frame_with_file_and_line(tmp_path, change, match):
    """A wrong type or a path outside the directory skips that frame only; the reason names file:line."""
    rec = _one_good_frame(tmp_path)
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / rec["rgb"]).read_bytes())
    with open(tmp_path / "frames.jsonl", "a") as fh:
        fh.write(json.dumps({**rec, "frame_id": "bad", **change}) + "\n")
        fh.write(json.dumps(rec) + "\n")
    out = list(read_frames_dir(tmp_path))
    assert [type(o).__name__ for o in out] == ["Frame", "SkippedFrame", "Frame"]
    assert out[1].line == 2 and f"{tmp_path / 'frames.jsonl'}:2: " in out[1].reason
    assert match in out[1].reason


def test_non_utf8_lines_are_skipped_not_fatal(tmp_path):
    """Bytes that are not UTF-8 make one malformed line, not a UnicodeDecodeError."""
    rec = _one_good_frame(tmp_path)
    with open(tmp_path / "frames.jsonl", "ab") as fh:
        fh.write(b'{"frame_id": "\xff\xfe"}\n' + json.dumps(rec).encode() + b"\n")
    out = list(read_frames_dir(tmp_path))
    assert [type(o).__name__ for o in out] == ["Frame", "SkippedFrame", "Frame"]
    assert "frames.jsonl:2: malformed line (not UTF-8" in out[1].reason
    assert count_frames(tmp_path) == 3
    p = tmp_path / "photos.jsonl"
    p.write_bytes(b'{"instance_id": "1"}\n{"image": "\xe9"}\n')
    with pytest.raises(FormatError, match=r"photos.jsonl:2: not UTF-8"):
        list(read_jsonl(p))


def test_skip_reasons_name_file_line_and_frame(tmp_path):
    """A frame whose image is missing names frames.jsonl:LINE, the frame and the file."""
    with FramesWriter(tmp_path) as w:
        w.write(make_frame("a"))
        w.write(make_frame("b"))
    (tmp_path / "depth" / "b.png").unlink()
    bad = list(read_frames_dir(tmp_path))[1]
    assert bad.reason.startswith(f"{tmp_path / 'frames.jsonl'}:2: frame b: ")
    assert str(tmp_path / "depth" / "b.png") in bad.reason and "not found" in bad.reason


def _png_header_only(path, width, height, channels=3):
    """A few hundred bytes whose PNG header claims width x height (the pixel data is cut short)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width * channels + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_an_image_claiming_too_many_pixels_is_refused_before_decoding(tmp_path):
    """The size comes from the header; a small file claiming > 100 MP is never handed to the decoder."""
    big = _png_header_only(tmp_path / "big.png", 10_001, 10_001)
    assert big.stat().st_size < 2000
    assert image_size_from_header(big) == (10_001, 10_001)
    with pytest.raises(FrameError, match=r"big.png: image too large \(10001x10001 pixels; the limit is 100 MP\)"):
        read_image_rgb(big)
    bomb = _png_header_only(tmp_path / "bomb.png", 20_000, 20_000, channels=1)
    with pytest.raises(FrameError, match="too large"):
        read_instance(bomb)
    write_png(tmp_path / "ok.png", np.zeros((4, 6, 3), np.uint8))
    assert read_image_rgb(tmp_path / "ok.png").shape == (4, 6, 3)


def test_writer_refuses_frame_ids_that_are_not_file_names(tmp_path):
    f = make_frame("../../escape")
    with pytest.raises(FrameError, match="frame id"):
        with FramesWriter(tmp_path) as w:
            w.write(f)
    assert not (tmp_path.parent / "escape.png").exists()
