"""Fault injection for the PDE data sets (issue 13): kills, signals, damaged files, concurrent runs.

Each test asserts what survives: after any fault, the next run ends with the
same verified records, byte for byte, as a run that saw no fault, and leaves
no debris (temporary shards, worker logs, half-written TFDS folders).
"""

import contextlib
import gc
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_multilevel import datasets
from keras_multilevel.pde import builders, files, generation, integrity, locks, shards

BIN = pathlib.Path(sys.executable).parent
RESOLUTION, SAMPLES = 24, 2000  # slow enough (a few seconds) to be interrupted part-way


def _command(root, *extra, resolution=RESOLUTION, samples=SAMPLES):
    return [str(BIN / "keras-multilevel"), "datasets", "generate", "poisson", "--resolution", str(resolution),
            "--samples", str(samples), "--data-dir", str(root), "--quiet", *extra]


def _folder(root, resolution=RESOLUTION, samples=SAMPLES):
    return builders.version_folder("poisson", builders.config("poisson", resolution, samples), root)


def _raw(root, resolution=RESOLUTION):
    return generation.raw_directory(root, "poisson", resolution, 0)


def _wait_for(condition, what, process=None, seconds=180):
    deadline = time.time() + seconds
    while not condition():
        assert process is None or process.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _files(folder):
    return {path.name: path.read_bytes() for path in sorted(pathlib.Path(folder).iterdir())}


