"""The interval planner: Young, Daly, Aupy et al., and the Llama 3 failure rate."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from suanli.ft.interval import (
    HOUR_S,
    aupy_interval_s,
    best_ettr,
    daly_ettr,
    daly_interval_s,
    expected_ettr,
    failures_per_1k_gpu_month,
    job_mtbf_s,
    max_restart_s_for_ettr,
    max_stall_s_for_ettr,
    optimal_interval_s,
    should_checkpoint_now,
    young_interval_s,
)
from suanli.spec.errors import SpecError

LLAMA3_GPUS = 16_384

stalls_s = st.floats(min_value=0.01, max_value=600.0)
mtbfs_s = st.floats(min_value=600.0, max_value=30 * 24 * HOUR_S)
restarts_s = st.floats(min_value=0.0, max_value=3600.0)
recalls = st.floats(min_value=0.0, max_value=0.95)
precisions = st.floats(min_value=0.05, max_value=1.0)


def test_llama3_failure_rate_in_its_published_units():
    # Dubey et al. 2024, sec. 3.3.4: 419 unexpected interruptions in 54 days on 16,384 H100,
    # "14.2 per 1,000 GPUs per month", about one every 3 hours.
    rate = failures_per_1k_gpu_month(419, LLAMA3_GPUS, 54)
    assert rate == pytest.approx(14.2, abs=0.05)
    mtbf_s = job_mtbf_s(LLAMA3_GPUS, failures_per_1k_gpu_month=rate)
    assert mtbf_s == pytest.approx(54 * 24 * HOUR_S / 419, rel=1e-9)
    assert 3.0 < mtbf_s / HOUR_S < 3.2


@given(gpus=st.integers(1, 100_000), rate=st.floats(0.1, 1000.0))
def test_both_failure_rate_units_give_the_same_job_mtbf(gpus, rate):
    per_gpu_h = 1000.0 * 30 * 24 / rate
    assert job_mtbf_s(gpus, mtbf_per_gpu_h=per_gpu_h) == pytest.approx(
        job_mtbf_s(gpus, failures_per_1k_gpu_month=rate), rel=1e-9
    )


def test_young_interval_by_hand():
    # Young 1974: sqrt(2 * 300 s * 86,400 s) = 7,200 s.
    assert young_interval_s(300.0, 86_400.0) == pytest.approx(7200.0)


@given(stall_s=stalls_s, mtbf_s=mtbfs_s)
def test_daly_is_below_young_and_converges_to_it(stall_s, mtbf_s):
    young = young_interval_s(stall_s, mtbf_s)
    daly = daly_interval_s(stall_s, mtbf_s)
    assert daly <= young
    ratio = stall_s / mtbf_s
    assert daly / young == pytest.approx(1.0, abs=math.sqrt(ratio))


@settings(max_examples=60)
@given(stall_s=stalls_s, mtbf_s=mtbfs_s, restart_s=restarts_s)
def test_daly_interval_nearly_maximises_the_exact_ettr(stall_s, mtbf_s, restart_s):
    def negative_ettr(interval_s):
        return -daly_ettr(interval_s, stall_s, mtbf_s, restart_s)

    best = minimize_scalar(
        negative_ettr, bounds=(1e-6, 5 * mtbf_s), method="bounded", options={"xatol": 1e-3}
    )
    at_daly = daly_ettr(daly_interval_s(stall_s, mtbf_s), stall_s, mtbf_s, restart_s)
    assert at_daly >= -best.fun - 1e-3 * (stall_s / mtbf_s) - 1e-9


@given(stall_s=stalls_s, mtbf_s=mtbfs_s, recall=recalls)
def test_prediction_aware_interval_is_young_over_the_missed_failures(stall_s, mtbf_s, recall):
    # Aupy et al. 2013: T = sqrt(2 mu C / (1 - r)); ours is Daly's over mu / (1 - r), its higher-order form.
    assert aupy_interval_s(stall_s, mtbf_s, recall) == pytest.approx(
        young_interval_s(stall_s, mtbf_s) / math.sqrt(1.0 - recall)
    )
    assert optimal_interval_s(stall_s, mtbf_s, recall) == pytest.approx(
        daly_interval_s(stall_s, mtbf_s / (1.0 - recall))
    )
    assert optimal_interval_s(stall_s, mtbf_s, recall) >= optimal_interval_s(stall_s, mtbf_s)


@given(stall_s=stalls_s, mtbf_s=mtbfs_s, restart_s=restarts_s)
def test_expected_ettr_without_predictor_is_daly(stall_s, mtbf_s, restart_s):
    interval_s = optimal_interval_s(stall_s, mtbf_s)
    assert expected_ettr(interval_s, stall_s, mtbf_s, restart_s) == daly_ettr(
        interval_s, stall_s, mtbf_s, restart_s
    )


@given(stall_s=stalls_s, mtbf_s=mtbfs_s, restart_s=restarts_s, recall=recalls, precision=precisions)
def test_ettr_moves_the_right_way(stall_s, mtbf_s, restart_s, recall, precision):
    base = best_ettr(stall_s, mtbf_s, restart_s, recall, precision)
    assert 0.0 <= base <= 1.0
    assert best_ettr(stall_s * 1.5, mtbf_s, restart_s, recall, precision) <= base
    assert best_ettr(stall_s, mtbf_s, restart_s + 60.0, recall, precision) <= base
    assert best_ettr(stall_s, mtbf_s * 1.5, restart_s, recall, precision) >= base
    assert best_ettr(stall_s, mtbf_s, restart_s, recall, min(1.0, precision * 1.5)) >= base


def test_a_precise_cheap_predictor_helps_and_a_noisy_one_can_hurt():
    mtbf_s = job_mtbf_s(LLAMA3_GPUS, failures_per_1k_gpu_month=14.2)
    without = best_ettr(30.0, mtbf_s, 300.0)
    assert best_ettr(30.0, mtbf_s, 300.0, recall=0.5, precision=0.9) > without
    # A predictor crying wolf 99 times in 100 spends more on proactive checkpoints than it saves.
    assert best_ettr(30.0, mtbf_s, 300.0, recall=0.5, precision=0.01) < without


@given(stall_s=stalls_s, mtbf_s=mtbfs_s)
def test_max_restart_has_daly_closed_form(stall_s, mtbf_s):
    best_without_restart = best_ettr(stall_s, mtbf_s)
    restart_s = max_restart_s_for_ettr(0.9, stall_s, mtbf_s)
    if best_without_restart < 0.9:
        assert restart_s is None
    else:
        assert restart_s == pytest.approx(
            min(mtbf_s, mtbf_s * math.log(best_without_restart / 0.9)), abs=1e-3
        )


def test_llama3_needs_sub_second_stall_and_two_minute_restart_for_99_percent():
    mtbf_s = job_mtbf_s(
        LLAMA3_GPUS, failures_per_1k_gpu_month=failures_per_1k_gpu_month(419, LLAMA3_GPUS, 54)
    )
    max_stall_s = max_stall_s_for_ettr(0.99, 0.0, mtbf_s)
    max_restart_s = max_restart_s_for_ettr(0.99, 0.0, mtbf_s)
    # Even with a free checkpoint, restart costs R/M: 0.01 * 11,135 s ~ 112 s of it is all there is.
    assert max_restart_s == pytest.approx(mtbf_s * math.log(1 / 0.99), rel=1e-6)
    # First order: sqrt(2 d / M) <= 0.01  =>  d <= 0.01^2 M / 2 ~ 0.56 s.
    assert max_stall_s == pytest.approx(0.01**2 * mtbf_s / 2, rel=0.03)
    assert best_ettr(max_stall_s, mtbf_s) == pytest.approx(0.99, abs=1e-6)


def test_should_checkpoint_now_trusts_a_prediction_after_cp_over_p():
    # Aupy et al.: ignore a prediction of precision p in the first C_p / p of the period.
    assert not should_checkpoint_now(0.5, time_since_checkpoint_s=19.0, proactive_stall_s=10.0)
    assert should_checkpoint_now(0.5, time_since_checkpoint_s=21.0, proactive_stall_s=10.0)
    assert not should_checkpoint_now(0.0, time_since_checkpoint_s=1e9, proactive_stall_s=10.0)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: optimal_interval_s(10.0, 3600.0, recall=1.0), "recall"),
        (lambda: optimal_interval_s(10.0, 3600.0, precision=0.0), "precision"),
        (lambda: young_interval_s(-1.0, 3600.0), "stall_s"),
        (lambda: daly_interval_s(1.0, 0.0), "mtbf_s"),
        (lambda: job_mtbf_s(0, mtbf_per_gpu_h=1.0), "gpus"),
        (lambda: job_mtbf_s(8, mtbf_per_gpu_h=1.0, failures_per_1k_gpu_month=2.0), "exactly one"),
        (lambda: job_mtbf_s(8), "exactly one"),
        (lambda: expected_ettr(100.0, 1.0, 3600.0, restart_s=float("nan")), "restart_s"),
        (lambda: max_restart_s_for_ettr(1.5, 1.0, 3600.0), "target"),
        (lambda: should_checkpoint_now(1.2, 10.0, 1.0), "failure_probability"),
    ],
)
def test_bad_input_is_one_clear_error(call, named):
    with pytest.raises(SpecError, match=named):
        call()


def test_cli_plan_prints_the_interval_and_ettr_for_llama3():
    from typer.testing import CliRunner

    from suanli.cli import app

    args = ["ft", "plan", "--gpus", "16384", "--failures-per-1k-gpu-month", "14.2", "--stall-s", "5"]
    result = CliRunner().invoke(app, [*args, "--restart-s", "120", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    mtbf_s = job_mtbf_s(LLAMA3_GPUS, failures_per_1k_gpu_month=14.2)
    assert plan["interval_s"] == pytest.approx(optimal_interval_s(5.0, mtbf_s))
    assert plan["expected_ettr"] == pytest.approx(best_ettr(5.0, mtbf_s, 120.0))
    assert plan["max_restart_s_for_target"] is None  # 5 s of stall alone costs more than 1 %
    table = CliRunner().invoke(app, [*args, "--restart-s", "120", "--recall", "0.3", "--precision", "0.6"])
    assert table.exit_code == 0 and "Aupy" in table.stdout and "ETTR without predictor" in table.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mtbf-per-gpu-h", "50000", "--failures-per-1k-gpu-month", "14.2"], "exactly one"),
        (["--mtbf-per-gpu-h", "50000", "--recall", "1.0"], "recall"),
        (["--mtbf-per-gpu-h", "-3"], "mtbf_per_gpu_h"),
    ],
)
def test_cli_plan_bad_input_is_one_line_and_exit_2(extra, message):
    from typer.testing import CliRunner

    from suanli.cli import app

    result = CliRunner().invoke(
        app, ["ft", "plan", "--gpus", "64", "--stall-s", "1", "--restart-s", "60", *extra]
    )
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
