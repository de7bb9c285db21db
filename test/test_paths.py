"""resolve_inside: a path read from a sidecar file stays inside its directory, or is refused and named."""

import os

import pytest

from ssl_nav.errors import FormatError, StoreError
from ssl_nav.paths import resolve_inside


def test_a_relative_path_inside_is_returned_unresolved(tmp_path):
    (tmp_path / "views" / "1").mkdir(parents=True)
    assert resolve_inside(tmp_path, "views/1/a.png", "f:1") == tmp_path / "views/1/a.png"
    assert resolve_inside(tmp_path, "views/../views/1/a.png", "f:1", under="views").name == "a.png"


@pytest.mark.parametrize("rel, match", [
    ("/etc/passwd", "absolute"),
    ("../outside.png", "leaves"),
    ("views/../../outside.png", "leaves"),
    ("", "non-empty string"),
    (5, "non-empty string"),
    (None, "non-empty string"),
    (["a.png"], "non-empty string"),
    (".", "leaves"),
    ("a\x00b", "NUL"),
])
def test_paths_that_leave_the_directory_are_refused_and_named(tmp_path, rel, match):
    with pytest.raises(FormatError, match=match) as e:
        resolve_inside(tmp_path / "root", rel, "views.jsonl:7: key 'image'")
    assert str(e.value).startswith("views.jsonl:7: key 'image'")


def test_symlinks_are_followed_before_the_check(tmp_path):
    root = tmp_path / "root"
    (root / "views").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", root / "views" / "link.png")
    os.symlink(root / "index.json", root / "views" / "inner.png")
    with pytest.raises(StoreError, match="leaves"):
        resolve_inside(root, "views/link.png", "w", error=StoreError)
    assert resolve_inside(root, "views/inner.png", "w") == root / "views" / "inner.png"  # inside root ...
    with pytest.raises(FormatError, match="leaves"):  # ... but not inside root/views
        resolve_inside(root, "views/inner.png", "w", under="views")
