"""Drift validity, exact identities and hand-computed values (the formulas in docs/METHOD.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drift_functions
import drift_functions as df
from drift_functions.closed_form import dpo_drift, ppo_clip_drift
from drift_functions.testing import random_params

RATIOS = jnp.concatenate([jnp.linspace(0.05, 3.0, 61), jnp.array([1.0 - 1e-3, 1.0, 1.0 + 1e-3])])
ADVANTAGES = jnp.linspace(-3.0, 3.0, 25)
GRID_R, GRID_A = jnp.meshgrid(RATIOS, ADVANTAGES, indexing="ij")


def _all_params(drift, num_random=3):
    """Default params, a second ``init`` key (random weights for learned drifts) and large random params."""
    params = [drift.init(jax.random.PRNGKey(0)), drift.init(jax.random.PRNGKey(1))]
    return params + [random_params(drift, jax.random.PRNGKey(100 + seed)) for seed in range(num_random)]


ALL_DRIFTS = [
    df.make("ppo_clip"),
    df.make("ppo_clip", epsilon=0.1),
    df.make("dpo"),
    df.make("dpo", alpha=0.5, beta=3.0),
    df.make("dpo_poly"),
    df.make("dpo_poly", alpha=0.5, beta=3.0),
    df.make("lpo"),
    df.make("lpo", ppo_init=True),
    df.make("ta_lpo"),
    df.make("ta_lpo", ppo_init=True),
    df.make("ra_lpo"),
    df.make("ra_lpo", ppo_init=False, log_lifetime=True),
    df.make("dpo_ra"),
]


@pytest.mark.parametrize("drift", ALL_DRIFTS, ids=lambda d: d.spec)
@pytest.mark.parametrize("progress", [0.0, 0.5, 1.0])
def test_drift_is_valid_on_grid(drift, progress):
    for params in _all_params(drift):
        values = drift.apply(params, GRID_R, GRID_A, progress)
        assert values.shape == GRID_R.shape
        assert bool(jnp.all(jnp.isfinite(values)))
        assert float(values.min()) >= 0.0
        at_one = drift.apply(params, jnp.ones_like(ADVANTAGES), ADVANTAGES, progress)
        assert float(jnp.max(jnp.abs(at_one))) == 0.0


# Flatness at r = 1 by finite differences, in float64. LPO's 1e-4 margin makes the drift
# exactly 0 only on |r − 1| < 1e-4 / |∂net/∂r|, and with the large random weights above
# |∂net/∂r| at r = 1 reaches ~1e3, so the steps must be below 1e-7 to probe inside that
# neighbourhood; float64 resolves r = 1 ± 1e-9 to a relative 1e-7. A flat drift has
# slopes O(h) (DPO's are O(h²); dpo_poly's quadratic terms give |c|·A²·h ≲ 1e2·h here),
# whereas a kink keeps a slope that does not shrink with h (LPO without its margin: 0.1
# to 1e3), so "every slope ≤ 1e3·h at both steps" separates the two by orders of magnitude.
FLAT_STEPS = (1e-8, 1e-9)
FLAT_SLOPE_PER_STEP = 1e3


def assert_flat_at_one(drift, params, progress, advantages=ADVANTAGES):
    """Value 0 at r = 1, and symmetric and one-sided difference slopes ≤ 1e3·h for h in ``FLAT_STEPS``."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), params)
        adv = jnp.asarray(advantages, jnp.float64)
        value = lambda r: np.asarray(drift.apply(params, jnp.full_like(adv, r), adv, jnp.float64(progress)))
        at_one = value(1.0)
        assert np.max(np.abs(at_one)) == 0.0, f"{drift.spec}: drift {at_one} at r = 1"
        for h in FLAT_STEPS:
            up, down = value(1.0 + h), value(1.0 - h)
            slopes = {"symmetric": (up - down) / (2 * h), "right": (up - at_one) / h, "left": (at_one - down) / h}
            for side, slope in slopes.items():
                worst = int(np.argmax(np.abs(slope)))
                assert abs(slope[worst]) <= FLAT_SLOPE_PER_STEP * h, (
                    f"{drift.spec} not flat at r = 1 (progress {progress}): {side} slope {slope[worst]:.3g} "
                    f"at A = {float(adv[worst]):.3g}, h = {h:g}, exceeds {FLAT_SLOPE_PER_STEP:g}·h = "
                    f"{FLAT_SLOPE_PER_STEP * h:.1g}"
                )


@pytest.mark.parametrize("drift", ALL_DRIFTS, ids=lambda d: d.spec)
@pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
def test_drift_is_flat_at_one(drift, progress):
    for params in _all_params(drift):
        assert_flat_at_one(drift, params, progress)


def test_flatness_check_fails_for_lpo_without_its_margin(monkeypatch):
    # The mutation the flatness test exists to catch: relu(net(x)) alone is 0 at r = 1 but kinked there.
    from drift_functions import learned

    monkeypatch.setattr(learned, "FLATNESS_MARGIN", 0.0)
    for name in ("lpo", "ta_lpo"):
        drift = df.make(name)
        with pytest.raises(AssertionError, match="not flat at r = 1"):
            assert_flat_at_one(drift, drift.init(jax.random.PRNGKey(0)), 0.5)


def test_every_registered_drift_is_covered():
    assert {d.name for d in ALL_DRIFTS} == set(df.registered())


