"""Sharded generation: determinism over workers and MPI ranks, resume after a kill, corrupt shards, bad input."""

import errno
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from keras_multilevel.pde import generation, problems, shards

BIN = pathlib.Path(sys.executable).parent


def _files(directory):
    return {path.name: path.read_bytes() for path in sorted(pathlib.Path(directory).glob("*" + shards.SUFFIX))}


def _shard_directory(root, name, resolution, seed=0):
    return generation.raw_directory(root, name, resolution, seed)


@pytest.mark.parametrize("name", ["poisson", "darcy"])
def test_worker_count_does_not_change_a_single_bit(tmp_path, name):
    one = generation.generate(name, 8, 60, seed=7, workers=1, root=tmp_path / "one", shard_size=10, progress=False)
    two = generation.generate(name, 8, 60, seed=7, workers=2, root=tmp_path / "two", shard_size=10, progress=False)
    assert one.generated == two.generated == 60
    a, b = _files(one.directory), _files(two.directory)
    assert len(a) == 6 and a == b
    records = np.array(list(generation.read_examples(name, 8, 7, 60, 0, 60, tmp_path / "two", shard_size=10)))
    np.testing.assert_array_equal(records["index"], np.arange(60))
    # an example is a function of (seed, problem, N, index): recompute example 23 on its own
    problem = problems.get(name)
    alone = problems.make_example(problem, problem.make_solver(8), 7, 23)
    assert alone.tobytes() == records[23].tobytes()


