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
