"""Calibration of the paired tests: false-positive rate between equal methods, and power.

``simcrop-bench bench significance`` simulates two methods scored on the same test patients and
counts how often each test calls them different at level α:

* **before** — the paired patient bootstrap the tables used until #14
  (:func:`simcrop_bench.stats.significance.bootstrap_difference`, ``B = 1000``, reject when
  ``p < α`` and at least :data:`OLD_MIN_PATIENTS` patients);
* **after** — the paired permutation test (:func:`simcrop_bench.stats.significance.paired_test`,
  exact up to 24 discordant patients, else 2,000 random swaps — tables use 10,000; the Monte Carlo
  p ``(1 + #)/(B + 1)`` is valid for any B — reject when ``p ≤ α`` and enough patients are discordant).

The simulation design was fixed before any result was looked at (``docs/significance.md``). Paired
scores are correlated as real methods' are: every patient has a difficulty shared by both methods,
each method has its own fixed error on that patient (the same in every training seed), and each
seed adds its own noise. Under the null the two methods are equally good; under the alternative
method A is better by a fixed amount (:data:`EFFECTS`). For AUROC the two methods' probabilities are
calibrated differently (``sigmoid(x)`` vs ``sigmoid(2x − 1)``), as two separately trained probes are.

* mean Dice: ``dice = clip(0.78 + 0.10·z_p + 0.04·e_mp + 0.02·η_msp (+ Δ for A), 0, 1)``, one case per patient;
* AUROC: patient labels ``y ~ Bernoulli(prevalence)``, 1–3 rows (volumes) per patient sharing the
  label; latent ``x = 1.5·y + 1.0·z_p + 0.8·e_mp + 0.3·η_ms,row`` (A: ``(1.5 + Δ)·y``); binary
  prevalence 0.3, multi-label 18 classes with prevalences 0.03–0.40 (rare classes can be undefined);
* accuracy: 3 classes, logits ``1.5·[k = y] + 1.0·z_pk + 0.8·e_mpk + 0.3·η_mspk`` (A: ``1.5 + Δ``), argmax.

The false-positive rate's Monte Carlo standard error is ``sqrt(α(1 − α)/S)`` for ``S`` simulations;
a calibrated test stays below ``α + 2·s.e.``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from simcrop_bench.stats.significance import PairedSeed

OLD_MIN_PATIENTS = 6  # the guard of the old test: all patients counted, 6 at α = 0.05
# Fixed true differences of the power rows (chosen with the design, before any run).
EFFECTS = {"mean": 0.03, "auc": 0.4, "accuracy": 0.4}
N_LABELS = 18


@dataclass(frozen=True)
class Scenario:
    name: str
    metric: str  # stats.significance metric: mean, auc, accuracy
    n_patients: int
    n_labels: int = 1  # AUROC: 1 = binary, more = multi-label macro AUROC


SCENARIOS = (
    Scenario("mean Dice", "mean", 6),
    Scenario("mean Dice", "mean", 12),
    Scenario("mean Dice", "mean", 30),
    Scenario("binary AUROC", "auc", 30),
    Scenario("binary AUROC", "auc", 300),
    Scenario(f"macro AUROC ({N_LABELS} labels)", "auc", 100, N_LABELS),
    Scenario("accuracy (3 classes)", "accuracy", 60),
    Scenario("accuracy (3 classes)", "accuracy", 1243),
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate(scenario: Scenario, n_seeds: int, effect: float, rng: np.random.Generator) -> list[PairedSeed]:
    """One test set scored by method A and the reference over ``n_seeds`` seeds (module docstring)."""
    n = scenario.n_patients
    if scenario.metric == "mean":
        z = rng.normal(size=n)
        fixed = rng.normal(size=(2, n))  # e_mp: each method's own error on each patient
        seeds = []
        for _ in range(n_seeds):
            noise = rng.normal(size=(2, n))
            dice = 0.78 + 0.10 * z + 0.04 * fixed + 0.02 * noise
            dice[0] += effect
            dice = np.clip(dice, 0.0, 1.0)
            seeds.append(PairedSeed(None, dice[0], dice[1], np.arange(n)))
        return seeds
    if scenario.metric == "auc":
        c = scenario.n_labels
        prevalence = np.full(c, 0.3) if c == 1 else np.linspace(0.03, 0.40, c)
        y_patient = (rng.random((n, c)) < prevalence).astype(np.int64)
        rows_per_patient = 1 + rng.binomial(2, 0.25, size=n)
        groups = np.repeat(np.arange(n), rows_per_patient)
        y = y_patient[groups]
        z = rng.normal(size=(n, c))[groups]
        fixed = rng.normal(size=(2, n, c))[:, groups]
        signal = np.array([1.5 + effect, 1.5])[:, None, None]
        seeds = []
        for _ in range(n_seeds):
            x = signal * y + 1.0 * z + 0.8 * fixed + 0.3 * rng.normal(size=(2, len(groups), c))
            a, r = _sigmoid(x[0]), _sigmoid(2.0 * x[1] - 1.0)  # equal ranking, different calibration
            if c == 1:
                y_out, a, r = y[:, 0], a[:, 0], r[:, 0]
            else:
                y_out = y
            seeds.append(PairedSeed(y_out, a, r, groups))
        return seeds
    y = rng.integers(0, 3, size=n)
    onehot = np.eye(3)[y]
    z = rng.normal(size=(n, 3))
    fixed = rng.normal(size=(2, n, 3))
    signal = np.array([1.5 + effect, 1.5])[:, None, None]
    seeds = []
    for _ in range(n_seeds):
        logits = signal * onehot + 1.0 * z + 0.8 * fixed + 0.3 * rng.normal(size=(2, n, 3))
        probs = np.exp(logits - logits.max(axis=2, keepdims=True))
        probs /= probs.sum(axis=2, keepdims=True)
        seeds.append(PairedSeed(y, probs[0], probs[1], np.arange(n)))
    return seeds


def before(metric: str, seeds: list[PairedSeed], alpha: float, sim: int, n_resamples: int = 1000) -> bool:
    """The old rule: paired bootstrap p < α, at least 6 patients."""
    from simcrop_bench.stats.significance import bootstrap_difference

    n_patients = len(set().union(*(set(s.groups.tolist()) for s in seeds)))
    if n_patients < OLD_MIN_PATIENTS:
        return False
    p = bootstrap_difference(metric, seeds, n_resamples=n_resamples, seed=sim)["p"]
    return bool(p < alpha)


def after(metric: str, seeds: list[PairedSeed], alpha: float, sim: int, n_permutations: int = 2000) -> bool:
    """The new rule: paired permutation p ≤ α (the discordant-patient guard is implied by the exact p)."""
    from simcrop_bench.stats.permutation import min_discordant
    from simcrop_bench.stats.significance import paired_test

    result = paired_test(metric, seeds, n_permutations=n_permutations, seed=sim)
    return result["n_discordant"] >= min_discordant(alpha) and result["p"] <= alpha


@dataclass
class CalibrationRow:
    scenario: Scenario
    n_seeds: int
    n_simulations: int
    alpha: float
    fpr: dict[str, float]  # test -> false-positive rate
    power: dict[str, float]  # test -> rejection rate under the fixed effect
    effect: float  # mean observed difference under the alternative
    seconds: float

    @property
    def se(self) -> float:
        return math.sqrt(self.alpha * (1 - self.alpha) / self.n_simulations)

    def calibrated(self, test: str) -> bool:
        return self.fpr[test] <= self.alpha + 2 * self.se


def wilson(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a binomial proportion."""
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def calibrate(
    scenario: Scenario,
    n_seeds: int,
    *,
    n_simulations: int = 1000,
    alpha: float = 0.05,
    tests: tuple[str, ...] = ("before", "after"),
    power: bool = True,
    base_seed: int = 2026,
) -> CalibrationRow:
    """Rejection rates of each test over ``n_simulations`` null (and, with ``power``, alternative) test sets."""
    rules = {"before": before, "after": after}
    index = SCENARIOS.index(scenario) if scenario in SCENARIOS else 99
    started = time.perf_counter()
    rates: dict[str, dict[str, float]] = {"null": {}, "alt": {}}
    diffs = []
    for kind, effect in (("null", 0.0), ("alt", EFFECTS[scenario.metric])):
        if kind == "alt" and not power:
            continue
        rejected = dict.fromkeys(tests, 0)
        for sim in range(n_simulations):
            rng = np.random.default_rng([base_seed, index, n_seeds, int(effect > 0), sim])
            seeds = simulate(scenario, n_seeds, effect, rng)
            for test in tests:
                rejected[test] += rules[test](scenario.metric, seeds, alpha, sim)
            if kind == "alt":
                from simcrop_bench.stats.significance import paired_test

                diffs.append(paired_test(scenario.metric, seeds, n_permutations=1)["diff"])
        rates[kind] = {test: rejected[test] / n_simulations for test in tests}
    return CalibrationRow(
        scenario,
        n_seeds,
        n_simulations,
        alpha,
        rates["null"],
        rates["alt"],
        float(np.mean(diffs)) if diffs else math.nan,
        time.perf_counter() - started,
    )


