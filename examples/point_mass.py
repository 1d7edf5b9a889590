"""A Brax task of your own, from a short MJCF string: push a point mass to a goal on a plane.

The mass slides on two joints (x and y) inside a 2 × 2 arena and is driven by two
motors; each episode draws a goal uniformly in the arena. The reward per step is
minus the distance to the goal, and the observation is
``[position (2), velocity (2), goal − position (2)]``. Nothing terminates: episodes end
at the time limit, which the trainer sets (``--episode-length``).

Use it from the command line by naming this file and the function that builds it:

    discovery train --env examples/point_mass.py:make --episode-length 100 --total-timesteps 50000

``make(backend=...)`` builds the env (``positional`` unless told otherwise: the fastest
Brax backend on a CPU). Importing this file also registers the class with Brax as
``point_mass``, so ``--env examples/point_mass.py:point_mass`` names the same task.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax import envs as brax_envs
from brax.envs.base import PipelineEnv, State
from brax.io import mjcf

ARENA = 1.0  # the mass and the goal stay in [-ARENA, ARENA]²

XML = """
<mujoco model="point_mass">
  <option timestep="0.02" gravity="0 0 0"/>
  <worldbody>
    <body name="rail" pos="0 0 0">
      <joint name="x" type="slide" axis="1 0 0" limited="true" range="-1 1" damping="1"/>
      <geom name="rail" type="sphere" size="0.01" mass="0.1" contype="0" conaffinity="0"/>
      <body name="mass" pos="0 0 0">
        <joint name="y" type="slide" axis="0 1 0" limited="true" range="-1 1" damping="1"/>
        <geom name="mass" type="sphere" size="0.05" mass="1" contype="0" conaffinity="0"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor joint="x" gear="1" ctrlrange="-1 1"/>
    <motor joint="y" gear="1" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


class PointMass(PipelineEnv):
    """Reach a random goal with a 2-D point mass (2 actions in [-1, 1], 6 observations)."""

    def __init__(self, backend: str = "positional", n_frames: int = 2, **kwargs):
        sys = mjcf.loads(XML)
        super().__init__(sys=sys, backend=backend, n_frames=n_frames, **kwargs)

    def reset(self, rng: jax.Array) -> State:
        rng_q, rng_goal = jax.random.split(rng)
        q = self.sys.init_q + jax.random.uniform(rng_q, (self.sys.q_size(),), minval=-0.1, maxval=0.1)
        qd = jnp.zeros(self.sys.qd_size())
        goal = jax.random.uniform(rng_goal, (2,), minval=-ARENA, maxval=ARENA)
        pipeline_state = self.pipeline_init(q, qd)
        obs = self._obs(pipeline_state, goal)
        reward, done = jnp.zeros(2)
        return State(pipeline_state, obs, reward, done, metrics={}, info={"goal": goal})

    def step(self, state: State, action: jax.Array) -> State:
        pipeline_state = self.pipeline_step(state.pipeline_state, action)
        goal = state.info["goal"]
        obs = self._obs(pipeline_state, goal)
        reward = -jnp.linalg.norm(goal - pipeline_state.q[:2])
        return state.replace(pipeline_state=pipeline_state, obs=obs, reward=reward, done=jnp.zeros(()))

    def _obs(self, pipeline_state, goal: jax.Array) -> jax.Array:
        position, velocity = pipeline_state.q[:2], pipeline_state.qd[:2]
        return jnp.concatenate([position, velocity, goal - position])


def make(backend: str = "positional", **kwargs) -> PointMass:
    """The factory that ``--env examples/point_mass.py:make`` calls (``backend`` comes from ``--backend``)."""
    return PointMass(backend=backend, **kwargs)


brax_envs.register_environment("point_mass", PointMass)