def test_a_different_seed_gives_different_examples(tmp_path):
    a = generation.generate("poisson", 6, 5, seed=0, root=tmp_path, progress=False)
    b = generation.generate("poisson", 6, 5, seed=1, root=tmp_path, progress=False)
    ra = next(generation.read_examples("poisson", 6, 0, 5, 0, 5, tmp_path))
    rb = next(generation.read_examples("poisson", 6, 1, 5, 0, 5, tmp_path))
    assert a.directory != b.directory and not np.array_equal(ra["parameters"], rb["parameters"])


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_duplicating_examples(tmp_path):
    samples, shard_size = 3000, 10
    script = textwrap.dedent(
        f"""
        from keras_multilevel.pde import generation
        generation.generate("poisson", 16, {samples}, seed=3, root={str(tmp_path / "killed")!r},
                            shard_size={shard_size}, progress=False)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    directory = _shard_directory(tmp_path / "killed", "poisson", 16, 3)
    deadline = time.time() + 120
    while len(list(directory.glob("*" + shards.SUFFIX))) < 3 and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(list(directory.glob("*" + shards.SUFFIX)))
    assert 3 <= done_before < samples // shard_size, "the run must be killed part-way"

    report = generation.generate("poisson", 16, samples, seed=3, root=tmp_path / "killed", shard_size=shard_size,
                                 progress=False)
    assert report.kept >= done_before * shard_size and report.kept + report.generated == samples
    assert not list(directory.glob(".*.tmp-*")), "the killed writer's temporary file is cleaned up"
    reference = generation.generate("poisson", 16, samples, seed=3, root=tmp_path / "fresh", shard_size=shard_size,
                                    progress=False)
    assert _files(report.directory) == _files(reference.directory)
    examples = generation.read_examples("poisson", 16, 3, samples, 0, samples, tmp_path / "killed", shard_size)
    indices = np.array([record["index"] for record in examples])
    np.testing.assert_array_equal(indices, np.arange(samples))


def test_corrupt_and_missing_shards_are_detected_and_regenerated(tmp_path, capsys):
    first = generation.generate("darcy", 6, 50, root=tmp_path, shard_size=10, progress=False)
    original = _files(first.directory)
    names = sorted(original)
    flipped = first.directory / names[1]
    data = bytearray(flipped.read_bytes())
    data[-5] ^= 0x01
    flipped.write_bytes(bytes(data))
    truncated = first.directory / names[3]
    truncated.write_bytes(truncated.read_bytes()[:100])
    (first.directory / names[4]).unlink()
    with pytest.raises(shards.CorruptShard, match="checksum"):
        list(generation.read_examples("darcy", 6, 0, 50, 0, 50, tmp_path, shard_size=10))
    second = generation.generate("darcy", 6, 50, root=tmp_path, shard_size=10, progress=False)
    assert sorted(second.regenerated_shards) == [names[1], names[3]]
    assert second.generated == 30 and second.kept == 20
    assert _files(second.directory) == original
    assert "checksum mismatch" in capsys.readouterr().err


def test_a_failed_worker_is_reported_and_the_rerun_completes_the_set(tmp_path, monkeypatch):
    failing = tmp_path / "failing-python"
    failing.write_text("#!/bin/sh\necho 'worker crashed' >&2\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(failing))
    with pytest.raises(RuntimeError, match="a generation worker failed:\n.*worker crashed"):
        generation.generate("poisson", 6, 60, root=tmp_path / "run", shard_size=10, workers=2, progress=False)
    monkeypatch.undo()
    rerun = generation.generate("poisson", 6, 60, root=tmp_path / "run", shard_size=10, progress=False)
    assert rerun.generated >= 10 and rerun.kept + rerun.generated == 60
    fresh = generation.generate("poisson", 6, 60, root=tmp_path / "fresh", shard_size=10, progress=False)
    assert _files(rerun.directory) == _files(fresh.directory)


def test_a_shard_of_other_examples_is_not_accepted(tmp_path):
    report = generation.generate("poisson", 6, 20, root=tmp_path, shard_size=10, progress=False)
    a, b = sorted(report.directory.glob("*" + shards.SUFFIX))
    b.write_bytes(a.read_bytes())  # valid checksum, wrong indices
    with pytest.raises(shards.CorruptShard, match="not the examples 10..19"):
        shards.read(b, problems.get("poisson").record_dtype(6), 10, 20)


def _mpiexec():
    for name in ("mpiexec", "mpirun"):
        if (BIN / name).exists():
            return BIN / name
    pytest.fail(f"no mpiexec in {BIN}: the mpich wheel (a dolfinx-solver-real dependency) provides it")


@pytest.mark.slow
@pytest.mark.mpi
def test_two_mpi_ranks_produce_the_serial_data_set_byte_for_byte(tmp_path):
    """2 ranks, each with 2 worker processes (shards 0, 2, 4 on rank 0), against one serial process."""
    command = [str(_mpiexec()), "-n", "2", str(BIN / "keras-multilevel"), "datasets", "generate", "darcy",
               "--resolution", "6", "--samples", "450", "--seed", "5", "--workers", "2", "--data-dir", str(tmp_path / "mpi"),
               "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "450 samples generated" in result.stdout and "2 worker(s) x 2 rank(s)" in result.stdout
    serial = generation.generate("darcy", 6, 450, seed=5, root=tmp_path / "serial", progress=False)
    mpi = _files(_shard_directory(tmp_path / "mpi", "darcy", 6, 5))
    assert len(mpi) == 5 and mpi == _files(serial.directory)

    from keras_multilevel import datasets

    def examples(root):
        builder = datasets.prepare("darcy", 6, 450, 5, root, progress=False)
        return [e for split in ("train", "validation", "test") for e in builder.as_dataset(split=split).as_numpy_iterator()]

    for a, b in zip(examples(tmp_path / "mpi"), examples(tmp_path / "serial"), strict=True):
        for key in a:
            assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(name="heat"), r"`name` must be one of \['darcy', 'poisson'\], got 'heat'"),
        (dict(resolution=3), r"`resolution` must be an integer >= 4, got 3"),
        (dict(resolution=16.0), r"`resolution` must be an integer >= 4, got 16.0"),
        (dict(resolution="32"), r"`resolution` must be an integer >= 4, got '32'"),
        (dict(samples=0), r"`samples` must be a positive integer, got 0"),
        (dict(samples=-5), r"`samples` must be a positive integer, got -5"),
        (dict(workers=0), r"`workers` must be a positive integer, got 0"),
        (dict(seed=1.5), r"`seed` must be a non-negative integer, got 1.5"),
        (dict(seed="abc"), r"`seed` must be a non-negative integer, got 'abc'"),
        (dict(seed=-1), r"`seed` must be a non-negative integer, got -1"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(tmp_path, arguments, message):
    kwargs = dict(name="poisson", resolution=8, samples=10, seed=0, workers=1, root=tmp_path, progress=False)
    kwargs.update(arguments)
    with pytest.raises(ValueError, match=message):
        generation.generate(**kwargs)
    assert not (tmp_path / "raw").exists()


def test_an_unwritable_output_directory_is_a_clear_error_and_loses_nothing(tmp_path):
    report = generation.generate("poisson", 6, 10, root=tmp_path, progress=False)
    before = _files(report.directory)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(ValueError, match="`root` must be a writable directory"):
        generation.generate("poisson", 6, 10, root=blocked / "sub", progress=False)
    if os.geteuid() != 0:  # root can write anywhere
        read_only = tmp_path / "read-only"
        read_only.mkdir()
        read_only.chmod(0o500)
        with pytest.raises(ValueError, match="`root` must be a writable directory"):
            generation.generate("poisson", 6, 10, root=read_only, progress=False)
    assert _files(report.directory) == before


@pytest.mark.parametrize("resolution", [20_000, 10**12])
def test_a_resolution_too_large_for_memory_is_refused_up_front(tmp_path, capsys, resolution):
    """Issue 13, item 1: exit 2 with the memory the run needs and the largest N that fits, before any folder."""
    from keras_multilevel.cli import main

    out = tmp_path / "data"
    assert main(["datasets", "generate", "poisson", "--resolution", str(resolution), "--data-dir", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"`resolution` (--resolution) {resolution} would need about" in error
    assert "GB of memory" in error and "use a resolution of at most" in error
    assert not out.exists()
    with pytest.raises(ValueError, match="would need about"):
        generation.generate("darcy", resolution, 10, root=out, progress=False)
    assert not out.exists()


def test_too_many_workers_for_memory_is_refused_and_too_many_for_the_cpus_capped(tmp_path, capsys, monkeypatch):
    problem = problems.get("darcy")
    one = generation.memory_needed(problem, 8, 20, workers=1)
    monkeypatch.setattr(generation, "usable_cpus", lambda: 4)
    monkeypatch.setattr(generation, "available_memory", lambda: one + 1)
    with pytest.raises(ValueError, match=r"`workers` 3 would need about .* use at most 1 workers"):
        generation.validate("darcy", 8, 20, 0, workers=3)
    monkeypatch.undo()
    report = generation.generate("poisson", 6, 20, root=tmp_path, workers=1000, shard_size=10, progress=False)
    assert report.workers == generation.usable_cpus() and report.generated == 20
    assert (f"warning: 1000 workers asked for, but this process may run on {generation.usable_cpus()} CPUs"
            in capsys.readouterr().err)


MEASURE_PEAK = """
import sys
from keras_multilevel.pde import problems
def peak():  # VmHWM, not ru_maxrss, which a child inherits from the process that forked it
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
problem = problems.get(sys.argv[1])
before = peak()
problems.make_example(problem, problem.make_solver(int(sys.argv[2])), 0, 0)
print(before, peak())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("name", [pytest.param("poisson", marks=pytest.mark.slow), "darcy"])
def test_the_memory_model_bounds_a_measured_solver(name):
    """The estimate of memory_needed covers a real worker's peak RSS at N = 256, and its N² term is not idle."""
    resolution, problem = 256, problems.get(name)
    result = subprocess.run([sys.executable, "-c", MEASURE_PEAK, name, str(resolution)], capture_output=True,
                            text=True, timeout=120, check=True)
    before, peak = map(int, result.stdout.split())
    solver = problem.solver_bytes_per_cell * resolution**2
    assert peak <= generation.PROCESS_BYTES + solver
    assert peak - before >= 0.5 * solver


def _disk_full_after(monkeypatch, shards_written):
    """Makes the disk fill up while the shard after ``shards_written`` is written (fsync: file, then folder)."""
    calls, fsync = [], os.fsync

    def full(descriptor):
        calls.append(descriptor)
        if len(calls) > 2 * shards_written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(descriptor)

    monkeypatch.setattr(shards.os, "fsync", full)


KEPT = "2 of 6 shards (20 of 60 examples) are complete and kept; free some space, then run the same command again to resume"


def test_a_full_disk_is_one_clear_error_saying_what_is_kept_and_the_rerun_resumes(tmp_path, monkeypatch):
    """Not a 17-50 line traceback from deep in the shard writer (issue 25 item 7)."""
    _disk_full_after(monkeypatch, 2)
    with pytest.raises(generation.DiskFull) as error:
        generation.generate("poisson", 6, 60, root=tmp_path, shard_size=10, progress=False)
    directory = _shard_directory(tmp_path, "poisson", 6)
    assert str(error.value) == f"the disk holding {directory} is full (No space left on device): {KEPT}"
    assert sorted(path.name for path in directory.iterdir()) == [shards.name(0, 10), shards.name(10, 20)]  # no partial
    monkeypatch.undo()
    rerun = generation.generate("poisson", 6, 60, root=tmp_path, shard_size=10, progress=False)
    assert (rerun.kept, rerun.generated) == (20, 40)


def test_the_command_reports_a_full_disk_in_one_line_and_a_non_zero_status(tmp_path, monkeypatch, capsys):
    from keras_multilevel.cli import main

    _disk_full_after(monkeypatch, 1)  # shards of generation.SHARD_SIZE = 100 examples
    assert main(["datasets", "generate", "poisson", "--resolution", "6", "--samples", "300", "--data-dir",
                 str(tmp_path), "--quiet"]) == 74
    error = capsys.readouterr().err
    assert error.startswith("keras-multilevel datasets: error: the disk holding ") and error.count("\n") == 1
    assert error.endswith("1 of 3 shards (100 of 300 examples) are complete and kept; free some space, then run the "
                          "same command again to resume\n")
