"""docs/formats.md lists exactly the keys the writers write: model.pt (save_model), checkpoint.pt (the trainer's
checkpoint writer) and the index's meta.json (InstanceIndex.save). A writer that adds or drops a key without the
doc fails here."""

import json
import re
from pathlib import Path

import pytest
import torch
from testkit.stores import tiny_config, write_store

from ssl_nav.learning.run_dir import finetune_run
from ssl_nav.retrieval.build import build_index

FORMATS = Path(__file__).resolve().parents[1] / "docs" / "formats.md"


def documented_keys(path_in_doc: str) -> set[str]:
    """The quoted keys of the ``{...}`` that follows ``path_in_doc`` in a code block of formats.md."""
    text = FORMATS.read_text()
    start = re.search(rf"^{re.escape(path_in_doc)}\s", text, re.M).start()  # a code-block line naming the file
    body = text[text.index("{", start) + 1:]
    depth, end = 1, 0
    for end, ch in enumerate(body):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            break
    body = re.sub(r':\s*"[^"]*"', "", body[:end])  # drop values such as "format": "ssl_nav.model/1"
    return set(re.findall(r'"(\w+)"', body))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One tiny fine-tune stage (model.pt with its self-calibration, checkpoint.pt) and one index built with its
    model (meta.json)."""
    tmp = tmp_path_factory.mktemp("formats")
    store = write_store(tmp / "store")
    cfg = tiny_config(epochs=1, holdout_fraction=0.0)
    finetune_run(store, tmp / "run", cfg, progress=False, ledger=None)
    rcfg = type(cfg.retrieval)(**{**cfg.retrieval.__dict__, "image_size": 32, "device": "cpu"})
    build_index(store, tmp / "run" / "model.pt", rcfg, tmp / "index", progress=False)
    return tmp


def _torch_keys(path: Path) -> set[str]:
    return set(torch.load(path, map_location="cpu", weights_only=True))


def test_model_pt_keys_match_the_doc(written):
    assert _torch_keys(written / "run" / "model.pt") == documented_keys("RUN/model.pt")


def test_model_pt_table_lists_the_same_keys():
    text = FORMATS.read_text()
    table = text[text.index("### `model.pt`"):text.index("### `energy.json`")]
    rows = set()
    for cells in re.findall(r"^\| ([^|]+) \|", table, re.M):
        rows |= set(re.findall(r"`(\w+)`", cells))
    assert rows == documented_keys("RUN/model.pt")


def test_checkpoint_pt_keys_match_the_doc(written):
    assert _torch_keys(written / "run" / "checkpoint.pt") == documented_keys("RUN/checkpoint.pt")


def test_index_meta_json_keys_match_the_doc(written):
    meta = json.loads((written / "index" / "meta.json").read_text())
    assert set(meta) == documented_keys("IDX/meta.json")


def test_the_parser_sees_a_key_that_is_missing(tmp_path, monkeypatch):
    """The check can fail: a doc without one of the keys does not match."""
    doc = tmp_path / "formats.md"
    doc.write_text(FORMATS.read_text().replace('"monitor_start"', '"not_written"'))
    monkeypatch.setitem(globals(), "FORMATS", doc)
    assert "monitor_start" not in documented_keys("RUN/checkpoint.pt")
    assert "not_written" in documented_keys("RUN/checkpoint.pt")
