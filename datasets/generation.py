"""Sharded, resumable, parallel generation of a PDE data set (Poisson or Darcy, Ponce et al., 2022, §8).

Examples ``0 .. samples-1`` are cut into shards of ``shard_size`` consecutive
indices (:mod:`.shards`). Shard ``k`` belongs to MPI rank ``k mod P``; within
a rank, the rank's worker processes take its shards one at a time from a
queue, each with its own solver (forms compiled once per process). Since
every example depends only on (seed, problem, N, index) (:mod:`.problems`),
the files are byte-identical whatever the ranks and workers. A run first checks the shards already on
disk: complete, verified ones are kept, missing ones are generated and
corrupt ones are reported and regenerated, so a killed run resumes where it
stopped with nothing lost or duplicated. A full disk (or quota) is a
:class:`DiskFull` saying how many shards are kept and to run again once
space is freed; the partial shard is removed.

Worker 0 is the calling process; the others are fresh ``python -m
keras_multilevel.pde.generation`` processes (never forks of a process
holding TensorFlow or MPI state) with single-threaded BLAS/OpenMP and the MPI
launcher's variables removed; under ``mpirun`` each rank runs its share with
``workers`` processes of its own, and rank 0 reports.

Layout: ``<root>/raw/<problem>/n<N>-seed<seed>/examples-<start>-<stop>.shard``.
"""

import collections
import dataclasses
import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from . import files, problems, shards

SHARD_SIZE = 100
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
WORKER_DISK_FULL = 74  # exit status of a worker whose disk is full (EX_IOERR)
WORKER_LOG = ".worker-"  # stderr of worker k: .worker-<k>.log-<host>-<pid of the run>
_MPI_ENVIRONMENT = ("PMI_", "PMIX_", "HYDRA_", "MPIR_", "OMPI_", "MPI_LOCALRANKID", "MPI_LOCALNRANKS")


class DiskFull(RuntimeError):
    """The disk (or the quota) filled up during generation: the message says what is kept and how to resume."""


@dataclasses.dataclass
class Report:
    """What a call to :func:`generate` did (counts over all ranks)."""

    directory: pathlib.Path
    samples: int
    generated: int  # examples computed by this run
    kept: int  # examples found complete on disk
    regenerated_shards: list  # corrupt shards that were replaced
    seconds: float
    workers: int  # processes per rank, after capping at the CPUs this process may use

    @property
    def samples_per_second(self):
        return self.generated / self.seconds if self.seconds > 0 else float("nan")


def raw_directory(root, name, resolution, seed):
    """Folder of the shards of (problem, N, seed) under ``root``."""
    return pathlib.Path(root) / "raw" / name / f"n{resolution}-seed{seed}"


def plan(samples, shard_size=SHARD_SIZE):
    """The ``(start, stop)`` ranges of the shards of ``samples`` examples."""
    return [(start, min(start + shard_size, samples)) for start in range(0, samples, shard_size)]


def check_out(root, argument="root"):
    """Creates ``root`` if needed and checks that it can be written (a ValueError names ``argument``).

    The probe file is opened by :func:`.files.open_owned`: a symbolic link
    planted at its name is refused, not followed (the ValueError says so).
    """
    root = pathlib.Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        os.close(files.open_owned(probe))
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"`{argument}` must be a writable directory, got {str(root)!r} ({error.strerror or error})."
        ) from None
    return root


def validate(name, resolution, samples, seed, workers, shard_size=SHARD_SIZE):
    """Checks every argument of :func:`generate`, and that the run fits in memory; returns the problem.

    A run that would need more memory than the machine has available
    (:func:`memory_needed` against :func:`available_memory`, with ``workers``
    capped at :func:`usable_cpus` as :func:`generate` does) is a ValueError
    that says how much it needs and which resolution or worker count fits.
    """
    problem = problems.get(name)
    problems.check_resolution(resolution)
    problems.check_positive(samples, "samples")
    problems.check_seed(seed)
    problems.check_positive(workers, "workers")
    _check_memory(problem, resolution, samples, min(workers, usable_cpus()), shard_size)
    return problem


# The rest of generation.memory_needed's model (the N² term is Problem.solver_bytes_per_cell):
PROCESS_BYTES = 256 * 2**20  # Python, NumPy and DOLFINx in a worker (peak RSS 111 MB before a solver)
TENSORFLOW_BYTES = 768 * 2**20  # the calling process also holds TensorFlow and writes the records (640 MB)
SHARD_COPIES = 3  # a shard's examples, its .npy serialization and the checksummed file contents


