"""The failure predictor on public data (Titan, BGL) and the telemetry path on planted signals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from suanli.ft.interval import best_ettr, job_mtbf_s, should_checkpoint_now
from suanli.ft.predictor import (
    TITAN_FEATURES,
    alarm_quality,
    alarm_quality_at_top,
    evaluate_bgl,
    evaluate_telemetry,
    evaluate_titan,
    load_titan_stays,
    telemetry_frame,
    titan_landmark,
)
from suanli.ft.telemetry import DCGM_FIELDS, FailureRecord, GpuSample, load_failures, load_samples
from suanli.spec.errors import SpecError

HOUR_S = 3600.0


@pytest.fixture(scope="module")
def titan():
    return evaluate_titan()


def test_titan_survival_model_ranks_future_failures(titan):
    # Trained on 2016, tested on the GPUs in service on 2017-01-01 and their next 365 days.
    assert titan.train_gpus > 15_000 and titan.test_gpus > 15_000
    assert titan.test_failures > 500
    assert titan.concordance_test > 0.7
    # History and location together beat either alone (Ostrouchov et al.: location matters).
    assert titan.concordance_test > titan.concordance_test_age_only + 0.05
    assert titan.concordance_test > titan.concordance_test_location_only + 0.05
    # The top cage (hottest air) fails more: its coefficient is the largest location effect.
    assert titan.coefficients["cage_2"] > max(titan.coefficients["cage_1"], 0.0)


def test_titan_alarms_beat_the_base_rate(titan):
    alarms = titan.alarms_top5pct_30d
    base_rate = alarms.failures / titan.test_gpus
    assert alarms.precision > 3 * base_rate
    assert alarms.recall > 0.05 * 3  # at least 3x better than flagging 5 % at random


def test_titan_landmark_features_ignore_the_future():
    stays = load_titan_stays()
    landmark = pd.Timestamp("2016-06-01")
    known = stays[stays["insert"] <= landmark].copy()
    still_running = known["remove"] > landmark
    known.loc[still_running, "remove"] = pd.Timestamp("2030-01-01")
    known.loc[still_running, "event"] = np.nan
    known.loc[still_running, "failed"] = False
    full = titan_landmark(stays, "2016-06-01", 90).set_index("SN")
    past_only = titan_landmark(known, "2016-06-01", 90).set_index("SN")
    assert len(full) == len(past_only) > 10_000
    pd.testing.assert_frame_equal(full[list(TITAN_FEATURES)], past_only.loc[full.index, list(TITAN_FEATURES)])


def test_titan_split_must_not_overlap():
    with pytest.raises(SpecError, match="time-based split"):
        evaluate_titan("2016-06-01", "2017-01-01", horizon_days=365)


def test_bgl_log_detector_on_the_later_lines():
    report = evaluate_bgl()
    assert report.train_lines == 1400 and report.test_lines == 600
    # Honest bars: the later lines hold alert categories the detector never saw.
    assert report.unseen_test_categories
    assert report.detector.precision >= 0.8
    assert report.detector.recall >= 0.7
    # "Every FATAL line is an alert" catches them all but cries wolf far more often.
    assert report.fatal_level_baseline.recall == 1.0
    assert report.detector.precision > report.fatal_level_baseline.precision + 0.3


def test_alarm_quality_by_hand():
    quality = alarm_quality(np.array([0.9, 0.8, 0.1, 0.7]), np.array([True, False, True, False]), 0.75)
    assert (quality.alarms, quality.true_alarms, quality.failures) == (2, 1, 2)
    assert quality.precision == 0.5 and quality.recall == 0.5
    top = alarm_quality_at_top(np.arange(100.0), np.arange(100) >= 90, 0.1)
    assert top.precision == 1.0 and top.recall == 1.0


def _synthetic_fleet(
    seed: int, gpus: int = 60, hours: int = 240
) -> tuple[list[GpuSample], list[FailureRecord]]:
    """Synthetic telemetry with a planted precursor: a GPU that will fail shows climbing single-bit
    ECC errors, pending row remaps and a hotter memory in its last 12 hours. Not real data: this
    checks that the pipeline can learn a signal, not how well real failures can be predicted."""
    rng = np.random.default_rng(seed)
    samples, failures = [], []
    for gpu_id in range(gpus):
        node, gpu = f"node{gpu_id // 8}", gpu_id % 8
        fail_hour = int(rng.integers(48, hours)) if rng.random() < 0.4 else None
        sbe = 0
        for hour in range(hours):
            if fail_hour is not None and hour >= fail_hour:
                break
            degrading = fail_hour is not None and fail_hour - hour <= 12
            sbe += int(rng.poisson(40 if degrading else 0.5))
            samples.append(
                GpuSample(
                    timestamp_s=hour * HOUR_S,
                    node=node,
                    gpu=gpu,
                    ecc_sbe_volatile_total=sbe,
                    row_remap_pending=bool(degrading and rng.random() < 0.5),
                    xid=int(rng.choice([0, 13])),
                    gpu_temp_c=float(rng.normal(65, 3)),
                    memory_temp_c=float(rng.normal(80 if degrading else 70, 3)),
                    power_usage_w=float(rng.normal(600, 40)),
                )
            )
        if fail_hour is not None:
            failures.append(FailureRecord(timestamp_s=fail_hour * HOUR_S, node=node, gpu=gpu, cause="HBM3"))
    return samples, failures


def test_telemetry_model_learns_a_planted_precursor():
    samples, failures = _synthetic_fleet(seed=7)
    model, report = evaluate_telemetry(samples, failures, horizon_s=12 * HOUR_S)
    assert report.test_failing_samples > 20
    assert report.alarms.precision > 0.8
    assert report.alarms.recall > 0.6
    frame = telemetry_frame(samples, failures, 12 * HOUR_S)
    risky = model.failure_probability(frame[frame["fails_soon"]]).mean()
    calm = model.failure_probability(frame[~frame["fails_soon"]]).mean()
    assert risky > 5 * calm


def test_telemetry_model_finds_nothing_where_nothing_is_planted():
    samples, failures = _synthetic_fleet(seed=8)
    rng = np.random.default_rng(9)
    shuffled = [
        FailureRecord(timestamp_s=float(rng.uniform(48, 240)) * HOUR_S, node=f.node, gpu=(f.gpu + 3) % 8)
        for f in failures
    ]
    _, report = evaluate_telemetry(samples, shuffled, horizon_s=12 * HOUR_S, threshold=0.3)
    assert report.alarms.precision < 0.5 or report.alarms.recall < 0.3


def test_counter_resets_are_not_negative_increases():
    samples = [
        GpuSample(timestamp_s=t, node="n", ecc_sbe_volatile_total=v) for t, v in [(0, 10), (60, 15), (120, 2)]
    ]
    frame = telemetry_frame(samples, [], HOUR_S)
    assert frame["sbe_increase"].tolist() == [0.0, 5.0, 2.0]


def test_ingestion_reads_dcgm_names_from_csv_and_jsonl(tmp_path):
    csv_path = tmp_path / "telemetry.csv"
    csv_path.write_text(
        "timestamp,Hostname,gpu,"
        + ",".join([DCGM_FIELDS["xid"], DCGM_FIELDS["ecc_sbe_volatile_total"], DCGM_FIELDS["gpu_temp_c"]])
        + "\n2026-01-01T00:00:00Z,n1,3,79,12,71.5\n2026-01-01T01:00:00,n1,3,,13,\n"
    )
    first, second = load_samples(csv_path)
    assert (first.node, first.gpu, first.xid, first.ecc_sbe_volatile_total, first.gpu_temp_c) == (
        "n1",
        3,
        79,
        12,
        71.5,
    )
    assert second.timestamp_s - first.timestamp_s == 3600.0 and second.gpu_temp_c is None
    jsonl_path = tmp_path / "failures.jsonl"
    jsonl_path.write_text(json.dumps({"time": 100, "node": "n1", "gpu": 3, "cause": "XID 79"}) + "\n\n")
    assert load_failures(jsonl_path) == [FailureRecord(timestamp_s=100, node="n1", gpu=3, cause="XID 79")]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.csv", "timestamp,node,gpu\n5,n1,x\n", "bad.csv line 2: gpu"),
        (
            "bad.json",
            '[{"time": 5, "node": "n", "temperature": 3}]',
            "bad.json record 1: temperature: is not a known field",
        ),
        (
            "bad.jsonl",
            '{"time": "yesterday", "node": "n"}\n',
            "bad.jsonl line 1: time: expected seconds since the epoch",
        ),
        ("bad.jsonl", "{not json\n", "bad.jsonl:1: invalid JSON"),
        ("empty.csv", "timestamp,node\n", "no telemetry records"),
        ("data.parquet", "", "unknown format"),
    ],
)
def test_bad_telemetry_is_one_clear_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        load_samples(path)


def test_a_calibrated_risk_triggers_a_proactive_checkpoint_only_when_it_pays():
    samples, failures = _synthetic_fleet(seed=10)
    model, report = evaluate_telemetry(samples, failures, horizon_s=12 * HOUR_S)
    frame = telemetry_frame(samples, failures, 12 * HOUR_S)
    risk = model.failure_probability(frame)
    worst, calmest = float(risk.max()), float(risk.min())
    assert should_checkpoint_now(worst, time_since_checkpoint_s=600.0, proactive_stall_s=5.0)
    assert not should_checkpoint_now(calmest, time_since_checkpoint_s=600.0, proactive_stall_s=5.0)
    # And its recall/precision plug into the planner: a good predictor raises the expected ETTR.
    mtbf_s = job_mtbf_s(16_384, failures_per_1k_gpu_month=14.2)
    # A measured recall of 1.0 on a finite test set is not a perfect predictor; the planner takes < 1.
    recall = min(report.alarms.recall, 0.99)
    with_predictor = best_ettr(5.0, mtbf_s, 300.0, recall, report.alarms.precision)
    assert with_predictor > best_ettr(5.0, mtbf_s, 300.0)


def test_cli_predict_telemetry_round_trip(tmp_path):
    from typer.testing import CliRunner

    from suanli.cli import app

    samples, failures = _synthetic_fleet(seed=11, gpus=30)
    samples_path, failures_path = tmp_path / "dcgm.jsonl", tmp_path / "failures.json"
    samples_path.write_text("\n".join(json.dumps(s.model_dump()) for s in samples))
    failures_path.write_text(json.dumps([f.model_dump() for f in failures]))
    args = ["ft", "predict", "telemetry", "--samples", str(samples_path), "--failures", str(failures_path)]
    result = CliRunner().invoke(app, [*args, "--horizon-h", "12", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["alarms"]["recall"] > 0.6 and 0 < report["plan_recall"] < 1
    missing = CliRunner().invoke(
        app, ["ft", "predict", "telemetry", "--samples", "nope.csv", "--failures", "x.csv"]
    )
    assert missing.exit_code == 2 and "nope.csv: file not found" in missing.output
