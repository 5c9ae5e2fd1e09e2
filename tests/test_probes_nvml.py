"""NvmlProbe: NVIDIA GPUs through NVML.

Most tests inject a fake ``pynvml`` module (the seam is ``sys.modules``: the probe
imports the binding when it is made, the collector when it opens). The tests at
the end need a real GPU and skip where ``NvmlProbe()`` cannot be made.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from multimeter import Multimeter, metric
from multimeter.probes.nvml import NvmlProbe
from tests._programs import run_python

MiB = 1 << 20

# -- a fake pynvml ----------------------------------------------------------------------


class FakeNVMLError(Exception):
    """Like pynvml.NVMLError: carries NVML's return code as ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


NOT_SUPPORTED, NO_PERMISSION, FUNCTION_NOT_FOUND, UNKNOWN = 3, 4, 13, 999


class FakeGpu:
    """One GPU: the values its calls return; ``fail[call] = code`` makes a call raise."""

    def __init__(self, name: str = "Fake GPU") -> None:
        self.name = name
        self.utilization = SimpleNamespace(gpu=40, memory=15)
        self.memory = SimpleNamespace(used=2000 * MiB, total=8000 * MiB, free=6000 * MiB)
        self.power_mw = 123_456
        self.temperature = 55
        self.compute: list[Any] = []
        self.graphics: list[Any] = []
        self.fail: dict[str, int] = {}


class FakeNvml:
    """The part of pynvml that NvmlProbe calls."""

    NVMLError = FakeNVMLError
    NVML_ERROR_NOT_SUPPORTED = NOT_SUPPORTED
    NVML_ERROR_FUNCTION_NOT_FOUND = FUNCTION_NOT_FOUND
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, *gpus: FakeGpu, init_error: int | None = None) -> None:
        self.gpus = list(gpus)
        self.init_error = init_error
        self.running = 0  # nvmlInit calls not yet shut down
        self.handles_asked: list[int] = []

    def _gpu(self, handle: FakeGpu, call: str) -> FakeGpu:
        if call in handle.fail:
            raise FakeNVMLError(handle.fail[call])
        return handle

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)
        self.running += 1

    def nvmlShutdown(self) -> None:
        self.running -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self.handles_asked.append(index)
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        return self._gpu(handle, "name").name

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> Any:
        return self._gpu(handle, "utilization").utilization

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> Any:
        return self._gpu(handle, "memory").memory

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        return self._gpu(handle, "power").power_mw

    def nvmlDeviceGetTemperatureV(self, handle: FakeGpu, sensor: int) -> int:
        return self._gpu(handle, "temperatureV").temperature

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        return self._gpu(handle, "temperature").temperature

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[Any]:
        return self._gpu(handle, "compute").compute

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeGpu) -> list[Any]:
        return self._gpu(handle, "graphics").graphics


