"""TUM RGB-D sequences (ssl_nav.recordings.tum): association like associate.py, depth 5000/m, poses, errors."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_nav.cli import main
from ssl_nav.config import PipelineConfig
from ssl_nav.frames import SkippedFrame, write_png
from ssl_nav.geometry import matrix_to_quaternion
from ssl_nav.recordings import RecordingError
from ssl_nav.recordings.tum import INTRINSICS, associate, camera_for, iter_tum_frames
from testkit import scenes


def write_tum(root, n=4, depth_lag=0.01, gt_every=0.05, drop_depth=(), w=160, h=120):
    """A TUM-layout sequence of ray-cast frames (stamps 1305031102.x as TUM's), depth 16-bit at 5000 per m."""
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    poses = scenes.orbit_poses(n)
    t0 = 1305031102.175304
    rgb_l, depth_l, gt_l = ["# color images", "# timestamp filename"], ["# depth maps"], ["# ground truth"]
    frames = []
    for i, T in enumerate(poses):
        f = scenes.render(scenes.default_boxes(), T, width=w, height=h)
        s = t0 + 0.1 * i
        write_png(root / f"rgb/{s:.6f}.png", f.rgb)
        rgb_l.append(f"{s:.6f} rgb/{s:.6f}.png")
        if i not in drop_depth:
            d = np.nan_to_num(f.depth)
            d = np.round(np.where(d < 13.0, d, 0.0) * 5000).astype(np.uint16)  # 16 bits hold 13.1 m
            write_png(root / f"depth/{s + depth_lag:.6f}.png", d)
            depth_l.append(f"{s + depth_lag:.6f} depth/{s + depth_lag:.6f}.png")
        frames.append((s, f))
    # ground truth at its own rate, on the same arc: interpolated back at the colour stamps
    for i, T in enumerate(poses):
        q = matrix_to_quaternion(T[:3, :3])
        gt_l.append(f"{t0 + 0.1 * i - gt_every:.4f} " + " ".join(f"{v:.6f}" for v in (*T[:3, 3], *q)))
        gt_l.append(f"{t0 + 0.1 * i + gt_every:.4f} " + " ".join(f"{v:.6f}" for v in (*T[:3, 3], *q)))
    for name, lines in (("rgb.txt", rgb_l), ("depth.txt", depth_l), ("groundtruth.txt", gt_l)):
        (root / name).write_text("\n".join(lines) + "\n")
    return frames


def test_associate_matches_associate_py():
    # closest pairs first, each stamp once, only below max_difference
    assert associate([1.0, 1.02, 2.0], [1.015, 1.03, 3.0], 0.02) == [(1, 0)]  # 0.005 s first; then 0 and 1 are used
    assert associate([1.0, 1.02, 2.0], [1.001, 1.03, 2.01], 0.02) == [(0, 0), (1, 1), (2, 2)]
    assert associate([1.0], [1.03], 0.02) == []


def test_reads_a_sequence_with_depth_scale_5000_and_poses(tmp_path):
    seq = tmp_path / "rgbd_dataset_freiburg2_desk"
    want = write_tum(seq, depth_lag=0.01, gt_every=0.005)
    got = list(iter_tum_frames(seq, PipelineConfig()))
    assert len(got) == 4 and not any(isinstance(g, SkippedFrame) for g in got)
    for (s, f), g in zip(want, got):
        assert g.stamp == pytest.approx(s)
        assert np.array_equal(g.rgb, f.rgb)
        d = np.nan_to_num(f.depth)
        assert np.allclose(g.depth, np.where(d < 13.0, d, 0.0), atol=1.5e-4, rtol=0)  # 1/5000 m quantisation
        assert np.allclose(g.T_world_cam, f.T_world_cam, atol=1e-5)
        assert g.K[0, 0] == INTRINSICS["freiburg2"][0] and g.K[1, 2] == INTRINSICS["freiburg2"][3]


def test_unmatched_images_are_skipped_with_reasons(tmp_path):
    seq = tmp_path / "seq"
    write_tum(seq, drop_depth=(1,), gt_every=0.03)  # ground truth 0.03 s away: beyond 0.02 s
    got = list(iter_tum_frames(seq, PipelineConfig()))
    reasons = [g.reason for g in got if isinstance(g, SkippedFrame)]
    assert any("no depth within 0.02 s" in r for r in reasons)
    assert sum("no ground truth within 0.02 s" in r for r in reasons) == 3


def test_camera_choice():
    from pathlib import Path

    assert camera_for(Path("/d/rgbd_dataset_freiburg3_long_office_household"), "auto") == "freiburg3"
    assert camera_for(Path("/d/my_sequence"), "auto") == "default"
    assert camera_for(Path("/d/rgbd_dataset_freiburg3_x"), "freiburg1") == "freiburg1"


def test_collect_tum_builds_a_store(tmp_path, capsys):
    seq = tmp_path / "rgbd_dataset_freiburg1_xyz"
    write_tum(seq, n=6, gt_every=0.005)
    assert main(["collect", "--tum", str(seq), "--store", str(tmp_path / "s"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "6 colour images, 6 frames, 0 skipped (TUM intrinsics: freiburg1)" in out
    assert (tmp_path / "s" / "map" / "instances.json").is_file()


@pytest.mark.parametrize("case,expect", [
    ("no_groundtruth", "groundtruth.txt: file not found"),
    ("bad_line", "rgb.txt:3: expected a timestamp and 1 value(s), got 3 fields"),
    ("sizes", "is 80x60 but colour"),
])
def test_bad_sequences_write_nothing(tmp_path, capsys, monkeypatch, case, expect):
    seq = tmp_path / "seq"
    write_tum(seq, gt_every=0.005)
    if case == "no_groundtruth":
        (seq / "groundtruth.txt").unlink()
    elif case == "bad_line":
        lines = (seq / "rgb.txt").read_text().splitlines()
        lines[2] += " extra"
        (seq / "rgb.txt").write_text("\n".join(lines) + "\n")
    else:
        for p in (seq / "depth").iterdir():
            write_png(p, np.full((60, 80), 5000, np.uint16))
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert main(["collect", "--tum", str(seq), "--store", str(tmp_path / "s"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert expect in err and str(seq) in err
    assert not (tmp_path / "s").exists() and not list(tmp.iterdir())
    with pytest.raises(RecordingError):
        list(iter_tum_frames(seq, PipelineConfig()))
