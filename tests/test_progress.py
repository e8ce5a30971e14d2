"""Progress a person can follow: training lines, the run log, the terminal, a quiet kernel."""

from __future__ import annotations

import re
from types import SimpleNamespace

import nbformat
import papermill as pm
import pytest

from cqa_utils.method import train as T
from cqa_utils.method.config import get_profile
from cqa_utils.pipeline.run import KERNEL_ARGS, RunLog

LINE = re.compile(r"^epoch (\d+)/(\d+) step (\d+)/(\d+) loss (\d+\.\d{3}) elapsed (\d+s|\d+m\d\ds) eta (\d+s|\d+m\d\ds)$")


def _rows(n: int) -> list[dict]:
    return [{"id": f"r{i}", "instruction": "Judge the scene.", "input": f"Scene {i}.", "output": f"Option B ({i})."}
            for i in range(n)]


def test_smoke_training_prints_a_line_per_epoch(tmp_path, smoke):
    from cqa_utils.method.models import load_model

    prof = get_profile("smoke").with_overrides(num_train_epochs=3)
    msgs: list[str] = []
    T.train(prof, load_model(prof), smoke[1], _rows(8)[:6], _rows(8)[6:], tmp_path / "ck", progress=msgs.append, every_s=1e9)
    steps = [LINE.match(m) for m in msgs if m.startswith("epoch") and " step " in m]
    assert all(steps) and [(m[1], m[2], m[3], m[4]) for m in steps] == [("1", "3", "3", "9"), ("2", "3", "6", "9"), ("3", "3", "9", "9")]
    assert steps[-1][7] == "0s"  # nothing left at the end
    saved = [m for m in msgs if " saved " in m]
    assert [m.split(":")[0] for m in saved] == [f"epoch {e}/3 saved checkpoint-{3 * e}" for e in (1, 2, 3)]
    assert all(re.search(r"eval_loss \d+\.\d{3}, epoch took", m) for m in saved)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _state(step: int, epoch: float, max_steps: int = 20):
    return SimpleNamespace(global_step=step, epoch=epoch, max_steps=max_steps)


def test_lines_every_30_seconds_within_an_epoch_and_eta():
    clock, msgs = FakeClock(), []
    cb = T.TrainProgress(msgs.append, every_s=30, clock=clock)
    args = SimpleNamespace(num_train_epochs=2)
    cb.on_train_begin(args, _state(0, 0.0), None)
    cb.on_epoch_begin(args, _state(0, 0.0), None)
    for step in range(1, 5):  # 10 s per step: a line only once 30 s have passed
        clock.t += 10
        cb.on_log(args, _state(step, step / 10), None, logs={"loss": float(step)})
    assert msgs == ["epoch 1/2 step 3/20 loss 2.000 elapsed 30s eta 2m50s"]  # 30 s for 3 steps, 17 to go: 170 s
    clock.t += 5
    cb.on_epoch_end(args, _state(4, 0.4), None)  # the epoch's end always prints
    assert msgs[-1] == "epoch 1/2 step 4/20 loss 2.500 elapsed 45s eta 3m00s"  # 45 s for 4 steps, 16 to go
    cb.on_log(args, _state(4, 0.4), None, logs={"eval_loss": 1.23456})
    cb.on_save(args, _state(4, 0.4), None)
    assert msgs[-1] == "epoch 1/2 saved checkpoint-4: eval_loss 1.235, epoch took 45s"


def test_resumed_run_counts_from_the_resumed_step():
    clock, msgs = FakeClock(), []
    cb = T.TrainProgress(msgs.append, clock=clock)
    args = SimpleNamespace(num_train_epochs=12)
    cb.on_train_begin(args, _state(470, 10.0, 564), None)
    cb.on_epoch_begin(args, _state(470, 10.0, 564), None)
    clock.t += 47
    cb.on_epoch_end(args, _state(517, 11.0, 564), None)
    assert msgs == ["epoch 11/12 step 517/564 loss n/a elapsed 47s eta 47s"]


def test_run_log_keeps_every_line_and_shows_progress_lines(tmp_path):
    shown: list[str] = []
    log = RunLog(tmp_path / "run.log", shown.append)
    log.line("[03_train] start")
    out = log.stream()
    out.write("[03_train   12.0s] epoch 1/12 step 47/564 loss 2.100 ")  # a line may arrive in pieces
    out.write("elapsed 12s eta 2m12s\n   epoch  train_loss\n0      1  2.1\n[03_tr")
    assert shown == ["[03_train] start", "[03_train   12.0s] epoch 1/12 step 47/564 loss 2.100 elapsed 12s eta 2m12s"]
    out.write("ain   13.0s] epoch 1 saved")
    out.close()
    log.stream("stderr: ").write("a library warning\n")
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d  ", ln) for ln in lines)
    assert [ln[21:] for ln in lines] == ["[03_train] start", shown[1], "   epoch  train_loss", "0      1  2.1",
                                         "[03_train   13.0s] epoch 1 saved", "stderr: a library warning"]
    assert shown[-1] == "[03_train   13.0s] epoch 1 saved"
    RunLog(tmp_path / "run.log", shown.append).line("second run")  # appended, not replaced
    assert len((tmp_path / "run.log").read_text().splitlines()) == len(lines) + 1


@pytest.mark.parametrize("quiet", [True, False])
def test_kernel_tcp_warning_is_silenced(tmp_path, capfd, quiet):
    """The kernel writes the warning to its own stderr, which the terminal shows; KERNEL_ARGS silences it."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('[01_data    0.1s] hello', flush=True)")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    shown: list[str] = []
    out = RunLog(tmp_path / "run.log", shown.append).stream()
    pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
                        stdout_file=out, **({"extra_arguments": KERNEL_ARGS} if quiet else {}))
    err = capfd.readouterr().err
    assert shown == ["[01_data    0.1s] hello"]  # the notebook's print reached the terminal while it ran
    assert ("running over TCP without encryption" in err) is not quiet
