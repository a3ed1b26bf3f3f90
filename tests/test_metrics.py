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


def write_predictions(path, columns):
    with uproot.recreate(path) as f:
        f.mktree("Events", {k: v.dtype for k, v in columns.items()})
        f["Events"].extend(columns)
    return path


def dihiggs_columns(score_signal, is_signal):
    score_signal = np.asarray(score_signal, dtype=np.float32)
    is_signal = np.asarray(is_signal, dtype=bool)
    return {
        "label_signal": is_signal,
        "label_background": ~is_signal,
        "score_label_signal": score_signal,
        "score_label_background": 1 - score_signal,
    }


def test_task_table_perfect_tagger():
    from jetattn.metrics import task_metrics

    is_signal = np.arange(1000) % 2 == 0
    result = task_metrics(dihiggs_columns(np.where(is_signal, 0.9, 0.1), is_signal), "DiHiggs")
    assert result["accuracy"] == 1.0 and result["auc"] == 1.0
    assert math.isinf(result["rejection_at_50"]) and math.isinf(result["rejection_at_30"])


def test_task_table_small_roc_by_hand():
    from jetattn.metrics import task_metrics

    # signal 0.9 0.7 0.5 0.3, background 0.8 0.6 0.4 0.2: 10 of the 16 pairs ordered right, AUC = 0.625; keeping
    # 30% of the signal needs a cut between 0.9 and 0.7 (interpolated), which passes one background jet of four;
    # argmax is right for signal above 0.5 and background below: 0.9, 0.7 and 0.4, 0.2 (0.5 ties to signal)
    scores = [0.9, 0.7, 0.5, 0.3, 0.8, 0.6, 0.4, 0.2]
    result = task_metrics(dihiggs_columns(scores, [1, 1, 1, 1, 0, 0, 0, 0]), "DiHiggs")
    assert result["auc"] == pytest.approx(0.625)
    assert result["rejection_at_30"] == pytest.approx(4.0)
    assert result["accuracy"] == pytest.approx(5 / 8)


def test_task_bootstrap_spread_matches_the_auc_variance_of_a_random_tagger():
    from jetattn.metrics import bootstrap_spread

    rng = np.random.default_rng(3)
    for n in (400, 6400):
        is_signal = rng.random(n) < 0.5
        columns = dihiggs_columns(rng.random(n), is_signal)
        n_s, n_b = is_signal.sum(), (~is_signal).sum()
        expected = math.sqrt((n_s + n_b + 1) / (12 * n_s * n_b))  # AUC variance of unrelated scores
        spread = bootstrap_spread(columns, "DiHiggs", resamples=200, seed=n)
        assert spread["auc"] == pytest.approx(expected, rel=0.3)
        assert spread["rejection_at_30"] > 0