def entry(pid: int, used: int | None) -> Any:
    """A process in one of NVML's lists."""
    return SimpleNamespace(pid=pid, usedGpuMemory=used)


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """A fake pynvml with two GPUs, in place of the real one."""
    fake = FakeNvml(FakeGpu("Fake GPU A"), FakeGpu("Fake GPU B"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def collect(probe: NvmlProbe) -> dict[str, float]:
    """One reading of the probe's collector, by field name (opened here, in-process)."""
    collector = probe.collector
    if getattr(collector, "_nvml", None) is None:
        collector.open()
    return dict(zip(collector.fields, collector.collect(), strict=True))


def no_such_pid() -> int:
    """A pid that no process here has."""
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid += 1
    return pid


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A live child process of this one."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


# -- what is missing --------------------------------------------------------------------


def test_without_pynvml_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without nvidia-ml-py, making the probe names the package and the extra."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml fails
    with pytest.raises(RuntimeError, match=r"nvidia-ml-py.*pip install 'multimeter\[nvml\]'"):
        NvmlProbe()


def test_without_a_driver_it_says_so() -> None:
    """With nvidia-ml-py but no NVIDIA driver (the real library), the error says what is missing."""
    pytest.importorskip("pynvml")
    error = _real_probe_error()
    if error is None:
        pytest.skip("NVML works here: this machine has an NVIDIA GPU and driver")
    assert "NVIDIA driver" in str(error)
    assert "libnvidia-ml.so.1" in str(error)


def test_a_driver_that_does_not_start_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML that fails to start (e.g. driver not loaded) raises RuntimeError with the reason."""
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(FakeGpu(), init_error=9))
    with pytest.raises(RuntimeError, match=r"cannot start NVML \(FakeNVMLError: NVML error 9\)"):
        NvmlProbe()


def test_no_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML with no device raises RuntimeError saying there is no GPU."""
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with pytest.raises(RuntimeError, match="no NVIDIA GPU"):
        NvmlProbe()
    assert 0 == fake.running


def test_importing_multimeter_does_not_import_pynvml() -> None:
    """`import multimeter` and `import multimeter.probes` need no pynvml."""
    code = (
        "import sys, multimeter, multimeter.probes\n"
        "assert 'pynvml' not in sys.modules and 'multimeter.probes.nvml' not in sys.modules\n"
        "import multimeter.probes.nvml\n"
        "assert 'pynvml' not in sys.modules\n"
    )
    run_python("-c", code, check=True)


# -- arguments --------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [0, -1, math.nan, math.inf, True, "0.5", None])
def test_bad_interval_is_refused(interval: Any) -> None:
    """An interval that is not a positive number of seconds raises ValueError naming it."""
    with pytest.raises(ValueError, match="interval must be a positive number of seconds"):
        NvmlProbe(interval=interval)


@pytest.mark.parametrize("devices", [0, "0", [], [True], [-1], [0, 0], [1.0], ["gpu0"]])
def test_bad_devices_are_refused(devices: Any) -> None:
    """devices that are not distinct GPU indices raise ValueError naming the setting."""
    with pytest.raises(ValueError, match=r"devices must be a list of distinct GPU indices"):
        NvmlProbe(devices=devices)


def test_a_device_the_machine_lacks_is_refused(nvml: FakeNvml) -> None:
    """An index beyond the GPUs NVML lists raises ValueError naming the range."""
    with pytest.raises(ValueError, match="there is no GPU 2; this machine has GPUs 0 to 1"):
        NvmlProbe(devices=[2])
    assert 0 == nvml.running


# -- the schema -------------------------------------------------------------------------


def test_every_gpu_is_a_subject_with_every_figure(nvml: FakeNvml) -> None:
    """Each GPU is a subject gpu<index>, named after the device, with all its figures."""
    probe = NvmlProbe()
    keys = [m.key for m in probe.measures]
    figures = [
        "utilization",
        "memory_busy",
        "device_memory_used",
        "device_memory_total",
        "power",
        "temperature",
        "process_memory",
        "tree_memory",
    ]
    assert [f"gpu{i}.{f}" for i in (0, 1) for f in figures] == keys
    subjects = {m.subject for m in probe.measures}
    assert {"GPU 0 (NVML index): Fake GPU A", "GPU 1 (NVML index): Fake GPU B"} == {
        s.description for s in subjects
    }
    assert (0, 1) == probe.devices
    assert 0 == nvml.running  # NVML started to look, and stopped again


def test_figures_a_gpu_does_not_support_are_left_out(nvml: FakeNvml) -> None:
    """A call that says NotSupported when the probe is made leaves its figures out."""
    nvml.gpus[1].fail = {"power": NOT_SUPPORTED, "utilization": NOT_SUPPORTED}
    nvml.gpus[1].fail.update(compute=NOT_SUPPORTED, graphics=NOT_SUPPORTED)
    probe = NvmlProbe()
    keys = {m.key for m in probe.measures}
    assert {"gpu0.power", "gpu0.utilization", "gpu0.process_memory"} <= keys
    assert not {"gpu1.power", "gpu1.utilization", "gpu1.memory_busy"} & keys
    assert not {"gpu1.process_memory", "gpu1.tree_memory"} & keys
    assert {"gpu1.device_memory_used", "gpu1.temperature"} <= keys
    values = collect(probe)
    assert "gpu1.power" not in values
    assert 55.0 == values["gpu1.temperature"]


def test_other_failures_when_made_keep_the_figure(nvml: FakeNvml) -> None:
    """A call that fails otherwise (no permission) keeps its figure: missing while it fails."""
    nvml.gpus[0].fail = {"compute": NO_PERMISSION, "power": UNKNOWN}
    probe = NvmlProbe()
    keys = {m.key for m in probe.measures}
    assert {"gpu0.power", "gpu0.process_memory"} <= keys
    values = collect(probe)
    assert math.isnan(values["gpu0.power"])
    assert math.isnan(values["gpu0.process_memory"])


def test_an_older_driver_gives_the_temperature_through_the_old_call(nvml: FakeNvml) -> None:
    """Without nvmlDeviceGetTemperatureV (FunctionNotFound) the deprecated call is used."""
    nvml.gpus[0].fail = {"temperatureV": FUNCTION_NOT_FOUND}
    probe = NvmlProbe(devices=[0])
    assert "gpu0.temperature" in {m.key for m in probe.measures}
    assert 55.0 == collect(probe)["gpu0.temperature"]


def test_devices_reads_only_those_gpus(nvml: FakeNvml) -> None:
    """devices=[1] gives gpu1's figures only, and the collector opens only GPU 1."""
    probe = NvmlProbe(devices=[1])
    assert {"gpu1"} == {m.subject.key for m in probe.measures}
    assert (1,) == probe.devices
    nvml.handles_asked.clear()
    collect(probe)
    assert [1] == nvml.handles_asked
    assert "NvmlProbe(devices=[1], interval=0.5)" == repr(probe)


# -- readings ---------------------------------------------------------------------------


def test_a_reading_gives_every_figure_in_its_unit(nvml: FakeNvml) -> None:
    """Utilisation in %, memory in bytes, power in watts (NVML's milliwatts / 1000), °C."""
    probe = NvmlProbe(devices=[0])
    values: dict[str, Any] = {}
    probe.derive(values, (1.0, tuple(collect(probe).values()), None), None, 0.0)
    assert {
        "gpu0.utilization": 40.0,
        "gpu0.memory_busy": 15.0,
        "gpu0.device_memory_used": 2000.0 * MiB,
        "gpu0.device_memory_total": 8000.0 * MiB,
        "gpu0.power": 123.456,
        "gpu0.temperature": 55.0,
        "gpu0.process_memory": 0.0,
        "gpu0.tree_memory": 0.0,
    } == values


def test_a_figure_that_fails_is_missing_and_reported_once(nvml: FakeNvml) -> None:
    """A call failing at run time gives NaN (left out of points) and one problem text."""
    probe = NvmlProbe()
    collect(probe)
    nvml.gpus[1].fail = {"power": UNKNOWN}
    first = collect(probe)
    collector: Any = probe.collector
    assert math.isnan(first["gpu1.power"])
    assert 123.456 == first["gpu0.power"]
    assert 40.0 == first["gpu1.utilization"]
    assert "gpu1.power: FakeNVMLError: NVML error 999" == collector.problem
    collector.problem = None  # as the reader does once it has reported it
    collect(probe)
    assert collector.problem is None
    values: dict[str, Any] = {}
    probe.derive(values, (1.0, tuple(first.values()), None), None, 0.0)
    assert "gpu1.power" not in values
    assert "gpu0.power" in values


def test_process_memory_is_the_measured_process_s(nvml: FakeNvml) -> None:
    """process_memory sums the entries of this pid; others' memory is not counted."""
    me = os.getpid()
    nvml.gpus[0].compute = [entry(me, 300 * MiB), entry(me, 100 * MiB), entry(1, 999 * MiB)]
    values = collect(NvmlProbe())
    assert 400.0 * MiB == values["gpu0.process_memory"]
    assert 400.0 * MiB == values["gpu0.tree_memory"]
    assert 0.0 == values["gpu1.process_memory"]


def test_a_process_in_both_lists_is_counted_once(nvml: FakeNvml) -> None:
    """A process with a compute and a graphics context is one process, not two."""
    me = os.getpid()
    nvml.gpus[0].compute = [entry(me, 300 * MiB)]
    nvml.gpus[0].graphics = [entry(me, 300 * MiB)]
    assert 300.0 * MiB == collect(NvmlProbe())["gpu0.process_memory"]


def test_tree_memory_adds_live_descendants(nvml: FakeNvml, child: subprocess.Popen[bytes]) -> None:
    """tree_memory adds the memory of this process's descendants, not of other processes."""
    me = os.getpid()
    nvml.gpus[0].compute = [entry(me, 100 * MiB), entry(child.pid, 50 * MiB)]
    nvml.gpus[0].graphics = [entry(os.getppid(), 70 * MiB)]  # a parent is no descendant
    values = collect(NvmlProbe())
    assert 100.0 * MiB == values["gpu0.process_memory"]
    assert 150.0 * MiB == values["gpu0.tree_memory"]


def test_a_known_figure_beats_an_unknown_one_in_the_other_list(nvml: FakeNvml) -> None:
    """A process NVML lists twice, once without a memory figure, counts with the known one."""
    me = os.getpid()
    nvml.gpus[0].compute = [entry(me, None)]
    nvml.gpus[0].graphics = [entry(me, 300 * MiB)]
    nvml.gpus[1].compute = [entry(me, 200 * MiB)]
    nvml.gpus[1].graphics = [entry(me, None)]
    values = collect(NvmlProbe())
    assert 300.0 * MiB == values["gpu0.process_memory"]
    assert 200.0 * MiB == values["gpu1.process_memory"]


def test_pids_of_another_namespace_make_process_memory_unknown(nvml: FakeNvml) -> None:
    """When NVML lists only pids that are no process here (a container), the figures are NaN."""
    stranger = no_such_pid()
    nvml.gpus[0].compute = [entry(stranger, 100 * MiB)]
    probe = NvmlProbe()
    values = collect(probe)
    assert math.isnan(values["gpu0.process_memory"])
    assert math.isnan(values["gpu0.tree_memory"])
    assert 0.0 == values["gpu1.process_memory"]
    problem = probe.collector.problem  # type: ignore[attr-defined]
    assert problem.startswith(
        f"gpu0.processes: NVML lists pids that are no processes here ({stranger})"
    )


@pytest.mark.parametrize("not_available", [None, (1 << 64) - 1])
def test_memory_nvml_cannot_tell_is_unknown(nvml: FakeNvml, not_available: Any) -> None:
    """usedGpuMemory None or NVML_VALUE_NOT_AVAILABLE for this process gives NaN and a problem."""
    nvml.gpus[0].compute = [entry(os.getpid(), not_available)]
    probe = NvmlProbe()
    values = collect(probe)
    assert math.isnan(values["gpu0.process_memory"])
    assert "NVML_VALUE_NOT_AVAILABLE" in probe.collector.problem  # type: ignore[attr-defined]


@pytest.fixture
def thread_reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh background reader that runs in a thread of this process (so it sees the fake)."""
    from multimeter import _reader

    monkeypatch.setenv("MULTIMETER_READER", "thread")
    readers = _reader._readers()
    monkeypatch.setattr(readers, "current", None)
    yield
    current = _reader.current()
    if current is not None:
        current.close()


def test_through_the_reader_figures_reach_points_and_failures_the_log(
    nvml: FakeNvml, thread_reader: None, logs: list[dict[str, Any]]
) -> None:
    """Run by the reader: the figures are in the points, a failing one is missing and logged."""
    probe = NvmlProbe(interval=0.01)
    nvml.gpus[1].fail = {"power": UNKNOWN}
    meter = Multimeter(probe, cycle_time=0.01)
    with meter.measure() as result:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not any(e.get("probe") == "NvmlProbe" for e in logs):
            time.sleep(0.01)
    assert 123.456 in list(result.values("gpu0.power"))
    assert {None} == set(result.values("gpu1.power"))
    assert 40.0 in list(result.values("gpu1.utilization"))
    failed = [e for e in logs if "error" in e and e.get("probe") == "NvmlProbe"]
    assert ["gpu1.power: FakeNVMLError: NVML error 999"] == [e["error"] for e in failed]


def test_the_collector_pickles_with_the_pid_of_the_process_that_sends_it(nvml: FakeNvml) -> None:
    """The reader gets the measured pid (fixed when pickled: a forked child measures itself)."""
    probe = NvmlProbe()
    collect(probe)  # opened: holds the fake module and handles, which must not travel
    copy = pickle.loads(pickle.dumps(probe.collector))
    assert os.getpid() == copy.pid
    assert probe.collector.fields == copy.fields
    assert copy._nvml is None


def test_the_collector_stops_nvml_when_closed(nvml: FakeNvml) -> None:
    """open() starts NVML, close() stops it (the probe's first local reading uses both)."""
    probe = NvmlProbe()
    collector: Any = probe.collector
    collector.open()
    assert 1 == nvml.running
    collector.close()
    assert 0 == nvml.running


def test_nvml_is_a_probe_name(nvml: FakeNvml) -> None:
    """configure(probes=['nvml']) and MULTIMETER_PROBES=nvml make an NvmlProbe."""
    from multimeter import _config

    assert isinstance(_config.PROBES["nvml"](), NvmlProbe)


def test_metrics_are_documented() -> None:
    """The GPU metrics are public, with units."""
    units = {
        metric.GPU_UTILIZATION: "%",
        metric.GPU_MEMORY_BUSY: "%",
        metric.GPU_MEMORY_USED: "B",
        metric.GPU_MEMORY_TOTAL: "B",
        metric.GPU_POWER: "W",
        metric.GPU_TEMPERATURE: "°C",
        metric.GPU_PROCESS_MEMORY: "B",
        metric.GPU_TREE_MEMORY: "B",
    }
    assert units == {m: m.unit for m in units}
    assert all(m.description for m in units)


# -- on a machine with an NVIDIA GPU ----------------------------------------------------


def _real_probe_error() -> Exception | None:
    """Why ``NvmlProbe()`` cannot be made here with the real pynvml, or None."""
    try:
        NvmlProbe()
    except RuntimeError as error:
        return error
    return None


@pytest.fixture
def gpu_probe() -> NvmlProbe:
    """A real NvmlProbe, or the test is skipped with the reason."""
    try:
        return NvmlProbe()
    except RuntimeError as error:
        pytest.skip(f"no NVIDIA GPU here: {error}")


def _nvidia_smi() -> list[tuple[float, str]]:
    """(memory.total in MiB, name) per GPU, as nvidia-smi reports them."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        pytest.skip("nvidia-smi is not installed")
    out = subprocess.run(
        [smi, "--query-gpu=memory.total,name", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    rows = [line.split(",", 1) for line in out.strip().splitlines()]
    return [(float(total), name.strip()) for total, name in rows]


def test_gpu_figures_agree_with_nvidia_smi(gpu_probe: NvmlProbe) -> None:
    """The GPU count, names and memory.total match nvidia-smi's."""
    smi = _nvidia_smi()
    assert len(smi) == len(gpu_probe.devices)
    assert [name for _, name in smi] == list(gpu_probe.names)
    values = collect(gpu_probe)
    for index, (total_mib, _) in zip(gpu_probe.devices, smi, strict=True):
        total = values.get(f"gpu{index}.device_memory_total")
        if total is not None:
            assert total_mib == pytest.approx(total / MiB, abs=1.0)
    gpu_probe.collector.close()  # type: ignore[attr-defined]


def test_a_measurement_on_a_real_gpu_gives_sensible_figures(gpu_probe: NvmlProbe) -> None:
    """Through the reader, a measurement's points hold figures within their ranges."""
    meter = Multimeter(gpu_probe, cycle_time=0.2)
    with meter.measure() as result:
        _gpu_workload(1.5)
    assert len(result.points) >= 3
    keys = {m.key for m in gpu_probe.measures}
    checks = {
        "utilization": (0.0, 100.0),
        "memory_busy": (0.0, 100.0),
        "temperature": (0.0, 120.0),
        "power": (1e-3, 5000.0),
        "device_memory_total": (1.0, 1e14),
    }
    seen = 0
    for index in gpu_probe.devices:
        for name, (low, high) in checks.items():
            key = f"gpu{index}.{name}"
            if key in keys:
                values = [v for v in result.values(key) if v is not None]
                assert values, f"{key} has no value in any point"
                assert all(low <= v <= high for v in values), (key, values)
                seen += 1
        used = list(result.values(f"gpu{index}.device_memory_used"))
        total = list(result.values(f"gpu{index}.device_memory_total"))
        for u, t in zip(used, total, strict=True):
            if u is not None and t is not None:
                assert 0 <= u <= t
    assert seen


def test_memory_held_on_a_real_gpu_shows(gpu_probe: NvmlProbe) -> None:
    """Device memory this process allocates (CUDA driver API) raises device_memory_used and,
    where NVML lists this process, process_memory."""
    from tests._cuda import CudaBuffer, CudaError

    size = 512 * MiB
    before = collect(gpu_probe)
    try:
        buffer = CudaBuffer(size)
    except CudaError as error:
        pytest.skip(f"no CUDA driver API to allocate with: {error}")
    with buffer:
        time.sleep(0.1)
        during = collect(gpu_probe)
    gpu_probe.collector.close()  # type: ignore[attr-defined]

    def total(values: dict[str, float], name: str) -> float:
        return sum(v for k, v in values.items() if k.endswith(f".{name}") and v == v)

    grown = total(during, "device_memory_used") - total(before, "device_memory_used")
    assert grown >= 0.9 * size
    own = [v for k, v in during.items() if k.endswith(".process_memory")]
    if own and all(math.isnan(v) for v in own):
        pytest.skip(f"NVML lists no process of this pid namespace: {gpu_probe.collector.problem}")  # type: ignore[attr-defined]
    if own and not any(v > 0 for v in own):
        pytest.skip("NVML lists no process for this pid (a container's pid namespace?)")
    assert total(during, "process_memory") >= size
    assert total(during, "tree_memory") >= total(during, "process_memory")


def _gpu_workload(seconds: float) -> None:
    """Keep a GPU busy with the CUDA driver API where it can be loaded; else just wait."""
    from tests._cuda import CudaBuffer, CudaError

    try:
        with CudaBuffer(256 * MiB) as buffer:
            buffer.busy(seconds)
    except CudaError:
        time.sleep(seconds)
