"""``ssl-nav add-photos``: HQ user photos of one instance."""

import numpy as np

from ssl_nav.cli import main
from ssl_nav.frames import write_png
from ssl_nav.views.store import ViewStore


def test_add_photos(tmp_path, capsys):
    s = ViewStore(tmp_path / "s", create=True)
    s.set_instances({"4": {"category": "mug"}})
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(2)]
    for i, img in enumerate(imgs):
        write_png(tmp_path / f"p{i}.png", img)
    rc = main(["add-photos", "--store", str(tmp_path / "s"), "--instance", "4", str(tmp_path / "p0.png"),
               str(tmp_path / "p1.png")])
    assert rc == 0
    assert "instance 4: 2 high-quality photo(s)" in capsys.readouterr().out
    s = ViewStore(tmp_path / "s")
    hq = s.views("4", "high")
    assert len(hq) == 2 and hq[0]["source"] == "p0.png"
    np.testing.assert_array_equal(s.load_image(hq[1]), imgs[1])
    assert s.check() == []
    # unknown instance and unreadable file are errors naming what is wrong
    assert main(["add-photos", "--store", str(tmp_path / "s"), "--instance", "9", str(tmp_path / "p0.png")]) == 2
    assert "instance 9 is not in the map" in capsys.readouterr().err
    assert main(["add-photos", "--store", str(tmp_path / "s"), "--instance", "4", str(tmp_path / "nope.png")]) == 2
    assert "nope.png" in capsys.readouterr().err
    assert len(ViewStore(tmp_path / "s")) == 2


def test_add_photos_skips_a_photo_already_added_and_adds_none_on_failure(tmp_path, capsys, monkeypatch):
    s = ViewStore(tmp_path / "s", create=True)
    s.set_instances({"4": {"category": "mug"}})
    rng = np.random.default_rng(1)
    for i in range(3):
        write_png(tmp_path / f"p{i}.png", rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    args = ["add-photos", "--store", str(tmp_path / "s"), "--instance", "4"]
    assert main(args + [str(tmp_path / "p0.png")]) == 0
    assert main(args + [str(tmp_path / "p0.png"), str(tmp_path / "p1.png")]) == 0
    assert "skipped" in capsys.readouterr().out and len(ViewStore(tmp_path / "s")) == 2
    before = (tmp_path / "s" / "views.jsonl").read_bytes()
    real_add = ViewStore.add_view

    def full_disk(self, iid, img, *a, **k):
        if len(self) == 3:
            raise OSError(28, "No space left on device", str(self.root / "views"))
        return real_add(self, iid, img, *a, **k)

    monkeypatch.setattr(ViewStore, "add_view", full_disk)
    rng2 = np.random.default_rng(2)
    for i in range(3, 5):
        write_png(tmp_path / f"p{i}.png", rng2.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    assert main(args + [str(tmp_path / "p3.png"), str(tmp_path / "p4.png")]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert (tmp_path / "s" / "views.jsonl").read_bytes() == before
    assert len(list((tmp_path / "s" / "views" / "4").iterdir())) == 2
