"""The Frame contract and the frames-directory format."""

import json

import numpy as np
import pytest

from ssl_nav.errors import FormatError, FrameError
from ssl_nav.frames import Frame, FramesWriter, SkippedFrame, read_frames_dir, read_jsonl
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
