"""benchmarks/run.py ties every section to a commit: a tree with uncommitted changes is refused unless
--allow-dirty is given (the markdown file being written does not count)."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture
def run_mod():
    spec = importlib.util.spec_from_file_location("bench_run_under_test", RUN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def _repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    (repo / "BENCHMARKS.md").write_text("# BENCHMARKS\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    return repo


def test_dirty_paths_name_changed_and_new_files_but_not_the_output(run_mod, tmp_path):
    repo = _repo(tmp_path)
    assert run_mod.dirty_paths(repo) == []
    (repo / "BENCHMARKS.md").write_text("# BENCHMARKS\nnew\n")
    assert run_mod.dirty_paths(repo) == ["BENCHMARKS.md"]
    assert run_mod.dirty_paths(repo, repo / "BENCHMARKS.md") == []
    (repo / "code.py").write_text("x = 2\n")
    (repo / "new.py").write_text("y = 1\n")
    assert sorted(run_mod.dirty_paths(repo, repo / "BENCHMARKS.md")) == ["code.py", "new.py"]
    assert run_mod.commit(repo, repo / "BENCHMARKS.md").endswith("+dirty")


def test_a_dirty_tree_is_refused_unless_allowed(run_mod, tmp_path, monkeypatch, capsys):
    repo = _repo(tmp_path)
    (repo / "code.py").write_text("x = 2\n")
    monkeypatch.setattr(run_mod, "REPO", repo)
    out = tmp_path / "B.md"
    assert run_mod.main(["--out", str(out), "--only", "no_such_area"]) == 2
    err = capsys.readouterr().err
    assert "uncommitted changes (code.py)" in err and "--allow-dirty" in err
    assert not out.exists()  # nothing written
    assert run_mod.main(["--out", str(out), "--only", "no_such_area", "--allow-dirty"]) == 0
    assert out.is_file()
