"""Zeus windows mapped onto the EnergyRecord (a stand-in ZeusMonitor: Zeus needs NVML or RAPL to run)."""

from types import SimpleNamespace

import pytest

from ssl_nav.config import EnergyConfig
from ssl_nav.energy.meter import EnergyMeter
from ssl_nav.energy.zeus import ZeusBackend


class FakeZeusMonitor:
    """begin_window/end_window as ZeusMonitor: a window's Measurement holds joules per GPU / CPU index since its
    begin; ``total_energy`` is GPU-only, as in Zeus."""

    def __init__(self, dram: bool = True) -> None:
        self.gpu = {0: 0.0}
        self.cpu = {0: 0.0}
        self.dram = {0: 0.0} if dram else None
        self.open: dict[str, tuple] = {}

    def _snap(self):
        return dict(self.gpu), dict(self.cpu), dict(self.dram) if self.dram is not None else None

    def begin_window(self, key):
        assert key not in self.open
        self.open[key] = self._snap()

    def end_window(self, key):
        g0, c0, d0 = self.open.pop(key)
        g, c, d = self._snap()
        gpu = {i: g[i] - g0[i] for i in g}
        return SimpleNamespace(time=0.0, gpu_energy=gpu, cpu_energy={i: c[i] - c0[i] for i in c},
                               dram_energy=None if d is None else {i: d[i] - d0[i] for i in d},
                               soc_energy=None, total_energy=sum(gpu.values()))


def test_zeus_windows_give_phases_and_a_gpu_cpu_dram_total():
    z = FakeZeusMonitor()
    with EnergyMeter(EnergyConfig(), backend=ZeusBackend(monitor=z)) as m:
        with m.phase("train"):
            z.gpu[0] += 40.0
            z.cpu[0] += 10.0
            z.dram[0] += 2.0
        z.cpu[0] += 1.0
    rec = m.record
    assert rec["source"] == "zeus" and rec["total_covers"] == "gpu+cpu+dram"
    assert rec["joules"]["total"] == pytest.approx(53.0)  # not Zeus's GPU-only total_energy
    assert rec["phases"]["train"]["joules"]["total"] == pytest.approx(52.0)
    assert rec["phases"]["other"]["joules"]["cpu"] == pytest.approx(1.0)
    assert set(rec["channels"]) == {"gpu0", "cpu0", "dram0"}
    assert not z.open  # every window closed


def test_zeus_without_rapl_covers_the_gpu_only():
    z = FakeZeusMonitor(dram=False)
    z.cpu = {}
    with EnergyMeter(EnergyConfig(), backend=ZeusBackend(monitor=z)) as m:
        z.gpu[0] += 5.0
    assert m.record["total_covers"] == "gpu" and m.record["joules"]["cpu"] is None
    assert m.record["joules"]["total"] == pytest.approx(5.0)
