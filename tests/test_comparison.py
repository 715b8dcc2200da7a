"""The circles comparison behind the Table 1 benchmark (`keras-multilevel bench circles`), and its CLI."""

import numpy as np
import pytest

import keras_multilevel.cli as cli
from keras_multilevel.cli import circles


@pytest.fixture(scope="module")
def small_data():
    return circles.circles_data(train=200, validation=100)


@pytest.mark.slow
def test_a_run_records_one_entry_per_cycle_and_stops_on_budget(small_data):
    run = circles.train_circles(3, small_data, blocks=16, budget=20.0, target_accuracy=1.0)
    assert run.steps == "[(1),1,{2}]"
    assert run.cycle_work_units == pytest.approx(2 + 3 / 2 + 2 / 4)
    np.testing.assert_allclose(np.diff(run.work_units), run.cycle_work_units)
    assert run.work_units[-1] >= 20.0 > run.work_units[-2]
    assert len(run.loss) == len(run.val_accuracy) == len(run.seconds) == run.cycles
    assert np.all(np.diff(run.seconds) > 0)
    # The time a user waits: the first cycle's tracing is in it.
    assert run.seconds[0] == pytest.approx(run.seconds_per_cycle + run.trace_seconds)
    np.testing.assert_allclose(run.seconds, np.cumsum(run.durations))


def test_a_run_stops_at_the_target_accuracy(small_data):
    run = circles.train_circles(1, small_data, blocks=4, budget=50.0, target_accuracy=0.01)
    assert run.cycles == 1 and run.first_reaching(0.01) == 0


@pytest.mark.slow
def test_table_and_plot(tmp_path, small_data):
    runs = [circles.train_circles(levels, small_data, blocks=8, budget=6.0) for levels in (1, 2)]
    text = circles.table(runs, target_accuracy=1.0)
    lines = text.strip().splitlines()
    assert len(lines) == 8 and lines[4].startswith("| 1 | `[{1}]` |") and lines[5].startswith("| 2 | `[(1),{2}]` |")
    best = max(runs[0].val_accuracy)
    assert f"validation accuracy a = {best:.3f} (the target 1 was not reached" in lines[0]
    assert f"training loss l = {runs[0].loss[-1]:.4f}" in lines[0]
    cells = [cell.strip() for cell in lines[4].split("|")]
    assert cells[6] == cells[7] == cells[9] == cells[10] == "1.00"  # the baseline against itself
    assert lines[7].startswith("One-time tracing")
    circles.plot(runs, tmp_path / "plot.png", "test")
    assert (tmp_path / "plot.png").stat().st_size > 1000


@pytest.mark.slow
def test_bench_circles_command_writes_table_and_plot(tmp_path, capsys):
    code = cli.main(["bench", "circles", "--blocks", "8", "--levels", "1,2", "--budget", "4", "--out", str(tmp_path)])
    assert code == 0
    assert "| 2 | `[(1),{2}]` |" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "convergence.png").exists()
    assert (tmp_path / "decision_boundary.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "circles", "--levels", "0,2"],
        ["bench", "circles", "--levels", "one"],
        ["bench", "circles", "--blocks", "0"],
        ["bench", "circles", "--budget", "-1"],
        ["demo", "--epochs", "0"],
        ["bench", "nothing"],
    ],
)
def test_bad_command_line_arguments(argv, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    assert error.value.code == 2
    assert "error" in capsys.readouterr().err
