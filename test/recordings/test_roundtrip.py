"""A scene written by ``ssl-nav simulate --bag`` and collected from the bag gives the same map
as the same scene's frames directory (same instances, centroids within 1 cm, view counts within 2 %)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from ssl_nav.cli import main
from ssl_nav.frames import count_frames


def _views_per_instance(store) -> Counter:
    return Counter(json.loads(line)["instance_id"] for line in (store / "views.jsonl").read_text().splitlines()
                   if line.strip())


def test_simulate_bag_then_collect_gives_the_frames_directory_map(tmp_path, capsys):
    sim, bag = tmp_path / "sim", tmp_path / "sim.bag"
    assert main(["simulate", "--preset", "quick", "--seed", "2", "--width", "160", "--height", "120",
                 "--positions", "3", "--turns", "4", "--out", str(sim), "--bag", str(bag), "--no-progress"]) == 0
    assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.mcap"))
    capsys.readouterr()
    cfg = tmp_path / "cfg.yaml"
    assert main(["config", "dump", "--preset", "quick", "--seed", "2"]) == 0
    cfg.write_text(capsys.readouterr().out)
    for src, store in ((["--frames", str(sim)], "s_frames"), (["--bag", str(bag)], "s_bag")):
        assert main(["collect", *src, "--store", str(tmp_path / store), "--config", str(cfg), "--no-photos",
                     "--quiet"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{count_frames(sim)} colour images, {count_frames(sim)} frames, 0 skipped" in out
    a = json.loads((tmp_path / "s_frames" / "map" / "instances.json").read_text())
    b = json.loads((tmp_path / "s_bag" / "map" / "instances.json").read_text())
    assert sorted(a) == sorted(b) and len(a) >= 3
    for k in a:
        assert np.linalg.norm(np.subtract(a[k]["centroid"], b[k]["centroid"])) < 0.01
    va, vb = _views_per_instance(tmp_path / "s_frames"), _views_per_instance(tmp_path / "s_bag")
    assert sorted(va) == sorted(vb) and sum(va.values()) > 0
    assert abs(sum(va.values()) - sum(vb.values())) <= 0.02 * sum(va.values())
    for k in va:
        assert abs(va[k] - vb[k]) <= max(0.02 * va[k], 0)