def _calibrate_row(args: tuple[Scenario, int, int, float]) -> CalibrationRow:
    scenario, n_seeds, n_simulations, alpha = args
    return calibrate(scenario, n_seeds, n_simulations=n_simulations, alpha=alpha)


def run_all(
    n_simulations: int, alpha: float, seeds: tuple[int, ...] = (1, 3), progress=None, jobs: int = 1
) -> list[CalibrationRow]:
    """Every scenario × seed count, in table order; ``progress(row)`` as each row finishes.

    ``jobs`` > 1 computes rows in that many processes; every simulation draws from its own seed
    (scenario, seeds, effect, simulation index), so the numbers do not depend on ``jobs``.
    """
    work = [(scenario, n, n_simulations, alpha) for scenario in SCENARIOS for n in seeds]
    if jobs <= 1:
        rows = []
        for item in work:
            rows.append(_calibrate_row(item))
            if progress is not None:
                progress(rows[-1])
        return rows
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_calibrate_row, item): i for i, item in enumerate(work)}
        done: dict[int, CalibrationRow] = {}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            if progress is not None:
                progress(done[futures[future]])
    return [done[i] for i in range(len(work))]


def markdown(rows: list[CalibrationRow]) -> str:
    """The calibration table as Markdown (``docs/significance.md``)."""
    header = (
        "| metric | patients | seeds | FPR before [95 % CI] | FPR after [95 % CI] | α + 2 s.e. | "
        "power before | power after | mean true Δ |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [header]
    for row in rows:
        cells = []
        for test in ("before", "after"):
            rate = row.fpr.get(test, math.nan)
            low, high = wilson(rate, row.n_simulations)
            flag = "" if row.calibrated(test) else " ✗"
            cells.append(f"{rate:.3f} [{low:.3f}, {high:.3f}]{flag}")
        lines.append(
            f"| {row.scenario.name} | {row.scenario.n_patients} | {row.n_seeds} | {cells[0]} | {cells[1]} | "
            f"{row.alpha + 2 * row.se:.3f} | {row.power.get('before', math.nan):.3f} | "
            f"{row.power.get('after', math.nan):.3f} | {row.effect:+.3f} |"
        )
    return "\n".join(lines)
