"""ScenePaths.claim: a pipeline run (``ssl-nav demo --out D``) never deletes stage directories it did not write."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_nav.errors import SslNavError
from ssl_nav.pipeline import ScenePaths

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stage", ["store", "frames", "run", "index-baseline", "index-finetuned"])
def test_a_stage_directory_holding_the_users_files_is_refused_and_kept(tmp_path, stage):
    d = tmp_path / "D"
    (d / stage).mkdir(parents=True)
    (d / stage / "views.jsonl").write_text("mine\n")
    with pytest.raises(SslNavError, match=f"{d / stage}: exists and was not written by ssl-nav demo"):
        ScenePaths(d).claim()
    assert (d / stage / "views.jsonl").read_text() == "mine\n"
    assert not (d / ScenePaths.MARKER).exists()


def test_a_stage_path_that_is_a_file_or_a_link_is_refused(tmp_path):
    d = tmp_path / "D"
    d.mkdir()
    (d / "store").write_text("a file")
    with pytest.raises(SslNavError, match="store: exists"):
        ScenePaths(d).claim()
    (d / "store").unlink()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", d / "store")
    with pytest.raises(SslNavError, match="store: exists"):
        ScenePaths(d).claim()


def test_a_new_or_empty_directory_is_claimed_and_a_claimed_one_may_be_rerun(tmp_path):
    d = tmp_path / "D"
    (d / "store").mkdir(parents=True)  # empty: nothing to lose
    ScenePaths(d).claim()
    assert (d / ScenePaths.MARKER).is_file()
    (d / "store" / "views.jsonl").write_text("written by the run\n")
    ScenePaths(d).claim()  # the pipeline's own output: a re-run replaces it
    ScenePaths(tmp_path / "new").claim()
    assert (tmp_path / "new" / ScenePaths.MARKER).is_file()


def test_ssl_nav_demo_refuses_an_out_with_a_users_store(tmp_path):
    d = tmp_path / "D"
    (d / "store").mkdir(parents=True)
    (d / "store" / "instances.json").write_text("{}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "ssl_nav", "demo", "--quick", "--no-progress", "--out", str(d)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    assert f"{d / 'store'}: exists and was not written by ssl-nav demo" in r.stderr
    assert "Traceback" not in r.stderr
    assert (d / "store" / "instances.json").read_text() == "{}"
    assert sorted(p.name for p in d.iterdir()) == ["store"]
