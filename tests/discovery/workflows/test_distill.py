"""``discovery distill`` / ``plot-drift`` and the ``dpo_poly`` family (fits, artifacts, validity)."""

import json

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest

import drift_functions as df
from discovery.cli import main
from discovery.io import artifacts, configs
from discovery.io.drift_registry import resolve_drift
from discovery.reporting.drift_plots import panels_for
from discovery.workflows import distill as distillation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RATIOS = jnp.concatenate([jnp.linspace(0.05, 3.0, 61), jnp.array([1.0 - 1e-3, 1.0, 1.0 + 1e-3])])
ADVANTAGES = jnp.linspace(-3.0, 3.0, 25)
GRID_R, GRID_A = jnp.meshgrid(RATIOS, ADVANTAGES, indexing="ij")


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert mpimg.imread(path).ndim == 3


@pytest.fixture(scope="module")
def dpo_distilled(tmp_path_factory):
    """DPO(2, 0.6) saved as an artifact and distilled as if it were learned, with rollout samples from CartPole."""
    root = tmp_path_factory.mktemp("distill")
    drift = df.make("dpo")
    artifact = artifacts.save_artifact(root / "learned.npz", drift, drift.init(None), {"label": "pretend_learned"})
    out = root / "out"
    code = main(
        [
            "distill",
            "--drift",
            str(artifact),
            "--out",
            str(out),
            "--env",
            "CartPole-v1",
            "--rollout-steps",
            "4096",
            "--max-samples",
            "4000",
        ]
    )
    assert code == 0
    return out, json.loads((out / "distill.json").read_text())


def test_distilling_dpo_recovers_alpha_and_beta(dpo_distilled):
    _, report = dpo_distilled
    fit = report["fits"]["dpo"]
    assert fit["params"]["alpha"] == pytest.approx(2.0, rel=1e-2)
    assert fit["params"]["beta"] == pytest.approx(0.6, rel=1e-2)
    assert fit["r2"] > 0.99 and fit["r2_grid"] > 0.99 and fit["r2_rollout"] > 0.99
    assert fit["max_abs_error_grid"] < 1e-2
    assert report["samples"]["rollout"]["n"] == 4000
    assert report["fits"]["dpo_poly"]["r2"] > 0.99


def test_outputs_and_artifacts_load(dpo_distilled):
    out, _ = dpo_distilled
    for name in ("distill.json", "distill.md", "drift_heatmaps.png", "fit_dpo.npz", "fit_dpo_poly.npz"):
        assert (out / name).is_file(), name
    assert_png(out / "drift_heatmaps.png")
    drift, params, metadata = artifacts.load_artifact(out / "fit_dpo.npz")
    assert (
        drift.name == "dpo" and metadata["distilled_from"].endswith("learned.npz") and metadata["env"] == "CartPole-v1"
    )
    drift, params, _ = artifacts.load_artifact(out / "fit_dpo_poly.npz")
    assert drift.name == "dpo_poly" and params["pos"].shape == (4,)
    assert "| dpo |" in (out / "distill.md").read_text()


def test_fitted_artifact_trains(dpo_distilled, tmp_path):
    out, _ = dpo_distilled
    code = main(
        [
            "train",
            "--drift",
            str(out / "fit_dpo.npz"),
            "--seeds",
            "1",
            "--total-timesteps",
            "4096",
            "--out",
            str(tmp_path / "train"),
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "train" / "results.json").read_text())["summary"]
    assert np.isfinite(summary["final_return_mean"])


def test_ppo_clip_is_a_worse_dpo_fit():
    dpo_fit = distillation.fit_family(
        distillation.FAMILIES["dpo"], distillation.grid_samples(resolve_drift("dpo")), steps=1500
    )
    ppo_fit = distillation.fit_family(
        distillation.FAMILIES["dpo"], distillation.grid_samples(resolve_drift("ppo")), steps=1500
    )
    assert dpo_fit.metrics["r2"] > 0.999
    assert ppo_fit.metrics["r2"] < dpo_fit.metrics["r2"] - 0.01
    assert ppo_fit.metrics["max_abs_error"] > 0.1


def test_ta_lpo_is_fitted_over_progress():
    resolved = resolve_drift("ta_lpo:hidden_size=8")
    samples = distillation.grid_samples(resolved, progress_values=(0.0, 1.0), num_ratio=10, num_advantage=5)
    assert sorted(set(samples.progress.tolist())) == [0.0, 1.0] and samples.ratio.size == 100
    assert distillation.depends_on_progress(resolved)
    assert not distillation.depends_on_progress(resolve_drift("lpo:hidden_size=8"))
    assert [p.progress for p in panels_for(resolved, progress_values=(0.0, 0.5))] == [0.0, 0.5]


