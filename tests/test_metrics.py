"""Metrics against distributions whose AUC and rejection are known in closed form."""

import math

import numpy as np
import pytest
import uproot
from scipy.stats import norm

from jetattn.metrics import binary_metrics, load_predictions, main


def two_class(n=200_000, shift=1.0, seed=0):
    """Signal logit ~ N(shift, 1), background ~ N(0, 1); score_sig = sigmoid(logit)."""
    rng = np.random.default_rng(seed)
    is_sig = rng.random(n) < 0.5
    logit = rng.normal(size=n) + shift * is_sig
    score = 1 / (1 + np.exp(-logit))
    return {"sig": is_sig, "bkg": ~is_sig, "score_sig": score, "score_bkg": 1 - score}


def test_auc_and_rejection_match_gaussian_closed_form():
    result = binary_metrics(two_class(shift=1.0), "sig", signal_effs=(0.3, 0.5))
    assert result["auc"] == pytest.approx(norm.cdf(1.0 / math.sqrt(2)), abs=3e-3)
    # at εS = 30% the cut sits at the signal's 70% quantile, c = 1 + Φ⁻¹(0.7), and εB = 1 − Φ(c)
    assert result["rejection_at_30"] == pytest.approx(1 / (1 - norm.cdf(1.0 + norm.ppf(0.7))), rel=0.03)
    # argmax picks signal when the logit is above 0: accuracy = ½ Φ(1) + ½ · ½
    assert result["accuracy"] == pytest.approx(0.5 * norm.cdf(1.0) + 0.25, abs=3e-3)


def test_random_scores_give_auc_half_and_rejection_one_over_eff():
    result = binary_metrics(two_class(shift=0.0), "sig", signal_effs=(0.3,))
    assert result["auc"] == pytest.approx(0.5, abs=5e-3)
    assert result["rejection_at_30"] == pytest.approx(1 / 0.3, rel=0.03)


def test_multiclass_discriminant_uses_only_chosen_backgrounds():
    rng = np.random.default_rng(1)
    n = 3000
    label = rng.integers(0, 3, n)
    score_a = np.where(label == 0, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.1, n))
    score_a[label == 2] = rng.uniform(0.0, 1.0, (label == 2).sum())  # class c overlaps with a
    score_b = np.where(label == 1, 0.9 - score_a, 0.5 * (1 - score_a))
    scores = np.stack([score_a, score_b, 1 - score_a - score_b], axis=1)
    columns = {c: label == i for i, c in enumerate("abc")} | {f"score_{c}": scores[:, i] for i, c in enumerate("abc")}
    against_b = binary_metrics(columns, "a", ["b"])
    assert against_b["auc"] == 1.0 and math.isinf(against_b["rejection_at_30"])
    assert against_b["num_signal"] + against_b["num_background"] == ((label == 0) | (label == 1)).sum()
    assert binary_metrics(columns, "a", ["c"])["auc"] < 0.95


def test_cli_reads_weaver_root_output_and_reports_errors(tmp_path, capsys):
    columns = two_class(n=2000)
    path = tmp_path / "pred.root"
    with uproot.recreate(path) as f:
        f.mktree("Events", {k: v.dtype for k, v in columns.items()})
        f["Events"].extend(columns)
    assert set(load_predictions(path)) == set(columns)
    outputs = ["--json", str(tmp_path / "m.json"), "--plot", str(tmp_path / "roc.png")]
    assert main([str(path), "--signal", "sig", *outputs]) == 0
    assert "AUC" in capsys.readouterr().out and (tmp_path / "m.json").exists()
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "pred.root", "roc.png"]  # no temporary left
    assert main([str(path), "--signal", "top"]) == 1
    assert "signal class 'top' not in the prediction file (classes: sig, bkg)" in capsys.readouterr().err
    (tmp_path / "broken.root").write_bytes(b"not root")
    assert main([str(tmp_path / "broken.root"), "--signal", "sig"]) == 1
    assert "broken.root: not a weaver prediction file" in capsys.readouterr().err