def memory_needed(problem, resolution, samples, workers, shard_size=SHARD_SIZE):
    """Estimated peak memory in bytes of generating ``samples`` examples of ``problem`` at N on ``workers`` processes.

    Each process holds one solver (``problem.solver_bytes_per_cell`` per
    cell of the N×N mesh, measured), ``SHARD_COPIES`` copies of the shard it
    is writing (up to ``shard_size`` examples) and the interpreter with
    DOLFINx (``PROCESS_BYTES``); the calling process holds TensorFlow on top
    (``TENSORFLOW_BYTES``). Python integers throughout: any N gives a number.
    """
    per_process = (
        PROCESS_BYTES
        + problem.solver_bytes_per_cell * resolution * resolution
        + SHARD_COPIES * min(shard_size, samples) * problem.record_bytes(resolution)
    )
    return TENSORFLOW_BYTES + workers * per_process


def available_memory():
    """Bytes of memory a new run can use: ``MemAvailable`` of /proc/meminfo on Linux, the physical memory elsewhere."""
    if sys.platform.startswith("linux"):
        with open("/proc/meminfo") as meminfo:
            return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def usable_cpus():
    """The number of CPUs this process may run on (its affinity mask where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _gigabytes(count):
    return f"{count / 1e9:.3g} GB"


def _check_memory(problem, resolution, samples, workers, shard_size):
    needed, available = memory_needed(problem, resolution, samples, workers, shard_size), available_memory()
    if needed <= available:
        return
    how = (f"the solver, {problem.solver_bytes_per_cell / 1e3:.3g} kB per cell of the N×N mesh, and the shard being "
           f"written, in each of {workers} worker(s), plus TensorFlow")
    per_worker = memory_needed(problem, resolution, samples, 1, shard_size) - TENSORFLOW_BYTES
    if workers > 1 and TENSORFLOW_BYTES + per_worker <= available:
        raise ValueError(
            f"`workers` {workers} would need about {_gigabytes(needed)} of memory for {problem.name} at N = "
            f"{resolution} ({how}), but {_gigabytes(available)} is available: use at most "
            f"{(available - TENSORFLOW_BYTES) // per_worker} workers."
        )
    low, high = 0, resolution  # bisection for the largest N that fits: memory_needed grows with N
    while low < high:
        middle = (low + high + 1) // 2
        if memory_needed(problem, middle, samples, 1, shard_size) <= available:
            low = middle
        else:
            high = middle - 1
    advice = (f"use a resolution of at most {low} on this machine" if low >= problems.MIN_RESOLUTION
              else "free memory first")
    raise ValueError(
        f"`resolution` {resolution} would need about {_gigabytes(needed)} of memory for {problem.name} ({how}), "
        f"but {_gigabytes(available)} is available: {advice}."
    )


def _mpi_world():
    """``(comm, rank, size)`` when launched by mpirun/mpiexec, else ``(None, 0, 1)``."""
    if not any(key in os.environ for key in ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")):
        return None, 0, 1
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return (comm, comm.rank, comm.size) if comm.size > 1 else (None, 0, 1)


def _todo(problem, directory, resolution, ranges):
    """The ranges among ``ranges`` whose shard is missing or corrupt (corrupt files are removed)."""
    dtype = problem.record_dtype(resolution)
    todo, corrupt = [], []
    for start, stop in ranges:
        path = directory / shards.name(start, stop)
        if not path.exists():
            todo.append((start, stop))
            continue
        try:
            shards.read(path, dtype, start, stop)
        except shards.CorruptShard as error:
            print(f"warning: {error}; regenerating it", file=sys.stderr)
            path.unlink()
            corrupt.append(shards.name(start, stop))
            todo.append((start, stop))
    return todo, corrupt


def _produce(problem, resolution, seed, directory, ranges, on_sample=None, on_shard=None):
    """Generates and writes the shards ``ranges`` (any iterable) in this process, one solver compiled once."""
    solver = None
    for start, stop in ranges:
        if solver is None:
            solver = problem.make_solver(resolution)
        records = np.empty(stop - start, dtype=problem.record_dtype(resolution))
        for index in range(start, stop):
            records[index - start] = problems.make_example(problem, solver, seed, index)
            if on_sample:
                on_sample()
        shards.write(directory / shards.name(start, stop), records)
        if on_shard:
            on_shard()


def _worker_environment():
    environment = {k: v for k, v in os.environ.items() if not k.startswith(_MPI_ENVIRONMENT)}
    environment.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return environment


def _produce_in_workers(problem, resolution, seed, directory, ranges, workers, on_sample):
    """Runs :func:`_produce` on ``workers`` processes that take the shards one at a time from one queue.

    Worker 0 is this process (its solver set-up overlaps the others'
    start-up); workers 1 .. W-1 are fresh processes, each sent its next shard
    on stdin when it reports the previous one done (so a slow starter simply
    takes fewer shards). Which worker makes a shard does not change its bytes.
    """
    queue, lock = collections.deque(ranges), threading.Lock()

    def take():
        with lock:
            return queue.popleft() if queue else None

    def assign(process):
        shard = take()
        try:
            if shard is None:
                process.stdin.close()
            else:
                process.stdin.write(f"{shard[0]} {shard[1]}\n")
                process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the worker died; _collect reports it

    processes, readers = [], []
    for worker in range(1, workers):
        if not queue:
            break
        errors = open(directory / shards.owned_name(f"{WORKER_LOG}{worker}.log"), "w+", opener=files.opener)
        process = subprocess.Popen(
            [sys.executable, "-m", f"{__package__}.generation"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=_worker_environment(),
            text=True,
        )
        job = {"name": problem.name, "resolution": resolution, "seed": seed, "directory": str(directory)}
        try:
            process.stdin.write(json.dumps(job) + "\n")
        except BrokenPipeError:
            pass  # died at start; assign() below and _collect() deal with it
        assign(process)

        def read(process=process):
            for line in process.stdout:
                kind, _, value = line.partition(" ")
                if kind == "progress":
                    on_sample(int(value))
                elif kind == "done\n":
                    assign(process)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        processes.append((process, errors))
        readers.append(reader)

    def own():
        while (shard := take()) is not None:
            yield shard

    try:
        _produce(problem, resolution, seed, directory, own(), on_sample)
    except BaseException:
        for process, _ in processes:
            process.kill()
        raise
    finally:
        failures = _collect(processes, readers)
        shards.remove_orphans(directory, f".*{shards.SUFFIX}{shards.TEMPORARY}")  # of workers killed mid-write
    if any(code == WORKER_DISK_FULL for code, _ in failures):
        raise OSError(errno.ENOSPC, "No space left on device (in a generation worker)")
    if failures:
        raise RuntimeError("a generation worker failed:\n" + "\n".join(log for _, log in failures))


def _collect(processes, readers):
    """Waits for the worker processes; returns ``(exit status, end of the error log)`` of those that failed."""
    failures = []
    for (process, errors), reader in zip(processes, readers):
        process.wait()
        reader.join()
        errors.seek(0)
        log = errors.read()
        errors.close()
        os.unlink(errors.name)
        if process.returncode != 0:
            failures.append((process.returncode, log[-2000:]))
    return failures


def generate(
    name, resolution, samples, seed=0, workers=1, root=".", shard_size=SHARD_SIZE, progress=True, use_mpi=True
):
    """Generates (or completes) examples ``0 .. samples-1`` of a problem; returns a :class:`Report`.

    Args:
        name: ``"poisson"`` (Ponce et al., 2022, §8.1) or ``"darcy"`` (Ponce et al., 2022, §8.2).
        resolution: N >= 4, the N×N mesh and grid.
        samples: number of examples, a positive integer.
        seed: non-negative integer; example i depends only on (seed, name, N, i).
        workers: worker processes on this machine (per MPI rank under mpirun);
            more than :func:`usable_cpus` are capped at it, with a warning.
        root: output folder (shards go to :func:`raw_directory`).
        progress: show a tqdm progress bar (rank 0 only).
        use_mpi: under mpirun, share the shards among the ranks (collective:
            every rank must call it); False generates everything here.

    Raises:
        DiskFull: the disk or quota filled up; the complete shards are kept
            and the same call resumes once space is freed.
    """
    problem = validate(name, resolution, samples, seed, workers, shard_size)
    if workers > usable_cpus():
        print(f"warning: {workers} workers asked for, but this process may run on {usable_cpus()} CPUs: "
              f"using {usable_cpus()}", file=sys.stderr)
        workers = usable_cpus()
    root = check_out(root)
    directory = raw_directory(root, name, resolution, seed)
    directory.mkdir(parents=True, exist_ok=True)
    comm, rank, size = _mpi_world() if use_mpi else (None, 0, 1)
    begin = time.perf_counter()
    shards.remove_orphans(directory, f".*{shards.SUFFIX}{shards.TEMPORARY}")  # killed writers' temporary files
    shards.remove_orphans(directory, f"{WORKER_LOG}*.log")  # the logs of killed runs' workers
    ranges = plan(samples, shard_size)
    mine = ranges[rank::size]
    todo, corrupt = _todo(problem, directory, resolution, mine)
    count = sum(stop - start for start, stop in todo)

    from tqdm import tqdm

    label = f"{name} N={resolution}" + (f" rank {rank}/{size}" if size > 1 else "")
    with tqdm(total=count, desc=label, unit="sample", disable=not progress or rank != 0 or count == 0) as bar:
        lock = threading.Lock()

        def on_sample(count=1):
            with lock:
                bar.update(count)

        try:
            if workers == 1 or len(todo) <= 1:
                _produce(problem, resolution, seed, directory, todo, on_sample)
            else:
                _produce_in_workers(problem, resolution, seed, directory, todo, workers, on_sample)
        except OSError as error:
            if error.errno not in DISK_FULL_ERRNOS:
                raise
            complete = [shard for shard in mine if (directory / shards.name(*shard)).exists()]
            raise DiskFull(
                f"the disk holding {directory} is full ({os.strerror(error.errno)}): {len(complete)} of {len(mine)} "
                f"shards ({sum(stop - start for start, stop in complete)} of {samples} examples) are complete and "
                "kept; free some space, then run the same command again to resume"
            ) from None
    if comm is not None:
        count = comm.allreduce(count)
        corrupt = sum(comm.allgather(corrupt), [])
        comm.Barrier()
    seconds = time.perf_counter() - begin
    return Report(directory, samples, count, samples - count, corrupt, seconds, workers)


def saved_examples(directory, samples, shard_size=SHARD_SIZE):
    """How many of examples ``0 .. samples-1`` are in shard files of ``directory`` (present, not verified)."""
    ranges = plan(samples, shard_size)
    return sum(stop - start for start, stop in ranges if (directory / shards.name(start, stop)).exists())


def read_examples(name, resolution, seed, samples, start, stop, root, shard_size=SHARD_SIZE):
    """Yields the verified records ``start <= index < stop`` of a ``samples``-example set, in index order."""
    problem = problems.get(name)
    directory = raw_directory(root, name, resolution, seed)
    dtype = problem.record_dtype(resolution)
    for first, last in plan(samples, shard_size):
        if last <= start or first >= stop:
            continue
        records = shards.read(directory / shards.name(first, last), dtype, first, last)
        yield from records[max(start - first, 0) : stop - first]


def _worker_main():
    """Entry of a worker process (protocol of :func:`_produce_in_workers`).

    stdin: a JSON job line, then one ``start stop`` line per shard to make,
    EOF when there is none left. stdout: ``progress <n>`` at most every 0.2 s
    (each line wakes a reader thread in the parent, which competes for the
    GIL with worker 0) and ``done`` after each shard is written. A worker
    ignores SIGINT (the parent, which gets it too, kills its workers) and
    exits silently once its parent is gone (its stdout pipe broken).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the parent stops the workers
    job = json.loads(sys.stdin.readline())
    problem = problems.get(job["name"])
    pending, last = 0, time.monotonic()

    def report(force=False):
        nonlocal pending, last
        if pending and (force or time.monotonic() - last > 0.2):
            sys.stdout.write(f"progress {pending}\n")
            sys.stdout.flush()
            pending, last = 0, time.monotonic()

    def on_sample():
        nonlocal pending
        pending += 1
        report()

    def on_shard():
        report(force=True)
        sys.stdout.write("done\n")
        sys.stdout.flush()

    def assigned():
        while line := sys.stdin.readline():
            start, stop = map(int, line.split())
            yield start, stop

    try:
        _produce(problem, job["resolution"], job["seed"], pathlib.Path(job["directory"]), assigned(), on_sample, on_shard)
    except BrokenPipeError:  # the parent is gone (killed): its shards are for the next run; end without a word
        os._exit(1)
    except OSError as error:  # a full disk: the parent says so, once, for every worker
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        os._exit(WORKER_DISK_FULL)


if __name__ == "__main__":
    _worker_main()
