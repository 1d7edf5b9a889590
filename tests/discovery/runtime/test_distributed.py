"""Several processes on one machine (jax.distributed over gloo on 127.0.0.1), and the CPU device count.

Each multi-process test starts real `discovery` processes, bounded in time, and
stops them itself.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from discovery.cli import main
from discovery.runtime import devices, distributed
from discovery.runtime.errors import UserError

TINY = {
    "drift": "lpo",
    "drift_options": {"ppo_init": True, "hidden_size": 16},
    "tasks": [
        {
            "env": "CartPole-v1",
            "overrides": {
                "total_timesteps": 1024,
                "num_envs": 4,
                "num_steps": 32,
                "num_minibatches": 2,
                "update_epochs": 4,
                "learning_rate": 3.0e-3,
            },
        }
    ],
    "es": {"algorithm": "Open_ES", "population_size": 4, "sigma": 0.1, "learning_rate": 0.05},
    "generations": 2,
    "seeds": 2,
    "checkpoint_every": 1,
}
LIMIT_S = 420


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(args: list[str], port: int, index: int, count: int = 2, extra_env: dict | None = None) -> subprocess.Popen:
    env = {
        **os.environ,
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": str(count),
        "JAX_PROCESS_ID": str(index),
        "DISCOVERY_CPU_DEVICES": "1",
        "JAX_PLATFORMS": "cpu",
        **(extra_env or {}),
    }
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "discovery.cli", *args, "--distributed"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(processes: list[subprocess.Popen], limit: float = LIMIT_S) -> list[tuple[int, str]]:
    deadline = time.monotonic() + limit
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((process.returncode, output))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def _config(tmp_path: Path, **changes) -> Path:
    path = tmp_path / f"tiny{len(list(tmp_path.glob('tiny*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def _arrays(path: Path) -> dict:
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


# Two real processes each compiling the whole run: `make test-all` (2 minutes on 2 cores).
@pytest.mark.slow
def test_two_processes_give_the_one_process_drift_and_only_process_0_writes(tmp_path):
    config = _config(tmp_path)
    assert main(["meta-train", "--config", str(config), "--out", str(tmp_path / "one")]) == 0
    port = _free_port()
    outs = [tmp_path / "two", tmp_path / "two_process1"]
    results = _finish(
        [
            _launch(["meta-train", "--config", str(config), "--out", str(out)], port, index)
            for index, out in enumerate(outs)
        ]
    )
    assert [code for code, _ in results] == [0, 0], results
    assert "2 devices in 2 processes" in results[0][1]
    assert not outs[1].exists()  # process 1 wrote nothing to its --out
    one, two = _arrays(tmp_path / "one" / "drift.npz"), _arrays(outs[0] / "drift.npz")
    assert one.keys() == two.keys()
    for name in one:
        assert np.array_equal(one[name], two[name]), name

    # --resume of a multi-process run: process 1 gets the run from process 0 (no shared directory needed).
    port = _free_port()
    resumed = _finish(
        [
            _launch(["meta-train", "--resume", str(outs[0]), "--generations", "3"], port, 0),
            _launch(["meta-train", "--resume", str(tmp_path / "nowhere"), "--generations", "3"], port, 1),
        ]
    )
    assert [code for code, _ in resumed] == [0, 0], resumed
    assert "resuming" in resumed[0][1] and "from generation 2" in resumed[0][1]
    lines = (outs[0] / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_processes_with_different_configs_stop_with_one_line(tmp_path):
    port = _free_port()
    results = _finish(
        [
            _launch(
                ["meta-train", "--config", str(_config(tmp_path, seed=seed)), "--out", str(tmp_path / f"o{seed}")],
                port,
                index,
            )
            for index, seed in enumerate((0, 1))
        ],
        limit=180,
    )
    for code, output in results:
        assert code == 2, output
        assert "disagree on the meta-training config" in output
        assert "Traceback" not in output
    assert not (tmp_path / "o0" / "drift.npz").exists()


def test_an_unreachable_coordinator_is_one_line_after_a_bounded_wait(tmp_path):
    started = time.monotonic()
    process = _launch(
        ["train", "--env", "CartPole-v1", "--out", str(tmp_path / "t"), "--distributed-timeout", "5"], _free_port(), 1
    )
    [(code, output)] = _finish([process], limit=120)
    assert code == 2, output
    assert time.monotonic() - started < 100
    lines = [line for line in output.splitlines() if line.strip() and "Gloo" not in line]
    assert any("could not join the coordinator at 127.0.0.1:" in line and "within 5 s" in line for line in lines), (
        output
    )
    assert "Traceback" not in output and not (tmp_path / "t").exists()


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_cpu_device_count_is_refused(value, capsys, monkeypatch):
    monkeypatch.setenv(devices.ENV_VAR, value)
    assert main(["train", "--env", "CartPole-v1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "DISCOVERY_CPU_DEVICES must be a positive integer" in err[0]


def test_host_device_count_defaults_to_the_usable_cores(monkeypatch):
    monkeypatch.setattr(devices, "usable_cores", lambda: 6)
    monkeypatch.delitem(sys.modules, "jax")  # as before jax is imported; restored by monkeypatch
    environ = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_cpu_foo=1"}
    assert devices.configure_host_devices(environ) == 6
    assert environ["XLA_FLAGS"] == "--xla_cpu_foo=1 --xla_force_host_platform_device_count=6"
    # The user's own count wins; DISCOVERY_CPU_DEVICES overrides it; other platforms are left alone.
    user = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=3"}
    assert devices.configure_host_devices(user) is None and user["XLA_FLAGS"].endswith("=3")
    asked = {**user, devices.ENV_VAR: "1"}
    assert (
        devices.configure_host_devices(asked) == 1 and asked["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"
    )
    assert devices.configure_host_devices({"JAX_PLATFORMS": "cuda"}) is None
    with pytest.raises(UserError):
        devices.requested_devices({devices.ENV_VAR: "0"})


def test_a_waiting_distributed_join_names_the_missing_process():
    import socket

    with socket.socket() as server:  # a coordinator that is up
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert "start process 1" in distributed._missing_processes(f"127.0.0.1:{port}", 3, 2)
    assert "process 0 (the coordinator" in distributed._missing_processes(f"127.0.0.1:{port}", 2, 1)  # now closed
    assert "processes 1, 2 did not join" in distributed._missing_processes("127.0.0.1:1", 3, 0)
