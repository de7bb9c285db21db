"""resolve_device: one rule for every stage; CUDA asked for and absent is a ConfigError naming the key."""

import pytest
import torch

from ssl_nav.device import resolve_device
from ssl_nav.errors import ConfigError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    want = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == want


def test_cuda_without_cuda_names_the_key(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=r"retrieval\.device: '.*' requested but no CUDA device"):
            resolve_device(name, "retrieval.device")
    assert resolve_device("auto", "retrieval.device") == torch.device("cpu")


def test_cuda_index_and_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="learning.device: CUDA device 2 requested but this host has 2"):
        resolve_device("cuda:2", "learning.device")


def test_unknown_name():
    with pytest.raises(ConfigError, match="learning.device: must be one of auto, cpu, cuda"):
        resolve_device("tpu", "learning.device")
