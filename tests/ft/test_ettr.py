"""The ETTR Monte-Carlo simulator against Daly's exact formula and the published failure data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.ft.ettr import (
    CheckpointRun,
    WeibullGaps,
    category_share,
    fit_weibull_gaps,
    lanl_weibull_fits,
    lanl_weibull_shape,
    load_llama3_breakdown,
    published_failure_rates,
    simulate_ettr,
)
from suanli.ft.interval import (
    HOUR_S,
    daly_ettr,
    expected_ettr,
    failures_per_1k_gpu_month,
    job_mtbf_s,
    max_restart_s_for_ettr,
    optimal_interval_s,
)
from suanli.spec.errors import SpecError

LLAMA3_MTBF_S = job_mtbf_s(16_384, failures_per_1k_gpu_month=failures_per_1k_gpu_month(419, 16_384, 54))


@pytest.mark.parametrize(
    ("interval_s", "stall_s", "restart_s", "mtbf_s"),
    [
        (600.0, 10.0, 300.0, 3 * HOUR_S),  # a large training job
        (2000.0, 60.0, 1800.0, 3 * HOUR_S),  # failures often strike during checkpoints and restarts
        (150.0, 0.5, 60.0, LLAMA3_MTBF_S),
    ],
)
def test_monte_carlo_agrees_with_daly_where_failures_are_poisson(interval_s, stall_s, restart_s, mtbf_s):
    run = CheckpointRun(interval_s, stall_s, restart_s)
    estimate = simulate_ettr(run, WeibullGaps(mtbf_s), horizon_s=400 * mtbf_s, runs=100, seed=1)
    analytic = daly_ettr(interval_s, stall_s, mtbf_s, restart_s)
    assert estimate.failures_per_run == pytest.approx(400, rel=0.05)
    assert abs(estimate.mean - analytic) < 4 * estimate.std_error + 5e-4


@pytest.mark.parametrize(("recall", "precision"), [(0.3, 0.9), (0.6, 0.3)])
def test_monte_carlo_agrees_with_aupy_where_checkpoints_are_short(recall, precision):
    stall_s, restart_s, mtbf_s = 5.0, 120.0, 3 * HOUR_S
    interval_s = optimal_interval_s(stall_s, mtbf_s, recall, precision)
    run = CheckpointRun(interval_s, stall_s, restart_s, recall, precision)
    estimate = simulate_ettr(run, WeibullGaps(mtbf_s), horizon_s=400 * mtbf_s, runs=100, seed=2)
    analytic = expected_ettr(interval_s, stall_s, mtbf_s, restart_s, recall, precision)
    assert abs(estimate.mean - analytic) < 4 * estimate.std_error + 1e-3


def test_optimal_interval_beats_halving_or_doubling_it_under_lanl_weibull_gaps():
    gaps = WeibullGaps(LLAMA3_MTBF_S, shape=0.71)
    stall_s, restart_s = 20.0, 300.0
    best_s = optimal_interval_s(stall_s, LLAMA3_MTBF_S)
    ettr = {
        factor: simulate_ettr(
            CheckpointRun(best_s * factor, stall_s, restart_s), gaps, 200 * LLAMA3_MTBF_S, runs=60, seed=3
        ).mean
        for factor in (0.5, 1.0, 2.0)
    }
    assert ettr[1.0] > ettr[0.5]
    assert ettr[1.0] > ettr[2.0]


def test_monte_carlo_confirms_the_99_percent_frontier_for_llama3():
    stall_s = 0.2
    restart_s = max_restart_s_for_ettr(0.99, stall_s, LLAMA3_MTBF_S)
    assert restart_s is not None
    run = CheckpointRun(optimal_interval_s(stall_s, LLAMA3_MTBF_S), stall_s, restart_s)
    estimate = simulate_ettr(run, WeibullGaps(LLAMA3_MTBF_S), horizon_s=54 * 24 * HOUR_S, runs=300, seed=4)
    assert abs(estimate.mean - 0.99) < 4 * estimate.std_error + 5e-4


def test_lanl_gaps_are_weibull_with_decreasing_hazard():
    # Schroeder & Gibson, DSN'06: time between failures of a LANL system fits a Weibull with shape
    # 0.7-0.8, not an exponential. We fit every system with >= 100 gaps.
    fits = lanl_weibull_fits()
    assert len(fits) >= 15
    assert all(fit.shape < 1.0 and fit.weibull_preferred for fit in fits.values())
    assert 0.6 < lanl_weibull_shape() < 0.85


def test_weibull_fit_recovers_a_known_shape():
    rng = np.random.default_rng(5)
    gaps = WeibullGaps(mean_s=3600.0, shape=0.7).sample_s(rng, 20_000)
    fit = fit_weibull_gaps(gaps)
    assert fit.shape == pytest.approx(0.7, rel=0.03)
    assert fit.weibull_preferred
    assert not fit_weibull_gaps(rng.exponential(3600.0, 20_000)).weibull_preferred


@settings(max_examples=20, deadline=None)
@given(shape=st.floats(0.4, 3.0), mean_s=st.floats(1.0, 1e6))
def test_weibull_gaps_have_the_requested_mean(shape, mean_s):
    sample = WeibullGaps(mean_s, shape).sample_s(np.random.default_rng(6), 100_000)
    assert sample.mean() == pytest.approx(mean_s, rel=0.05)


def test_llama3_breakdown_counts_add_up_to_the_published_419():
    breakdown = load_llama3_breakdown()
    assert sum(count for _, count in breakdown.values()) == 419
    # GPU categories (faulty GPU, HBM3, SRAM, system processor, SDC, thermal) are 268 of 419.
    assert category_share(breakdown, ["GPU"]) == pytest.approx(268 / 419)
    with pytest.raises(SpecError, match="unknown failure categories"):
        category_share(breakdown, ["Cosmic rays"])


def test_bad_simulation_input_is_one_clear_error():
    with pytest.raises(SpecError, match="recall"):
        CheckpointRun(100.0, 1.0, 10.0, recall=1.0)
    with pytest.raises(SpecError, match="shape"):
        WeibullGaps(100.0, shape=0.0)
    with pytest.raises(SpecError, match="runs"):
        simulate_ettr(CheckpointRun(100.0, 1.0, 10.0), WeibullGaps(1000.0), 1e5, runs=1)


def test_published_failure_rates_reproduce_llama3s_figure():
    rates = published_failure_rates()
    # Dubey et al. 2024: "14.2 per 1,000 GPUs per month"; OPT-175B: 105 restarts, 992 GPUs, 60 days.
    assert rates["Llama 3 405B pre-training"] == pytest.approx(14.2, abs=0.05)
    assert rates["OPT-175B"] == pytest.approx(105 / 0.992 / 2.0)
    assert "AWS HLAT" not in rates  # no count published: not guessed