def _debris(root):
    """Files and folders that only an interrupted run leaves behind."""
    root = pathlib.Path(root)
    return sorted(str(path.relative_to(root)) for pattern in (".worker-*", f".*{shards.TEMPORARY}-*", "incomplete.*",
                                                              ".*.canonical")
                  for path in root.rglob(pattern))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The version folder of an uninterrupted run (the records every faulty run must end with)."""
    root = tmp_path_factory.mktemp("reference")
    datasets.prepare("poisson", RESOLUTION, SAMPLES, data_dir=root, workers=2, progress=False)
    return _files(_folder(root))


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["generation", "records"])
def test_a_kill_at_a_random_point_loses_nothing_and_the_rerun_cleans_up(tmp_path, reference, phase):
    """SIGKILL while shards are generated (2 workers) or while the TFDS records are written, then rerun."""
    root, delay = tmp_path / "data", random.uniform(0.0, 0.3)
    if phase == "records":  # the shards exist: the run only writes records
        generation.generate("poisson", RESOLUTION, SAMPLES, root=root, workers=2, progress=False)
    process = subprocess.Popen(_command(root, "--workers", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if phase == "generation":
        _wait_for(lambda: any(_raw(root).glob("*" + shards.SUFFIX)), "a first shard", process)
    else:
        _wait_for(lambda: any(_folder(root).parent.glob("incomplete.*")), "TFDS' incomplete folder", process)
    time.sleep(delay)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL, f"the run ended before the kill ({delay:.3f} s after {phase} began)"
    if phase == "generation":
        assert generation.saved_examples(_raw(root), SAMPLES) < SAMPLES, "killed part-way"

    rerun = subprocess.run(_command(root, "--workers", "2"), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
    assert _files(_folder(root)) == reference, f"killed {delay:.3f} s into the {phase}"
    assert _debris(root) == []


def test_an_interrupt_lost_in_a_garbage_collector_callback_is_raised_again_and_not_printed(monkeypatch):
    """Python swallows (and prints) an exception raised in a gc callback, where JAX's lands a signal at times."""
    from keras_multilevel.pde import cli as datasets_cli

    printed = []  # what Python's hook for lost exceptions would print
    monkeypatch.setattr(sys, "unraisablehook", printed.append)

    def callback(phase, info):
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)  # its handler runs here, inside the callback

    with pytest.raises(datasets_cli.Interrupted):
        with datasets_cli._signals_raise():
            gc.callbacks.append(callback)
            try:
                gc.collect()
            finally:
                gc.callbacks.remove(callback)
            time.sleep(5)  # the timer raises it again
    assert printed == []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_prints_one_line_and_exits_128_plus_the_signal(tmp_path, signum):
    """Ctrl-C (SIGINT to the whole process group, workers included) or SIGTERM to the command."""
    root = tmp_path / "data"
    process = subprocess.Popen(_command(root, "--workers", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    _wait_for(lambda: any(_raw(root).glob("*" + shards.SUFFIX)), "a first shard", process)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    lines = stderr.strip().splitlines()
    kept = generation.saved_examples(_raw(root), SAMPLES)
    assert lines == [f"keras-multilevel datasets: interrupted by {signal.Signals(signum).name}: {kept} of {SAMPLES} "
                     f"examples are saved in {_raw(root)}; run the same command again to resume"]
    assert 0 < kept < SAMPLES and _debris(root) == []


def _worker_pids(pid):
    children = pathlib.Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc")
def test_an_orphaned_worker_ends_silently_and_its_log_is_removed_by_the_next_run(tmp_path):
    root = tmp_path / "data"
    process = subprocess.Popen(_command(root, "--workers", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: any(_raw(root).glob("*" + shards.SUFFIX)), "a first shard", process)
    workers = _worker_pids(process.pid)
    assert len(workers) == 1
    process.kill()
    process.communicate()
    _wait_for(lambda: not pathlib.Path(f"/proc/{workers[0]}").exists()
              or "Z" in pathlib.Path(f"/proc/{workers[0]}/stat").read_text().split()[2], "the orphan to end", seconds=60)
    (log,) = _raw(root).glob(".worker-*")
    assert log.read_text() == ""  # no PETSc banner, no traceback
    generation.generate("poisson", RESOLUTION, 200, root=root, progress=False)
    assert not list(_raw(root).glob(".worker-*"))


@contextlib.contextmanager
def _held_by_another_process(folder):
    """Holds the lock of the data set in ``folder`` from another process while the block runs; yields that process."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from keras_multilevel.pde import locks\n"
         f"with locks.holding({str(folder)!r}):\n    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_second_run_is_refused_while_the_first_holds_the_data_set(tmp_path, capsys):
    from keras_multilevel.cli import main

    root = tmp_path / "data"
    folder = _folder(root, 6, 30)
    with _held_by_another_process(folder.parent) as holder:
        assert main(["datasets", "generate", "poisson", "--resolution", "6", "--samples", "30", "--data-dir",
                     str(root), "--quiet"]) == 75
        error = capsys.readouterr().err
        assert f"another run (host {os.uname().nodename}, pid {holder.pid}) is writing the data set in" in error
        assert "wait until it ends, or stop it, then run this again" in error
        with pytest.raises(locks.Busy, match=f"pid {holder.pid}"):
            datasets.load("poisson", 6, data_dir=root, samples=30)
    assert main(["datasets", "generate", "poisson", "--resolution", "6", "--samples", "30", "--data-dir", str(root),
                 "--quiet"]) == 0  # the kernel dropped the killed holder's lock


BUSY_COMMANDS = {  # every command that may write a data set: (its arguments, the data set it writes)
    "datasets show": (["datasets", "show", "poisson", "--resolution", "6", "--samples", "30"], (6, 30, 0)),
    "datasets generate": (["datasets", "generate", "poisson", "--resolution", "6", "--samples", "30", "--quiet"],
                          (6, 30, 0)),
    "zoo evaluate": (["zoo", "evaluate", "poisson_unet_n16", "--samples", "30"], (16, 30, 777)),
}


@pytest.mark.parametrize("command", sorted(BUSY_COMMANDS))
def test_every_command_meeting_a_held_data_set_says_one_line_and_exits_75(tmp_path, capsys, command):
    """Not a traceback ending in ``locks.Busy`` (``datasets show`` and ``zoo evaluate`` gave one, exit 1)."""
    from keras_multilevel.cli import main

    arguments, (resolution, samples, seed) = BUSY_COMMANDS[command]
    root = tmp_path / "data"
    folder = builders.version_folder("poisson", builders.config("poisson", resolution, samples, seed), root)
    with _held_by_another_process(folder.parent) as holder:
        assert main([*arguments, "--data-dir", str(root), *(["--png", str(tmp_path / "x.png")] if "show" in command
                                                             else [])]) == 75
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error, error
    assert error.startswith(f"keras-multilevel {command.split()[0]}: error: another run (host ")
    assert f"pid {holder.pid}) is writing the data set in {folder.parent}: wait until it ends" in error


@pytest.mark.slow
def test_two_concurrent_runs_one_writes_the_other_waits_its_turn_or_is_refused(tmp_path, reference):
    root = tmp_path / "data"
    runs = [subprocess.Popen(_command(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(run.wait(timeout=300), run.communicate()[1]) for run in runs]
    for code, stderr in results:
        assert code in (0, 75) and "Traceback" not in stderr, stderr[-3000:]
        assert code == 0 or "another run (host" in stderr
    assert 0 in [code for code, _ in results]
    assert _files(_folder(root)) == reference


DAMAGE = {
    "truncated train records": ("poisson-train.tfrecord-00000-of-00001", lambda data: data[: len(data) // 2]),
    "a bit flipped in the test records": (
        "poisson-test.tfrecord-00000-of-00001", lambda data: data[:-9] + bytes([data[-9] ^ 1]) + data[-8:]),
    "a removed validation record file": ("poisson-validation.tfrecord-00000-of-00001", None),
    "garbage dataset_info.json": ("dataset_info.json", lambda data: b"{not json"),
    "dataset_info.json without its splits": ("dataset_info.json", lambda data: data.replace(b'"splits"', b'"x"')),
    "truncated features.json": ("features.json", lambda data: data[:20]),
    "no manifest": (integrity.MANIFEST, None),
    "a garbled manifest": (integrity.MANIFEST, lambda data: data[:-30]),
}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A prepared N = 6, 30-example data set: its root and its version folder's files."""
    root = tmp_path_factory.mktemp("small")
    datasets.prepare("poisson", 6, 30, data_dir=root, progress=False)
    return root, _files(_folder(root, 6, 30))


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_records_are_found_on_load_and_rewritten(tmp_path, capsys, small, damage):
    source, original = small
    root = tmp_path / "data"
    shutil.copytree(source, root)
    name, change = DAMAGE[damage]
    path = _folder(root, 6, 30) / name
    if change is None:
        path.unlink()
    else:
        path.write_bytes(change(path.read_bytes()))
    if damage.startswith("truncated train"):  # and the shards gone: the rewrite must regenerate them
        shutil.rmtree(root / "raw")
    assert integrity.check(_folder(root, 6, 30)) is not None
    examples = list(datasets.load("poisson", 6, "train", root, samples=30, batch_size=None))
    assert len(examples) == 24
    assert "; rewriting the records" in capsys.readouterr().err
    assert _files(_folder(root, 6, 30)) == original


def test_the_command_repairs_damaged_records_and_leaves_complete_ones_alone(tmp_path, capsys, small):
    from keras_multilevel.cli import main

    source, original = small
    root = tmp_path / "data"
    shutil.copytree(source, root)
    command = ["datasets", "generate", "poisson", "--resolution", "6", "--samples", "30", "--data-dir", str(root),
               "--quiet"]
    shutil.rmtree(root / "raw")  # allowed once the records exist (item 6): nothing is regenerated
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "0 samples generated (30 kept: the TFDS records are complete and verified)" in out
    assert f"sha256 of its checksums: {integrity.digest(_folder(root, 6, 30))}" in out
    assert not (root / "raw").exists()
    record = _folder(root, 6, 30) / "poisson-test.tfrecord-00000-of-00001"
    record.write_bytes(record.read_bytes()[:-3])
    assert main(command) == 0
    captured = capsys.readouterr()
    assert "does not match its checksum (truncated or altered); rewriting the records" in captured.err
    assert "30 samples generated" in captured.out
    assert _files(_folder(root, 6, 30)) == original


@pytest.mark.slow
def test_records_are_byte_reproducible_whatever_the_process_and_workers(tmp_path, small):
    """Two runs, in other processes and with other worker counts, write the same bytes (item 7)."""
    _, original = small
    result = subprocess.run(_command(tmp_path, "--workers", "2", resolution=6, samples=30), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _files(_folder(tmp_path, 6, 30)) == original
    record = next(iter(datasets.load("poisson", 6, "test", tmp_path, samples=30, batch_size=None)))
    assert np.all(np.isfinite(record[1].numpy()))


def test_tfds_own_download_and_prepare_locks_and_seals_too(tmp_path, small):
    import tensorflow_datasets as tfds

    _, original = small
    builder = tfds.builder("poisson/n6_s30_seed0", data_dir=tmp_path)
    builder.progress = False
    builder.download_and_prepare()
    assert integrity.check(_folder(tmp_path, 6, 30)) is None
    assert _files(_folder(tmp_path, 6, 30)) == original


# -- files planted by another user in a shared data folder (issue 25 item 1) ------------------------------------

VICTIM = "chapter 1: the thesis nobody backed up\n"


def _hold(folder):
    with locks.holding(folder):
        pass


def _write_shard(folder):
    shards.write(folder / shards.name(0, 2), np.zeros(2, dtype=[("index", "i8")]))


def _manifest(folder):
    integrity.seal(folder, {})


PLANTED = {  # what the library writes: (the path another user can predict, the call that writes it)
    "the lock": (lambda folder: folder / locks.LOCK_NAME, _hold),
    "the write probe": (lambda folder: folder / f".write-test-{os.getpid()}", generation.check_out),
    "a temporary shard": (lambda folder: folder / shards.owned_name(f".{shards.name(0, 2)}{shards.TEMPORARY}"),
                          _write_shard),
    "the temporary manifest": (lambda folder: folder / f".{integrity.MANIFEST}.tmp", _manifest),
}


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_a_symbolic_link_planted_where_a_run_writes_is_refused_and_its_target_left_alone(tmp_path, planted):
    """``.lock -> ~/thesis.tex``: the run stops with one clear error and the victim's file is unchanged."""
    path, write = PLANTED[planted]
    victim, folder = tmp_path / "thesis.tex", tmp_path / "shared"
    victim.write_text(VICTIM)
    folder.mkdir()
    path(folder).symlink_to(victim)
    with pytest.raises((files.UnsafeFile, ValueError), match="is a symbolic link: refusing to write through it"):
        write(folder)
    assert victim.read_text() == VICTIM
    assert path(folder).is_symlink()  # not ours to remove


def test_a_lock_that_is_not_a_regular_file_of_this_user_is_refused(tmp_path):
    folder = tmp_path / "shared"
    (folder / locks.LOCK_NAME).mkdir(parents=True)
    with pytest.raises(files.UnsafeFile, match="is a folder, not a regular file"):
        _hold(folder)
    if os.geteuid() == 0:  # only root can give a file away
        other = tmp_path / "other"
        other.mkdir()
        (other / locks.LOCK_NAME).write_text(VICTIM)
        os.chown(other / locks.LOCK_NAME, 4242, -1)
        with pytest.raises(files.UnsafeFile, match=r"belongs to another user \(uid 4242"):
            _hold(other)
        assert (other / locks.LOCK_NAME).read_text() == VICTIM


def test_the_command_refuses_a_planted_lock_in_one_line(tmp_path, capsys):
    from keras_multilevel.cli import main

    victim, root = tmp_path / "thesis.tex", tmp_path / "data"
    victim.write_text(VICTIM)
    lock = _folder(root, 6, 30).parent / locks.LOCK_NAME
    lock.parent.mkdir(parents=True)
    lock.symlink_to(victim)
    assert main(["datasets", "generate", "poisson", "--resolution", "6", "--samples", "30", "--data-dir", str(root),
                 "--quiet"]) == 1
    error = capsys.readouterr().err
    assert error == (f"keras-multilevel datasets: error: {lock} is a symbolic link: refusing to write through it "
                     f"(another user who can write to {lock.parent} may have planted it); remove it if it is yours "
                     "to remove, or use a folder only you can write to\n")
    assert victim.read_text() == VICTIM
