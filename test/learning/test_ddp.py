import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # the slow tier (DDP with two processes): `make test-fast` leaves it out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("objective", ["simsiam", "moco"])
def test_two_process_gloo_ddp_step_keeps_replicas_in_sync(store_factory, tmp_path, objective):
    store = store_factory(n_instances=4, views_per_instance=4)
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), str(worker), str(store), str(tmp_path), objective]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    info = torch.load(tmp_path / "info0.pt", weights_only=True)
    assert info["world_size"] == 2 and info["steps"] >= 1
    for k in r0:
        if k.endswith("num_batches_tracked") or "running_" in k:
            continue  # BN statistics are per-rank (no SyncBN); DDP broadcasts them from rank 0 each step
        assert torch.allclose(r0[k], r1[k], atol=1e-6), k
    if objective == "moco":  # keys gathered from both ranks: one queue, every entry filled by this epoch's keys
        assert torch.equal(r0["queue.keys"], r1["queue.keys"]) and torch.equal(r0["queue.labels"], r1["queue.labels"])
        assert (r0["queue.labels"] >= 0).all()
    # the step really trained: weights moved away from the shared seeded init
    torch.manual_seed(0)
    from ssl_nav.learning.backbones import Backbone

    init = Backbone("resnet18").net.state_dict()
    assert not torch.allclose(init["layer4.1.conv2.weight"], r0["backbone.net.layer4.1.conv2.weight"])
    # only rank 0 wrote the run directory
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "energy.json", "metrics.jsonl",
                                                                  "model.pt"]