def test_task_cli_rows_per_file_mean_over_files_and_errors(tmp_path, capsys):
    import json

    rng = np.random.default_rng(5)
    files = []
    for seed in range(3):
        is_signal = rng.random(500) < 0.5
        score = np.clip(0.5 + 0.3 * (is_signal - 0.5) + 0.2 * rng.normal(size=500), 0, 1)
        files.append(str(write_predictions(tmp_path / f"seed{seed}.root", dihiggs_columns(score, is_signal))))
    out = tmp_path / "table.json"
    assert (
        main(
            [
                *files,
                "--task",
                "DiHiggs",
                "--bootstrap",
                "20",
                "--json",
                str(out),
                "--markdown",
                str(tmp_path / "table.md"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert table.count("\n| ") == 5 and "mean ± std over 3 files" in table and "± " in table
    result = json.loads(out.read_text())
    aucs = [row["metrics"]["auc"] for row in result["rows"]]
    assert result["mean"]["auc"] == pytest.approx(np.mean(aucs)) and result["std"]["auc"] == pytest.approx(
        np.std(aucs, ddof=1)
    )
    assert (tmp_path / "table.md").read_text().strip() == table.strip()
    # a file of another task: one line naming what is missing
    assert main([files[0], "--task", "TopLandscape", "--bootstrap", "0"]) == 1
    assert "jet_isTop" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([files[0]])  # neither --task nor --signal


def test_no_background_passing_is_a_bound_on_the_rejection_not_inf(tmp_path, capsys):
    """A perfect tagger on 500 background jets: 1/εB > 500 per file; the mean over files stays inf, unwarned."""
    import warnings

    is_signal = np.arange(1000) % 2 == 0
    perfect = dihiggs_columns(np.where(is_signal, 0.9, 0.1), is_signal)
    files = [str(write_predictions(tmp_path / f"perfect{i}.root", perfect)) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in subtract" for std([inf, inf])
        assert main([*files, "--task", "DiHiggs", "--bootstrap", "0", "--json", str(tmp_path / "t.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2].endswith("| 1.0000 | 1.0000 | > 500 | > 500 |") and lines[3] == lines[2].replace("0.root", "1.root")
    assert lines[4].endswith("| inf | inf |")


def test_task_jetclass_reads_ten_classes(tmp_path):
    from jetattn.datasets.processes import JETCLASS_LABELS
    from jetattn.metrics import task_metrics

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, 5000)
    scores = rng.random((5000, 10)) + 3 * np.eye(10)[labels]  # a decent tagger
    scores /= scores.sum(axis=1, keepdims=True)
    columns = {c: labels == i for i, c in enumerate(JETCLASS_LABELS)}
    columns.update({"score_" + c: scores[:, i] for i, c in enumerate(JETCLASS_LABELS)})
    result = task_metrics(columns, "JetClass")
    assert result["accuracy"] == pytest.approx((scores.argmax(1) == labels).mean())
    assert {f"rej_{c.removeprefix('label_')}" for c in JETCLASS_LABELS[1:]} <= set(result)
    assert all(r > 1 for k, r in result.items() if k.startswith("rej_"))


def test_task_combine_reads_per_group_files_as_one_test_set(tmp_path, capsys):
    rng = np.random.default_rng(9)
    is_signal = rng.random(600) < 0.5
    columns = dihiggs_columns(np.clip(0.5 + 0.4 * (is_signal - 0.5) + 0.2 * rng.normal(size=600), 0, 1), is_signal)
    whole = write_predictions(tmp_path / "all.root", columns)
    # as weaver writes them for --data-test signal:... background:...: one class per file
    parts = [
        write_predictions(tmp_path / f"{k}.root", {c: v[mask] for c, v in columns.items()})
        for k, mask in (("sig", is_signal), ("bkg", ~is_signal))
    ]
    assert main([*map(str, parts), "--task", "DiHiggs", "--bootstrap", "0"]) == 1  # each alone has one class
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds jets of one class" in err[0] and "add --combine" in err[0]
    assert main([*map(str, parts), "--task", "DiHiggs", "--bootstrap", "0", "--combine"]) == 0
    combined = capsys.readouterr().out
    assert main([str(whole), "--task", "DiHiggs", "--bootstrap", "0"]) == 0
    assert combined.splitlines()[2].split("|")[2:] == capsys.readouterr().out.splitlines()[2].split("|")[2:]


def test_task_labelled_patterns_are_one_row_each_and_roc_is_drawn(tmp_path, capsys):
    import json

    rng = np.random.default_rng(11)
    is_signal = rng.random(800) < 0.5
    good = dihiggs_columns(np.clip(0.5 + 0.6 * (is_signal - 0.5) + 0.1 * rng.normal(size=800), 0, 1), is_signal)
    poor = dihiggs_columns(np.clip(0.5 + 0.1 * (is_signal - 0.5) + 0.3 * rng.normal(size=800), 0, 1), is_signal)
    for name, columns in (("good", good), ("poor", poor)):  # per-class files, as train_*.sh writes them
        (tmp_path / name).mkdir()
        for part, mask in (("sig", is_signal), ("bkg", ~is_signal)):
            write_predictions(tmp_path / name / f"pred_{part}.root", {c: v[mask] for c, v in columns.items()})
    roc = tmp_path / "roc.png"
    out = tmp_path / "table.json"
    assert (
        main(
            [
                f"good model:{tmp_path}/good/pred_*.root",
                f"poor:{tmp_path}/poor/pred_*.root",
                "--task",
                "DiHiggs",
                "--bootstrap",
                "0",
                "--roc",
                str(roc),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "| good model |" in table and "| poor |" in table and "mean ± std" not in table  # models, not repeats
    rows = {row["file"]: row["metrics"] for row in json.loads(out.read_text())["rows"]}
    assert rows["good model"]["auc"] > 0.95 > rows["poor"]["auc"] > 0.55
    assert roc.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob("*.tmp*"))
    # a pattern that matches nothing names itself
    assert main([f"none:{tmp_path}/nothing_*.root", "--task", "DiHiggs", "--bootstrap", "0"]) == 1
    assert "nothing_*.root" in capsys.readouterr().err


def test_task_roc_jetclass_has_a_panel_per_signal_class(tmp_path, monkeypatch):
    from jetattn import plotting
    from jetattn.datasets.processes import JETCLASS_LABELS
    from jetattn.metrics import plot_task_rocs

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 3000)
    scores = rng.random((3000, 10)) + 2 * np.eye(10)[labels]
    columns = {c: labels == i for i, c in enumerate(JETCLASS_LABELS)}
    columns.update({"score_" + c: scores[:, i] for i, c in enumerate(JETCLASS_LABELS)})
    figures = []
    monkeypatch.setattr(plotting, "save", lambda fig, *a, **k: figures.append(fig))
    plot_task_rocs([("a", columns), ("b", columns)], "JetClass", tmp_path / "roc.png")
    drawn = [ax for ax in figures[0].axes if ax.axison]
    assert len(drawn) == 9
    for ax in drawn:  # a curve per model, and the random tagger's
        assert [label.split(" (")[0] for label in ax.get_legend_handles_labels()[1]] == ["a", "b", "random"]