@pytest.mark.parametrize("epsilon", [0.1, 0.2, 0.3])
def test_ppo_clip_drift_gives_clipped_surrogate(epsilon):
    surrogate = GRID_R * GRID_A - ppo_clip_drift(GRID_R, GRID_A, epsilon)
    clipped = jnp.minimum(GRID_R * GRID_A, jnp.clip(GRID_R, 1 - epsilon, 1 + epsilon) * GRID_A)
    np.testing.assert_allclose(surrogate, clipped, rtol=0, atol=1e-6)


def test_dpo_hand_computed_values():
    # A >= 0 branch: r = 1.5, A = 2: x = (r-1)A = 1, drift = 1 - 2 tanh(0.5)
    # A <  0 branch: r = 0.5, A = -1: y = log(0.5)(-1) = log 2, drift = log2 - 0.6 tanh(log2 / 0.6)
    ratio = jnp.array([1.5, 0.5, 3.0, 0.2])
    adv = jnp.array([2.0, -1.0, 0.5, -2.0])
    expected = [
        1.0 - 2.0 * np.tanh(0.5),
        np.log(2.0) - 0.6 * np.tanh(np.log(2.0) / 0.6),
        1.0 - 2.0 * np.tanh(0.5),
        max(0.0, np.log(0.2) * -2.0 - 0.6 * np.tanh(np.log(0.2) * -2.0 / 0.6)),
    ]
    np.testing.assert_allclose(dpo_drift(ratio, adv, 2.0, 0.6), expected, rtol=1e-6)
    np.testing.assert_allclose(df.make("dpo").apply(df.make("dpo").init(None), ratio, adv, 0.0), expected, rtol=1e-6)


def test_dpo_branch_that_is_negative_inside_relu_is_zero():
    # A < 0 with r > 1: log(r)·A < 0 so y − β tanh(y/β) < 0 → relu gives 0.
    assert float(dpo_drift(jnp.array(2.0), jnp.array(-1.0), 2.0, 0.6)) == 0.0


@pytest.mark.parametrize("name", ["lpo", "ta_lpo"])
def test_ppo_initialised_learned_drift_with_zero_weights_equals_ppo_clip(name):
    drift = df.make(name, ppo_init=True)
    params = drift.init(jax.random.PRNGKey(3))
    assert all(float(jnp.abs(p).max()) == 0.0 for p in jax.tree.leaves(params))
    learned = drift.apply(params, GRID_R, GRID_A, 0.3)
    ppo = ppo_clip_drift(GRID_R, GRID_A, 0.2)
    # identical outside the 1e-4 flatness margin, which is subtracted inside the relu
    np.testing.assert_allclose(learned, jnp.maximum(ppo - 1e-4, 0.0), atol=1e-7)


def test_lpo_shapes_and_weight_count():
    drift = df.make("lpo")
    params = drift.init(jax.random.PRNGKey(0))
    assert sum(p.size for p in jax.tree.leaves(params)) == 1152
    out = drift.apply(params, jnp.ones((3, 4, 5)) * 1.2, jnp.ones((3, 4, 5)), 0.0)
    assert out.shape == (3, 4, 5)
    assert sum(p.size for p in jax.tree.leaves(df.make("ta_lpo").init(jax.random.PRNGKey(0)))) == 16 * 128 + 128


def test_ta_lpo_depends_on_progress():
    drift = df.make("ta_lpo")
    params = drift.init(jax.random.PRNGKey(1))
    early = drift.apply(params, GRID_R, GRID_A, 0.0)
    late = drift.apply(params, GRID_R, GRID_A, 1.0)
    assert float(jnp.max(jnp.abs(early - late))) > 1e-3


@pytest.mark.parametrize("ppo_init", [False, True])
def test_ta_lpo_input_is_the_lpo_features_and_progress_times_them(ppo_init):
    """x = [f(r, A), p · f(r, A)] (16 inputs) into Dense → tanh → Dense, written out by hand."""
    from drift_functions import lpo_features

    drift = df.make("ta_lpo", hidden_size=8, ppo_init=ppo_init)
    params = random_params(drift, jax.random.PRNGKey(4), scale=0.5)
    assert params["w_hidden"].shape == (16, 8)
    features = np.asarray(lpo_features(GRID_R, GRID_A), np.float64)
    for progress in (0.0, 0.25, 1.0):
        x = np.concatenate([features, progress * features], axis=-1)
        net = np.tanh(x @ np.asarray(params["w_hidden"], np.float64)) @ np.asarray(params["w_out"], np.float64)
        inside = net[..., 0] + (np.asarray(ppo_clip_drift(GRID_R, GRID_A, 0.2)) if ppo_init else 0.0)
        expected = np.maximum(inside - 1e-4, 0.0)
        np.testing.assert_allclose(drift.apply(params, GRID_R, GRID_A, progress), expected, rtol=1e-4, atol=1e-5)


def test_registry_errors_list_valid_names():
    with pytest.raises(df.UnknownDriftError, match="ppo_clip"):
        df.make("nope")
    with pytest.raises(ValueError, match="malformed"):
        df.parse_spec("dpo:alpha")
    with pytest.raises(ValueError):
        df.make("dpo", alpha=-1.0)
    assert df.parse_spec("dpo:alpha=1.5,beta=0.3") == ("dpo", {"alpha": 1.5, "beta": 0.3})
    assert df.make("ppo").name == "ppo_clip"


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("inf"), float("nan"), "abc"])
@pytest.mark.parametrize("family", ["lpo", "ta_lpo"])
def test_learned_drifts_refuse_a_bad_epsilon(family, epsilon):
    with pytest.raises(ValueError, match="epsilon .*must be a finite number"):
        drift_functions.make(family, ppo_init=True, epsilon=epsilon)
