"""PLY/PCD with instance labels: our round trip, external ASCII PLY and PCD."""

import numpy as np
import pytest

from ssl_nav.errors import FormatError
from ssl_nav.mapping import InstanceMap
from ssl_nav.mapping.ply import read_labeled_cloud, read_ply, write_ply


def test_ply_round_trip_preserves_points_and_labels(tmp_path):
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(1000, 3)).astype(np.float32)
    labels = rng.integers(1, 40, size=1000).astype(np.int32)
    write_ply(tmp_path / "m.ply", pts, labels)
    p2, l2 = read_ply(tmp_path / "m.ply")
    np.testing.assert_array_equal(p2, pts)
    np.testing.assert_array_equal(l2, labels)
    # open3d reads the same file (standard PLY) with the custom attribute
    import open3d as o3d

    pc = o3d.t.io.read_point_cloud(str(tmp_path / "m.ply"))
    np.testing.assert_allclose(pc.point["positions"].numpy(), pts)
    np.testing.assert_array_equal(pc.point["instance"].numpy().ravel(), labels)


def test_external_ascii_ply_and_pcd_load_as_maps(tmp_path):
    (tmp_path / "ext.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty int label\nend_header\n"
        "0 0 0 255 5\n1 0 0 255 5\n0 1 0 0 7\n0 0 1 0 0\n")
    m = InstanceMap.load(tmp_path / "ext.ply")
    assert {i: len(m.instance_points(i)) for i in (5, 7)} == {5: 2, 7: 1}
    assert len(m.instance_points(0)) == 0  # label 0 = no instance
    (tmp_path / "ext.pcd").write_text(
        "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z instance\nSIZE 4 4 4 4\nTYPE F F F I\nCOUNT 1 1 1 1\n"
        "WIDTH 3\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA ascii\n0 0 0 3\n1 0 0 3\n0 2 0 4\n")
    p, lab = read_labeled_cloud(tmp_path / "ext.pcd")
    np.testing.assert_array_equal(lab, [3, 3, 4])
    np.testing.assert_allclose(p[2], [0, 2, 0])


def test_bad_clouds_name_the_file(tmp_path):
    (tmp_path / "nolabel.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
        "end_header\n0 0 0\n")
    with pytest.raises(FormatError, match="nolabel.ply.*instance label"):
        read_ply(tmp_path / "nolabel.ply")
    write_ply(tmp_path / "t.ply", np.zeros((10, 3)), np.ones(10))
    data = (tmp_path / "t.ply").read_bytes()
    (tmp_path / "t.ply").write_bytes(data[:-20])
    with pytest.raises(FormatError, match="t.ply: truncated"):
        read_ply(tmp_path / "t.ply")
    with pytest.raises(FormatError, match="unsupported"):
        read_labeled_cloud(tmp_path / "x.xyz")
