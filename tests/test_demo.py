"""The ``demo`` command: a preset's grown recipe against its one-level counterpart, each stopped at a target."""

import copy
import json

import keras
import pytest

import keras_multilevel as kml
import keras_multilevel.cli as cli
from keras_multilevel import zoo
from keras_multilevel.cli.surrogate import grown, one_level, table

GROWN = {
    "problem": "poisson",
    "resolution": 8,
    "architecture": {"filters": [4, 8], "pyramid": True, "log_input": True},
    "smoother": {"class_name": "Adam", "config": {
        "learning_rate": keras.saving.serialize_keras_object(keras.optimizers.schedules.CosineDecay(0.004, 8))}},
    "levels": 2,
    "coarsening": {"name": "pyramid"},
    "schedule": [2],
    "epochs": 4,
    "batch_size": 8,
    "seed": 0,
    "dataset_seed": 0,
    "samples": 40,
    "why": "a test",
}


def test_the_one_level_counterpart_keeps_the_network_and_stretches_the_decay():
    single = one_level(GROWN, 6)
    assert single["levels"] == 1 and single["epochs"] == 6 and "schedule" not in single and "coarsening" not in single
    assert single["architecture"] == GROWN["architecture"] and single["seed"] == GROWN["seed"]
    decay = single["smoother"]["config"]["learning_rate"]["config"]
    assert decay["decay_steps"] == 6 * 4 and decay["initial_learning_rate"] == 0.004  # 32 training examples, batches of 8
    assert GROWN["smoother"]["config"]["learning_rate"]["config"]["decay_steps"] == 8  # the preset's recipe untouched
    assert one_level(dict(GROWN, smoother={"class_name": "SGD", "config": {"learning_rate": 0.1}}), 3)["smoother"] == {
        "class_name": "SGD", "config": {"learning_rate": 0.1}}


@pytest.mark.slow
def test_demo_trains_both_to_the_target_and_compares_them(tmp_path, capsys):
    pytest.importorskip("keras_multilevel.pde.fem")
    presets, data = tmp_path / "presets", tmp_path / "data"
    zoo.create(copy.deepcopy(GROWN), presets, data_dir=data, progress=False)
    name = zoo.names(presets)[0]
    arguments = ["demo", "--preset", name, "--presets", str(presets), "--data-dir", str(data), "--epochs", "3"]
    assert cli.main([*arguments, "--target", "100", "--out", str(tmp_path / "easy")]) == 0
    table = (tmp_path / "easy" / "table.md").read_text()
    assert "| 0 | grown from its coarsest grid (2 levels) | 2 | 1 |" in table and "| 0 | one level | 1 | 1 |" in table
    assert "sooner than one level in wall-clock seconds" in table and (tmp_path / "easy" / "convergence.png").stat().st_size
    runs = json.loads((tmp_path / "easy" / "runs.json").read_text())
    assert list(runs) == ["0"] and [run["recipe"]["levels"] for run in runs["0"].values()] == [2, 1]
    assert [run["recipe"].get("learning_rate_divisor") for run in runs["0"].values()] == [[2.0, 1], None]
    assert all(len(run["record"]["epochs"]) == 1 for run in runs["0"].values())
    assert cli.main([*arguments, "--target", "1e-9", "--out", str(tmp_path / "hard")]) == 0
    table = (tmp_path / "hard" / "table.md").read_text()
    assert "| 0 | grown from its coarsest grid (2 levels) | 2 | 4 |" in table and "| 0 | one level | 1 | 3 |" in table
    assert "not both runs reached 1e-09" in table and "| no |" in table
    capsys.readouterr()


def test_the_grown_run_divides_only_its_finest_grids_rate_and_one_level_keeps_the_recipes_rate():
    halved = grown(GROWN, 2.0)
    assert halved["learning_rate_divisor"] == [2.0, 1] and "learning_rate_divisor" not in GROWN
    assert grown(GROWN, 1) is GROWN
    assert "learning_rate_divisor" not in one_level(halved, 6) and one_level(halved, 6) == one_level(GROWN, 6)
    with pytest.raises(ValueError, match=r"already sets learning_rate_divisor=\[2.0, 1\]: give --finest-rate-divisor 1"):
        grown(halved, 2.0)
    optimizer = kml.MultilevelOptimizer(**{key: halved[key] for key in ("levels", "coarsening", "schedule",
                                                                          "learning_rate_divisor")},
                                        smoother=keras.optimizers.Adam(0.004))
    assert [float(optimizer.level_optimizer(i).learning_rate) for i in (0, 1)] == pytest.approx([0.002, 0.004])


def _record(epochs, wall, cpu, work, error):
    return {"epochs": [{"epoch": epochs, "training_wall_time_s": wall, "training_cpu_time_s": cpu, "work_units": work,
                        "val_relative_l2": error}]}


def test_the_table_gives_each_seeds_speed_ups_and_their_median_over_seeds():
    single = one_level(GROWN, 6)
    runs = {
        seed: {"grown": (GROWN, _record(3, wall, 10.0, 50.0, 0.01)), "one level": (single, _record(5, 30.0, 20.0, 100.0, error))}
        for seed, wall, error in ((0, 10.0, 0.015), (1, 20.0, 0.019), (2, 15.0, 0.02), (3, 5.0, 0.5))
    }
    lines = table(runs, 0.02)
    assert "| 1 | grown | 2 | 3 | 50 | 10.0 | 20.0 | 0.0100 | yes |" in lines
    assert "| 3 | one level | 1 | 5 | 100 | 20.0 | 30.0 | 0.5000 | no |" in lines
    assert "- seed 0: grown reached 0.02 3.00x sooner than one level in wall-clock seconds (2.00x in CPU seconds, " \
           "2.00x in work units)." in lines
    assert "- seed 3: not both runs reached 0.02: no speed-up to report (raise --epochs or the target)." in lines
    assert lines[-1] == ("Over the 3 seeds where both reached 0.02 (median [min-max]): 2.00x [1.50-3.00] sooner in "
                         "wall-clock seconds, 2.00x [2.00-2.00] in CPU seconds, 2.00x [2.00-2.00] in work units.")


def test_demo_refuses_a_preset_trained_on_one_level_and_a_bad_target(tmp_path, capsys):
    zoo.save_preset(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(1, 1)]), tmp_path / "poisson_unet_n8",
                    dict(GROWN, levels=1, architecture={"filters": [4]}), {"wall_time_s": 0.0, "work_units": 0.0, "epochs": []},
                    {split: {"l2": 0.5, "relative_l2": 0.5, "relative_l2_std": 0.1, "linf": 1.0, "examples": 4}
                     for split in ("validation", "test")})
    assert cli.main(["demo", "--preset", "poisson_unet_n8", "--presets", str(tmp_path)]) == 2
    assert "was not trained coarse to fine" in capsys.readouterr().err
    for seeds in (["0", "0"], ["-1"]):
        assert cli.main(["demo", "--seeds", *seeds, "--out", str(tmp_path / "not made")]) == 2
        assert "--seeds must be distinct integers >= 0" in capsys.readouterr().err
    assert not (tmp_path / "not made").exists()
    for bad, message in ((["--target", "0"], "--target: must be positive"),
                         (["--steps-per-execution", "0"], "--steps-per-execution: must be a positive integer")):
        with pytest.raises(SystemExit):
            cli.main(["demo", *bad])
        assert message in capsys.readouterr().err
