"""Tests of discovery/cli."""

import pytest

import drift_functions
from discovery.cli import main


def _help(command, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--learning-rate", "inf"], "bad value for learning_rate: 'inf' is not finite"),
        (["train", "--ent-coef", "nan"], "bad value for ent_coef: 'nan' is not finite"),
        (["train", "--total-timesteps", "inf"], "bad value for total_timesteps: 'inf' is not a valid int"),
        (["train", "--drift", "dpo:alpha=inf"], "alpha must be a finite number"),
        (
            ["meta-train", "--config", "configs/meta/cartpole_demo.yaml", "--ppo.learning-rate", "inf"],
            "ppo.learning_rate: 'inf' is not finite",
        ),
        (
            ["meta-train", "--config", "configs/meta/cartpole_demo.yaml", "--es.sigma", "-inf"],
            "es.sigma: '-inf' is not finite",
        ),
        (["sweep", "--grid", "learning_rate=inf,1e-3"], "grid value 'inf' for learning_rate is not finite"),
        (["sweep", "--drift", "dpo", "--grid", "alpha=1,nan"], "grid value 'nan' for alpha is not finite"),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "dpo:alpha=abc",
            "bad option for drift 'dpo': alpha must be a finite number (float), got 'abc'; valid options: alpha "
            "(float), beta (float)",
        ),
        ("dpo:gamma=1", "bad option for drift 'dpo': unknown option gamma; valid options: alpha (float), beta (float)"),
        (
            "lpo:ppo_init=yes",
            "ppo_init must be true or false (bool), got 'yes'; valid options: hidden_size (int), ppo_init (bool), "
            "epsilon (float)",
        ),
        ("lpo:hidden_size=2.5", "hidden_size must be an integer (int), got 2.5"),
    ],
)
def test_drift_option_errors_are_readable(tmp_path, capsys, text, message):
    assert main(["train", "--drift", text, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert "'>' not supported" not in err and "unexpected keyword" not in err


def test_help_lists_every_registered_drift_and_no_internal_notes(capsys):
    for command in ("train", "meta-train"):
        text = _help(command, capsys)
        assert all(name in text for name in drift_functions.registered()), command
    bench = _help("bench", capsys)
    assert "lent" not in bench and "session" not in bench and "not yet measured" not in bench


def test_a_failed_download_is_one_line_and_exit_2(capsys, monkeypatch):
    """MNISTBandit-bsuite fetches MNIST on first use; offline that is a one-line error, not a traceback."""
    import urllib.error

    from discovery.commands import drifts

    def offline(args, extra):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(drifts, "run", offline)
    assert main(["drifts"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MNISTBandit-bsuite fetches MNIST" in err and "Traceback" not in err, err
