"""A run killed mid-way resumes with --rerun-incomplete and keeps every output it had finished."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.workflow_helpers import (
    TINY_LANGUAGES,
    planned_outputs,
    snakemake,
    snakemake_command,
    snakemake_environment,
    tiny_config,
    write_config,
)

pytestmark = pytest.mark.workflow

# Both languages' training dumps: they run one after the other (each takes both cores),
# so when the first has finished the second is under way and the kill interrupts it.
TARGETS = [f"results/tiny/activations/{lang}/train" for lang in TINY_LANGUAGES]
STARTUP_TIMEOUT_S = 300

JOB_BLOCK = re.compile(r"^(?:local)?rule (\w+):\n(.*?)^\s+jobid: (\d+)$", flags=re.MULTILINE | re.DOTALL)
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$", flags=re.MULTILINE)


@contextmanager
def detached_snakemake(workdir: Path, log: Path, *arguments: str) -> Iterator[subprocess.Popen]:
    """Snakemake as in workflow_helpers.snakemake, but in its own process group, so that a
    signal to the group reaches Snakemake and every job it started. Killed on exit."""
    with log.open("w") as stream:
        process = subprocess.Popen(
            snakemake_command(workdir, *arguments),
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=snakemake_environment(),
            cwd=workdir,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    with suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def job_outputs(log_text: str) -> dict[str, list[str]]:
    """Job id -> output paths, from the job blocks Snakemake logs when a job starts."""
    outputs = {}
    for _rule, block, jobid in JOB_BLOCK.findall(log_text):
        found = re.search(r"^\s+output: (.+)$", block, flags=re.MULTILINE)
        outputs[jobid] = found.group(1).split(", ") if found else []
    return outputs


def finished_outputs(log_text: str) -> list[str]:
    outputs = job_outputs(log_text)
    return [path for jobid, _rule in FINISHED.findall(log_text) for path in outputs[jobid]]


def started_after_first_dump(log_text: str) -> bool:
    """The first dump has finished and a later job has been started (and is running)."""
    first = re.search(r"^Finished jobid: \d+ \(Rule: dump_activations\)$", log_text, flags=re.MULTILINE)
    return bool(first and JOB_BLOCK.search(log_text, first.end()))


def read_log(log: Path) -> str:
    # The log is read while Snakemake writes it, possibly mid-way through a multibyte character.
    return log.read_text(encoding="utf-8", errors="replace")


def wait_for(condition, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not condition(read_log(log)):
        if process.poll() is not None:
            pytest.fail(f"snakemake exited ({process.returncode}) before it could be killed:\n{read_log(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no dump finished within {STARTUP_TIMEOUT_S} s:\n{read_log(log)}")
        time.sleep(0.2)


def modification_times(workdir: Path, outputs: list[str]) -> dict[str, int]:
    """mtime of every file of the outputs (directory outputs: every file inside)."""
    times = {}
    for output in outputs:
        path = workdir / output
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                times[str(file.relative_to(workdir))] = file.stat().st_mtime_ns
    return times


def test_killed_run_resumes_and_keeps_finished_outputs(tmp_path):
    write_config(tmp_path, tiny_config(tmp_path))
    log = tmp_path / "killed_run.log"
    with detached_snakemake(tmp_path, log, *TARGETS) as process:
        wait_for(started_after_first_dump, process, log)
        time.sleep(0.5)  # give the job that just started time to be marked incomplete
        kill_group(process)

    log_text = read_log(log)
    finished = finished_outputs(log_text)
    assert any("/activations/" in path for path in finished)
    before = modification_times(tmp_path, finished)
    assert before, "the finished jobs left no files"
    assert list((tmp_path / ".snakemake" / "incomplete").iterdir()), "the kill interrupted no job"

    # SIGKILL leaves Snakemake's lock behind; --unlock removes only the lock.
    snakemake(tmp_path, "--unlock")
    snakemake(tmp_path, "--rerun-incomplete", *TARGETS)

    assert modification_times(tmp_path, finished) == before
    assert all((tmp_path / target / ".snakemake_timestamp").is_file() for target in TARGETS)
    assert planned_outputs(tmp_path, *TARGETS) == []


# Files of the run itself, not of its results: the report's provenance (date, commit, machine).
RUN_SPECIFIC = {"reports/provenance.json"}
COMPARED_ROOTS = ("results", "reports")


def compared_files(workdir: Path) -> dict[str, Path]:
    """Every output file under results/ and reports/, by path relative to the run directory."""
    return {
        str(path.relative_to(workdir)): path
        for root in COMPARED_ROOTS
        for path in sorted((workdir / root).rglob("*"))
        if path.is_file() and path.name != ".snakemake_timestamp" and str(path.relative_to(workdir)) not in RUN_SPECIFIC
    }


def differing_files(first: Path, second: Path) -> list[str]:
    """Each file that only one run has, or whose bytes differ between the runs, named."""
    ours, theirs = compared_files(first), compared_files(second)
    found = [f"only in the first run: {name}" for name in sorted(set(ours) - set(theirs))]
    found += [f"only in the second run: {name}" for name in sorted(set(theirs) - set(ours))]
    found += [
        f"differs: {name}"
        for name in sorted(set(ours) & set(theirs))
        if ours[name].read_bytes() != theirs[name].read_bytes()
    ]
    return found


def test_differing_files_names_what_differs(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for run, text in ((first, "a"), (second, "b")):
        (run / "results").mkdir(parents=True)
        (run / "results" / "table.csv").write_text(text)
        (run / "reports").mkdir()
        (run / "reports" / "provenance.json").write_text(text)
    (second / "results" / "extra.csv").write_text("")
    assert differing_files(first, second) == ["only in the second run: results/extra.csv", "differs: results/table.csv"]


def test_killed_and_resumed_run_writes_the_bytes_of_an_uninterrupted_run(finished_run, tmp_path):
    # finished_run ran uninterrupted; this run of the same commit is killed while a job runs, unlocked
    # and resumed. Every output under results/ and reports/ must be byte for byte the same.
    write_config(tmp_path, tiny_config(tmp_path))
    log = tmp_path / "killed_run.log"
    with detached_snakemake(tmp_path, log, "all") as process:
        wait_for(started_after_first_dump, process, log)
        time.sleep(0.5)  # give the job that just started time to be marked incomplete
        kill_group(process)
    assert list((tmp_path / ".snakemake" / "incomplete").iterdir()), "the kill interrupted no job"

    snakemake(tmp_path, "--unlock")
    snakemake(tmp_path, "--rerun-incomplete", "all")

    assert compared_files(tmp_path), "the resumed run wrote nothing"
    differences = differing_files(finished_run, tmp_path)
    assert not differences, "\n".join(differences)