def test_a_regime_aware_drift_is_sampled_over_regimes_and_dpo_ra_recovers_its_slopes(tmp_path):
    drift = df.make("dpo_ra")
    params = {
        **drift.init(None),
        "alpha_slopes": jnp.array([0.0, 0.0, -1.5]),
        "beta_slopes": jnp.array([0.0, 1.0, 0.0]),
    }
    artifacts.save_artifact(tmp_path / "target.npz", drift, jax.tree.map(np.asarray, params), {"label": "target"})
    resolved = resolve_drift(str(tmp_path / "target.npz"))
    assert distillation.depends_on_regime(resolved) and not distillation.depends_on_regime(resolve_drift("ta_lpo"))
    samples = distillation.grid_samples(resolved, num_ratio=30, num_advantage=15)
    assert {tuple(r[:2]) for r in samples.regime.tolist()} == set(distillation.REGIME_POINTS)
    fits = {f.family: f for f in distillation.distill(samples, ["dpo", "dpo_ra"])}
    assert fits["dpo_ra"].metrics["r2"] > 0.999 > fits["dpo"].metrics["r2"]
    np.testing.assert_allclose(fits["dpo_ra"].params["alpha_slopes"][2], -1.5, atol=0.05)
    labels = [p.label for p in panels_for(resolved)]
    assert len(labels) == len(distillation.REGIME_POINTS) + 2 and "K=16" in labels[3]


def test_rollout_samples_are_what_the_drift_sees():
    spec, _ = configs.load_train_spec("CartPole-v1", {"total_timesteps": 2048})
    resolved = resolve_drift("dpo")
    samples = distillation.record_rollout_samples(spec, resolved, max_samples=500)
    assert samples.ratio.shape == (500,)
    assert np.all(samples.ratio > 0) and samples.ratio.std() > 0  # the policy moved during the epochs
    assert abs(samples.advantage.mean()) < 0.5  # minibatch-normalised advantages
    assert set(np.unique(samples.progress)) <= {0.0, 0.25, 0.5, 0.75}
    epochs, updates = spec.ppo.update_epochs, spec.ppo.num_updates
    assert set(np.unique(samples.regime[:, 0])) == {k / epochs for k in range(epochs)}
    assert set(map(tuple, samples.regime[:, 1:].tolist())) == {(epochs, updates)}
    np.testing.assert_allclose(
        samples.target, distillation.drift_values(resolved, samples.ratio, samples.advantage, samples.progress)
    )


# ---- dpo_poly ----------------------------------------------------------------------


def _random_poly_params(seed):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {
        "alpha": 3.0 * jax.random.normal(keys[0], ()),  # any sign: the family uses |α|
        "beta": 3.0 * jax.random.normal(keys[1], ()),
        "pos": 3.0 * jax.random.normal(keys[2], (4,)),
        "neg": 3.0 * jax.random.normal(keys[3], (4,)),
    }


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("progress", [0.0, 1.0])
def test_dpo_poly_is_a_valid_drift_for_any_params(seed, progress):
    drift = df.make("dpo_poly")
    params = drift.init(None) if seed == 0 else _random_poly_params(seed)
    values = drift.apply(params, GRID_R, GRID_A, progress)
    assert values.shape == GRID_R.shape and bool(jnp.all(jnp.isfinite(values)))
    assert float(values.min()) >= 0.0
    at_one = drift.apply(params, jnp.ones_like(ADVANTAGES), ADVANTAGES, progress)
    assert float(jnp.max(jnp.abs(at_one))) == 0.0
    slope = jax.vmap(jax.grad(lambda r, a: drift.apply(params, r, a, progress)), in_axes=(None, 0))(1.0, ADVANTAGES)
    assert float(jnp.max(jnp.abs(slope))) == 0.0
    # flat in the ordinary sense too: the argument of the relu is O((r - 1)^2) near r = 1
    near = drift.apply(params, jnp.full_like(ADVANTAGES, 1.0 + 1e-4), ADVANTAGES, progress)
    assert float(jnp.max(near)) < 1e-5


def test_dpo_poly_with_zero_coefficients_is_dpo():
    poly = df.make("dpo_poly", alpha=1.3, beta=0.4)
    dpo = df.make("dpo", alpha=1.3, beta=0.4)
    np.testing.assert_array_equal(
        poly.apply(poly.init(None), GRID_R, GRID_A, 0.0), dpo.apply(dpo.init(None), GRID_R, GRID_A, 0.0)
    )
    assert "dpo_poly" in df.registered()
    with pytest.raises(ValueError):
        df.make("dpo_poly", alpha=0.0)


# ---- plot-drift and errors -------------------------------------------------------------


def test_plot_drift_cli(tmp_path):
    path = tmp_path / "drifts.png"
    assert main(["plot-drift", "--drift", "dpo:alpha=1.5,beta=0.3,ppo_clip:epsilon=0.1", "--out", str(path)]) == 0
    assert_png(path)


@pytest.mark.parametrize(
    "args, message",
    [
        (["distill", "--drift", "/no/such/file.npz"], "not found"),
        (["distill", "--drift", "dpo", "--families", "dpo,cubic"], "unknown closed-form family"),
        (["distill", "--drift", "dpo", "--check"], "--check needs the training env"),
        (["distill", "--drift", "dpo", "--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["distill", "--drift", "dpo", "--progress", "0,2"], "--progress"),
        (["plot-drift", "--drift", "nonsense"], "unknown drift"),
        (["plot-drift", "--drift", "dpo", "--out", "x.pdf"], ".png"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    if "--out" not in args:
        args = args + ["--out", str(tmp_path / ("out.png" if args[0] == "plot-drift" else "out"))]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
