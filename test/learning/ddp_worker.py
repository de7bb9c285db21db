"""Run by test_ddp.py under ``torchrun --nproc-per-node 2``: one fine-tune epoch per rank (objective from argv[3]),
then each rank saves its own copy of the model state (MoCo's key encoder and queue included) so the test can
compare the replicas. Not a test module itself."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/, for testkit (a script, not under pytest)
from testkit.stores import tiny_config  # noqa: E402

from ssl_nav.learning.trainer import finetune  # noqa: E402

store, out = Path(sys.argv[1]), Path(sys.argv[2])
objective = sys.argv[3] if len(sys.argv) > 3 else "simsiam"
cfg = tiny_config(epochs=1, batch_size=8, holdout_fraction=0.0, base_lr=8.0, objective=objective, moco_dim=16)
res = finetune(store, out / "run", cfg, progress=False)
rank = int(os.environ["RANK"])
torch.save({k: v.detach().clone() for k, v in res.model.state_dict().items()}, out / f"rank{rank}.pt")
torch.save({"world_size": res.summary["world_size"], "steps": res.metrics[-1]["step"]}, out / f"info{rank}.pt")
