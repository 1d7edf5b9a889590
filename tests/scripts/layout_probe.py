"""Run a small batch of learners and an ES population's fitness on however many devices XLA was given; save both.

Used by the layout tests: the same script at 1, 2, 4 and 8 forced CPU devices must write identical arrays.
"""

import sys

from discovery.runtime import devices

devices.configure_host_devices()

import jax  # noqa: E402  (after the host device count is set)
import numpy as np  # noqa: E402

import meta  # noqa: E402
from discovery.io.configs import load_train_spec  # noqa: E402
from discovery.io.drift_registry import resolve_drift  # noqa: E402
from discovery.runtime.learners import run_seeds  # noqa: E402
from discovery.workflows import meta_training as mt  # noqa: E402

TASK = {
    "total_timesteps": 1024,
    "num_envs": 4,
    "num_steps": 32,
    "num_minibatches": 2,
    "update_epochs": 8,
    "learning_rate": 3.0e-3,
}


def main(out_path: str) -> None:
    config = mt.meta_config_from_dict(
        {
            "drift": "lpo",
            "drift_options": {"ppo_init": True, "hidden_size": 16},
            "tasks": [{"env": "CartPole-v1", "overrides": TASK}],
            "es": {"algorithm": "Open_ES", "population_size": 16, "sigma": 0.3},
            "seeds": 2,
        },
        {},
    )
    run = mt.build_run(config, None)
    population, _ = run.strategy.ask(jax.random.PRNGKey(1), mt.initial_state(run))
    fitness = meta.evaluate_population(run.fitness_fn, population, jax.random.PRNGKey(2), micro_batch=2)
    spec, _ = load_train_spec("CartPole-v1", TASK)
    seeds = run_seeds(spec, resolve_drift("dpo"), 8, seed=3, show_progress=False)
    np.savez(
        out_path,
        fitness=np.asarray(fitness),
        returns=seeds.final_returns,
        devices=jax.device_count(),
        kind=seeds.layout["kind"],
    )


if __name__ == "__main__":
    main(sys.argv[1])
