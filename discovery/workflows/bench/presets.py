"""What ``discovery bench`` measures: environment cases, population cases, and the named presets."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EnvCase:
    """One environment benchmarked as limit / ours / brax at the given settings.

    ``overrides`` are applied on top of ``configs/train/<env>.yaml`` (PPO fields
    and, for Brax, ``backend`` / ``episode_length`` / ``action_repeat``).
    ``progress`` also times ``ours`` with the progress callback switched on.
    """

    env: str
    overrides: dict
    brax: bool = True
    progress: bool = False


@dataclasses.dataclass(frozen=True)
class PopulationCase:
    """``P`` learners vmapped vs sequential for each ``P`` in ``sizes``, and one meta-generation of ``meta_size``.

    ``sequential_cap``: time at most this many sequential runs per repetition
    and scale to ``P`` (reported as ``extrapolated_from``); ``None`` runs all ``P``.
    """

    env: str
    overrides: dict
    sizes: tuple[int, ...]
    meta_size: int
    sigma: float = 0.04
    sequential_cap: int | None = None


@dataclasses.dataclass(frozen=True)
class CoresCase:
    """One device vs every device: ``train`` with ``seeds`` seeds, and one meta-generation of ``meta_size`` members.

    Both run in one process through the code the commands run (``compile_learners``
    and ``meta.evaluate_population``), once on a mesh of the first device and
    once on a mesh of all of them.
    """

    env: str
    overrides: dict
    seeds: int = 8
    meta_size: int = 32
    meta_overrides: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    description: str
    cases: tuple[EnvCase, ...]
    populations: tuple[PopulationCase, ...]
    cores: tuple[CoresCase, ...] = ()
    repeats: int = 3
    brax_eval_envs: int = 0  # 0: Brax's evaluator off (run_evals=False)
    measured: str = ""  # where/whether this preset's numbers have been taken


_CARTPOLE_CASE = dict(total_timesteps=4 * 128 * 200)  # 200 updates of purejaxrl's 4 envs × 128 steps
_CARTPOLE_POPULATION = dict(total_timesteps=4 * 128 * 32)  # 32 updates per member
_SMOKE = dict(
    total_timesteps=4 * 32, num_steps=32, update_epochs=1, num_minibatches=2, actor_hidden=[16], critic_hidden=[16]
)

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        description="tiny budgets for the test suite: CartPole limit/ours (+progress), a population of 2",
        # One update of one-layer networks: every part (limit, learner, ours, ours_progress, single, vmapped,
        # meta-generation) compiles once, and compiling is nearly all of the smoke run's time.
        cases=(EnvCase("CartPole-v1", dict(_SMOKE), brax=False, progress=True),),
        populations=(PopulationCase("CartPole-v1", dict(_SMOKE), sizes=(2,), meta_size=2),),
        cores=(
            CoresCase(
                "CartPole-v1",
                dict(total_timesteps=4 * 32 * 2, num_steps=32, update_epochs=1, num_minibatches=2),
                seeds=2,
                meta_size=2,
            ),
        ),
        repeats=3,
        measured="CPU, every test run",
    ),
    "cpu": Preset(
        name="cpu",
        description="CartPole-v1, inverted_pendulum and hopper (positional) at small budgets; CartPole populations "
        "of 1, 8, 32",
        cases=(
            EnvCase("CartPole-v1", dict(_CARTPOLE_CASE), brax=False, progress=True),
            EnvCase(
                "inverted_pendulum",
                dict(
                    backend="positional",
                    num_envs=128,
                    num_steps=5,
                    rollouts_per_update=4,
                    num_minibatches=8,
                    total_timesteps=128 * 5 * 4 * 8,
                ),
            ),
            EnvCase(
                "hopper",
                dict(
                    backend="positional",
                    num_envs=128,
                    num_steps=10,
                    rollouts_per_update=1,
                    num_minibatches=4,
                    total_timesteps=128 * 10 * 8,
                ),
            ),
        ),
        populations=(PopulationCase("CartPole-v1", dict(_CARTPOLE_POPULATION), sizes=(1, 8, 32), meta_size=32),),
        # `train --seeds 8` at CartPole's own settings (100 updates), and a generation of the demo's meta-training
        # tasks.
        cores=(
            CoresCase(
                "CartPole-v1",
                dict(total_timesteps=4 * 128 * 100),
                seeds=8,
                meta_size=32,
                meta_overrides=dict(
                    total_timesteps=8192,
                    num_envs=8,
                    num_steps=64,
                    num_minibatches=4,
                    update_epochs=16,
                    learning_rate=1e-3,
                ),
            ),
        ),
        repeats=5,  # a shared 2-core host is noisy; 5 paired rounds still finish in about 7 minutes
        measured="2-core CPU (docs/PERFORMANCE.md)",
    ),
    "gpu": Preset(
        name="gpu",
        description="ant, halfcheetah, humanoid (positional) at 2,048 envs with the published layouts; CartPole and "
        "Breakout-MinAtar populations of 64-256",
        cases=(
            # The published layouts: the accelerator profile, whatever the machine.
            EnvCase("ant", dict(profile="accelerator", backend="positional", total_timesteps=2048 * 5 * 16 * 10)),
            EnvCase(
                "halfcheetah", dict(profile="accelerator", backend="positional", total_timesteps=2048 * 20 * 8 * 5)
            ),
            EnvCase("humanoid", dict(profile="accelerator", backend="positional", total_timesteps=2048 * 10 * 16 * 5)),
        ),
        populations=(
            PopulationCase(
                "CartPole-v1", dict(total_timesteps=4 * 128 * 50), sizes=(1, 64, 256), meta_size=256, sequential_cap=16
            ),
            PopulationCase(
                "Breakout-MinAtar", dict(total_timesteps=64 * 128 * 10), sizes=(1, 64), meta_size=64, sequential_cap=8
            ),
        ),
        cores=(CoresCase("CartPole-v1", dict(total_timesteps=4 * 128 * 100), seeds=64, meta_size=256),),
        repeats=3,
        brax_eval_envs=128,
        measured="not yet measured (no GPU was lent to the session that wrote it)",
    ),
}
