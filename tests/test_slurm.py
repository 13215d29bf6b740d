"""The tiny workflow through profiles/slurm on a real single-node SLURM cluster.

tests/slurm/cluster.sh installs slurm-wlm and munge with apt-get, starts the daemons on
localhost and stops them again; see tests/slurm/README.md to do the same by hand.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import pytest

from tests.workflow_helpers import REPO, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
# The test cluster keeps no accounting database, so job states come from squeue; and its
# jobs are short, so the first status check comes early. Real clusters need neither.
TEST_CLUSTER_OPTIONS = (
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "5",
    "--slurm-no-account",
    "--latency-wait", "10",
)  # fmt: skip
# One language and one detector: every stage of detection, from the model to the
# figures, at the fewest jobs (each SLURM job starts Snakemake and torch anew).
LANGUAGE = "ja"
TARGETS = [f"reports/figures/tiny/centroid/{figure}.png" for figure in ("layer_distribution", "score_profile")]
# sbatch options: a model rule gets the tiny config's resources (model_mem_mb 1000,
# model_runtime_min 10) and its runtime.threads (2), and the partition profiles/slurm/partitions.yaml
# picks for a job without a GPU.
MODEL_RULE_REQUEST = {"--mem": "1000", "-t": "10", "--cpus-per-task": "2", "-p": "cpu"}
# The targets' jobs that are batch jobs; prepare_corpus and figure_detection are localrules.
BATCH_RULES = {"prepare_model", "dump_pivot_activations", "dump_activations", "centroids", "score_neurons"}
SBATCH_OPTIONS_WITH_VALUE = ("--mem", "-t", "--comment", "--job-name", "--output", "-p", "-A", "-D")


def cluster(command: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), command], capture_output=True, text=True, timeout=timeout)


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        pytest.fail(f"{shlex.join(result.args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def slurm_cluster(request):
    """A running single-node cluster; stopped afterwards if this fixture started it."""
    if shutil.which("apt-get") is None:
        pytest.skip("the test cluster needs apt-get (Debian or Ubuntu) to install slurm-wlm and munge")
    checked(cluster("install", timeout=900))
    if cluster("status").returncode != 0:
        # Registered before starting, so that even a half-started cluster is stopped.
        request.addfinalizer(lambda: checked(cluster("stop")))
    checked(cluster("start"))


def one_language_config(workdir: Path) -> dict:
    config = tiny_config(workdir)
    config["languages"] = [LANGUAGE]
    config["corpus"]["sources"] = {LANGUAGE: config["corpus"]["sources"][LANGUAGE]}
    return config


def output_files(workdir: Path) -> dict[str, Path]:
    """Every file the targets produced, by path relative to the working directory."""
    roots = [workdir / "results", workdir / "reports", workdir / "resources" / "models"]
    return {
        str(path.relative_to(workdir)): path
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and path.name != ".snakemake_timestamp"
    }


def comparable(path: Path) -> bytes | dict:
    if path.name == "manifest.json":
        return {key: value for key, value in json.loads(path.read_text()).items() if key != "location"}
    return path.read_bytes()


def sbatch_options(call: str) -> dict[str, str]:
    """Options of one sbatch command line: ``--opt value``, ``--opt=value`` and flags."""
    options = {}
    words = shlex.split(call)
    for word, following in pairwise([*words, ""]):
        if word in SBATCH_OPTIONS_WITH_VALUE:
            options[word] = following
        elif word.startswith("-"):
            key, _, value = word.partition("=")
            options.setdefault(key, value)
    return options


def sbatch_calls(log_text: str) -> list[dict[str, str]]:
    """The options of every sbatch call (the plugin logs the calls with --verbose)."""
    return [sbatch_options(call) for call in re.findall(r"sbatch call: (sbatch .+)$", log_text, flags=re.MULTILINE)]


def sbatch_requests(log_text: str) -> dict[str, dict[str, str]]:
    """Rule -> the options of its sbatch call."""
    return {
        re.match(r"rule_(\w+?)_wildcards", options["--comment"]).group(1): options for options in sbatch_calls(log_text)
    }


def test_slurm_run_matches_local_run(slurm_cluster, tmp_path):
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    for workdir in (local_dir, slurm_dir):
        workdir.mkdir()
        write_config(workdir, one_language_config(workdir))
    # The local run overlaps with the SLURM run, which mostly waits between status checks.
    with ThreadPoolExecutor(max_workers=1) as pool:
        local_run = pool.submit(snakemake, local_dir, *TARGETS)
        slurm_run = snakemake(slurm_dir, "--profile", str(PROFILE), *TEST_CLUSTER_OPTIONS, "--verbose", *TARGETS)
        local_run.result()

    local, on_slurm = output_files(local_dir), output_files(slurm_dir)
    assert set(on_slurm) == set(local)
    assert all(str(Path(target)) in on_slurm for target in TARGETS)
    for name, path in on_slurm.items():
        assert comparable(path) == comparable(local[name]), f"{name} differs from the local run"

    log_text = slurm_run.stdout + slurm_run.stderr
    calls, requests = sbatch_calls(log_text), sbatch_requests(log_text)
    print(f"batch jobs submitted: {len(calls)} ({', '.join(sorted(requests))})")  # the test's log
    assert set(requests) == BATCH_RULES and len(calls) == len(BATCH_RULES)
    assert re.search(r"^localrule figure_detection:$", log_text, flags=re.MULTILINE)
    assert all("--gpus" not in options for options in requests.values())  # the config asks for no GPU
    assert all(options["-p"] == "cpu" for options in requests.values())  # chosen from partitions.yaml
    assert MODEL_RULE_REQUEST.items() <= requests["dump_activations"].items()
