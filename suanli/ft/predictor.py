"""Failure predictor: a risk score per GPU or node, trained and evaluated with a time-based split.

Three sources, one idea (train on the past, score the future, report what it is worth):

- history: a Cox proportional-hazards model of GPU lifetimes on ORNL Titan (Ostrouchov et al.,
  "GPU Lifetimes on Titan Supercomputer: Survival Analysis and Reliability", SC'20), fitted at
  one landmark date and evaluated at a later one (concordance);
- logs: an alert detector on the Loghub BGL sample (Oliner & Stearley, DSN'07; Zhu et al.,
  ISSRE'23), trained on the earlier 70 % of lines and tested on the rest (precision/recall);
- telemetry: DCGM-modelled samples (`suanli.ft.telemetry`), so a centre can train on its own.

An alarm's precision and recall are what `suanli.ft.interval` takes as `precision` and `recall`;
`suanli.ft.interval.should_checkpoint_now` turns a calibrated risk into a proactive checkpoint.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceWarning
from lifelines.utils import concordance_index
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from suanli.ft.telemetry.schema import CRITICAL_XIDS, FailureRecord, GpuSample
from suanli.spec.datasets import read_text
from suanli.spec.errors import SpecError

# Under datasets/ (see failure/SOURCE.md); a path given instead is read as it is.
TITAN_STAYS = "failure/titan_gpu_stays.csv"
BGL_SAMPLE = "failure/bgl_2k_structured.csv"
DAY_S = 86_400.0
# Titan location names read c<col>-<row>c<cage>s<slot>n<node>: cabinet column and row, cage
# (0 bottom .. 2 top of the cabinet, where the air is hottest), slot (blade) and node on the blade.
TITAN_LOCATION = re.compile(r"c(\d+)-(\d+)c(\d)s(\d)n(\d)")
TITAN_LOCATION_FEATURES = ("col", "row", "slot", "cage_1", "cage_2", "node_1", "node_2", "node_3")
TITAN_FEATURES = (*TITAN_LOCATION_FEATURES, "age_days", "log_prior_stays", "any_prior_failure")


@dataclass(frozen=True)
class AlarmQuality:
    """How good alarms raised at `threshold` are: the predictor's precision and recall."""

    threshold: float
    alarms: int
    failures: int
    true_alarms: int

    @property
    def precision(self) -> float:
        return self.true_alarms / self.alarms if self.alarms else 0.0

    @property
    def recall(self) -> float:
        return self.true_alarms / self.failures if self.failures else 0.0


def alarm_quality(score: np.ndarray, failed: np.ndarray, threshold: float) -> AlarmQuality:
    """Alarm wherever score >= threshold; compare with what failed."""
    alarm = np.asarray(score) >= threshold
    failed = np.asarray(failed, dtype=bool)
    return AlarmQuality(threshold, int(alarm.sum()), int(failed.sum()), int((alarm & failed).sum()))


def alarm_quality_at_top(score: np.ndarray, failed: np.ndarray, fraction: float) -> AlarmQuality:
    """Alarm on the `fraction` of units with the highest scores (e.g. the 5 % riskiest GPUs)."""
    if not 0.0 < fraction <= 1.0:
        raise SpecError(f"fraction must be in (0, 1], got {fraction!r}")
    threshold = float(np.quantile(np.asarray(score), 1.0 - fraction))
    return alarm_quality(score, failed, threshold)


# --- history: Titan GPU lifetimes ---------------------------------------------------------------


def load_titan_stays(path: Path | str = TITAN_STAYS) -> pd.DataFrame:
    """One row per stay of a GPU (serial `SN`) at a location, with its location parsed.

    A stay with no recorded insert began before the records did; it starts at the first record.
    `failed` marks a stay that ended in a double-bit ECC error (DBE) or the GPU falling off the bus (OTB).
    """
    stays = pd.read_csv(io.StringIO(read_text(path)), dtype={"SN": str, "event": str})
    stays["insert"] = pd.to_datetime(stays["insert"])
    stays["remove"] = pd.to_datetime(stays["remove"])
    stays["insert"] = stays["insert"].fillna(stays["insert"].min())
    location = stays["location"].str.extract(TITAN_LOCATION)
    if location.isna().any().any():
        bad = stays.loc[location.isna().any(axis=1), "location"].iloc[0]
        raise SpecError(f"{path}: location {bad!r} is not c<col>-<row>c<cage>s<slot>n<node>")
    stays[["col", "row", "cage", "slot", "node"]] = location.astype(int).to_numpy()
    stays["failed"] = stays["event"].notna()
    return stays


def titan_landmark(stays: pd.DataFrame, landmark: str, horizon_days: float) -> pd.DataFrame:
    """Every GPU in service at `landmark`, with what was known then and what happened next.

    Features use only records before the landmark: location, age since first install, earlier
    stays (moves and reinstalls) and earlier failures. The outcome is the first failure within
    `horizon_days` after the landmark; a GPU last removed without failure is censored there.
    """
    at = pd.Timestamp(landmark)
    horizon = at + pd.Timedelta(days=horizon_days)
    current = stays[(stays["insert"] <= at) & (stays["remove"] > at)].drop_duplicates("SN").copy()
    before = stays[stays["insert"] <= at]
    # log: one spare GPU was moved 105 times, and a raw count lets it dominate the fit.
    current["log_prior_stays"] = np.log1p(current["SN"].map(before.groupby("SN").size()) - 1)
    failed_before = stays[stays["failed"] & (stays["remove"] <= at)].groupby("SN").size()
    current["any_prior_failure"] = current["SN"].isin(failed_before.index).astype(float)
    current["age_days"] = (
        at - current["SN"].map(stays.groupby("SN")["insert"].min())
    ).dt.total_seconds() / DAY_S
    for column, values in (("cage", (1, 2)), ("node", (1, 2, 3))):
        for value in values:
            current[f"{column}_{value}"] = (current[column] == value).astype(float)

    after = stays[(stays["remove"] > at) & stays["SN"].isin(current["SN"])]
    first_failure = current["SN"].map(after[after["failed"]].groupby("SN")["remove"].min())
    last_seen = current["SN"].map(after.groupby("SN")["remove"].max())
    event = first_failure.notna() & (first_failure <= horizon)
    stop = first_failure.where(event, last_seen.clip(upper=horizon))
    current["duration_days"] = ((stop - at).dt.total_seconds() / DAY_S).clip(lower=1e-3)
    current["event"] = event
    return current.reset_index(drop=True)


@dataclass
class SurvivalRiskModel:
    """Cox proportional hazards over the given features (lifelines), penalised for stability."""

    fitter: CoxPHFitter
    features: tuple[str, ...]

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, features: tuple[str, ...] = TITAN_FEATURES, penalizer: float = 0.001
    ) -> SurvivalRiskModel:
        columns = [*features, "duration_days", "event"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitter = CoxPHFitter(penalizer=penalizer).fit(frame[columns], "duration_days", "event")
        return cls(fitter, features)

    def risk(self, frame: pd.DataFrame) -> np.ndarray:
        """Relative hazard: higher fails sooner."""
        return self.fitter.predict_partial_hazard(frame[list(self.features)]).to_numpy()

    def failure_probability(self, frame: pd.DataFrame, within_days: float) -> np.ndarray:
        """Probability of failing within `within_days` of the landmark: 1 - S(t | features)."""
        survival = self.fitter.predict_survival_function(frame[list(self.features)], times=[within_days])
        return 1.0 - survival.to_numpy()[0]

    def concordance(self, frame: pd.DataFrame) -> float:
        """Harrell's C on `frame`: 0.5 is chance, 1.0 ranks every pair of failures right."""
        return float(concordance_index(frame["duration_days"], -self.risk(frame), frame["event"]))


@dataclass(frozen=True)
class TitanReport:
    train_landmark: str
    test_landmark: str
    train_gpus: int
    test_gpus: int
    test_failures: int
    concordance_train: float
    concordance_test: float
    concordance_test_age_only: float
    concordance_test_location_only: float
    alarms_top5pct_30d: AlarmQuality
    coefficients: dict[str, float]


def evaluate_titan(
    train_landmark: str = "2016-01-01",
    test_landmark: str = "2017-01-01",
    horizon_days: float = 365.0,
    path: Path | str = TITAN_STAYS,
) -> TitanReport:
    """Fit at one landmark, evaluate on the GPUs in service at a later one (no future leaks)."""
    if pd.Timestamp(train_landmark) + pd.Timedelta(days=horizon_days) > pd.Timestamp(test_landmark):
        raise SpecError("the training window must end before the test landmark (time-based split)")
    stays = load_titan_stays(path)
    train = titan_landmark(stays, train_landmark, horizon_days)
    test = titan_landmark(stays, test_landmark, horizon_days)
    model = SurvivalRiskModel.fit(train)
    age_only = SurvivalRiskModel.fit(train, ("age_days",))
    location_only = SurvivalRiskModel.fit(train, TITAN_LOCATION_FEATURES)
    failed_30d = (test["event"] & (test["duration_days"] <= 30)).to_numpy()
    return TitanReport(
        train_landmark=train_landmark,
        test_landmark=test_landmark,
        train_gpus=len(train),
        test_gpus=len(test),
        test_failures=int(test["event"].sum()),
        concordance_train=model.concordance(train),
        concordance_test=model.concordance(test),
        concordance_test_age_only=age_only.concordance(test),
        concordance_test_location_only=location_only.concordance(test),
        alarms_top5pct_30d=alarm_quality_at_top(model.failure_probability(test, 30.0), failed_30d, 0.05),
        coefficients={name: float(value) for name, value in model.fitter.params_.items()},
    )


# --- logs: BGL alert detector -------------------------------------------------------------------

NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")


def log_text(component: str, level: str, content: str) -> str:
    """What the detector reads of a line: component, level and message, numbers masked."""
    return f"component_{component} level_{level} {NUMBERS.sub(' NUM ', content)}"


def load_bgl(path: Path | str = BGL_SAMPLE) -> pd.DataFrame:
    """Loghub BGL lines in time order; `alert` is True where the first column names an alert category."""
    lines = pd.read_csv(io.StringIO(read_text(path)))
    lines = lines.sort_values("Timestamp", kind="stable").reset_index(drop=True)
    lines["alert"] = lines["Label"] != "-"
    lines["text"] = [
        log_text(c, lv, m)
        for c, lv, m in zip(lines["Component"], lines["Level"], lines["Content"], strict=True)
    ]
    return lines


def log_alert_detector() -> Pipeline:
    """TF-IDF over words and word pairs, then a class-balanced logistic regression."""
    return make_pipeline(
        TfidfVectorizer(token_pattern=r"[A-Za-z_]+", ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        LogisticRegression(class_weight="balanced", max_iter=2000),
    )


@dataclass(frozen=True)
class LogReport:
    train_lines: int
    test_lines: int
    detector: AlarmQuality
    fatal_level_baseline: AlarmQuality
    unseen_test_categories: tuple[str, ...]
    missed_by_category: dict[str, int]


def evaluate_bgl(
    train_fraction: float = 0.7, threshold: float = 0.5, path: Path | str = BGL_SAMPLE
) -> LogReport:
    """Train on the earliest lines, test on the latest; compare with 'every FATAL line is an alert'."""
    if not 0.0 < train_fraction < 1.0:
        raise SpecError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    lines = load_bgl(path)
    cut = int(len(lines) * train_fraction)
    train, test = lines.iloc[:cut], lines.iloc[cut:]
    detector = log_alert_detector().fit(train["text"], train["alert"])
    probability = detector.predict_proba(test["text"])[:, 1]
    flagged = probability >= threshold
    missed = test[test["alert"].to_numpy() & ~flagged]
    return LogReport(
        train_lines=len(train),
        test_lines=len(test),
        detector=alarm_quality(probability, test["alert"], threshold),
        fatal_level_baseline=alarm_quality((test["Level"] == "FATAL").astype(float), test["alert"], 1.0),
        unseen_test_categories=tuple(sorted(set(test.loc[test["alert"], "Label"]) - set(train["Label"]))),
        missed_by_category={str(k): int(v) for k, v in missed["Label"].value_counts().items()},
    )


# --- telemetry: a centre's own DCGM readings ----------------------------------------------------

TELEMETRY_FEATURES = (
    "sbe_increase",
    "dbe_increase",
    "remapped_rows_increase",
    "nvlink_errors_increase",
    "row_remap_pending",
    "row_remap_failure",
    "critical_xid",
    "any_xid",
    "gpu_temp_c",
    "memory_temp_c",
    "power_usage_w",
)
NVLINK_COUNTERS = (
    "nvlink_crc_flit_errors_total",
    "nvlink_replay_errors_total",
    "nvlink_recovery_errors_total",
)


def telemetry_frame(
    samples: list[GpuSample], failures: list[FailureRecord], horizon_s: float
) -> pd.DataFrame:
    """One row per sample: counter increments since the GPU's previous sample, flags, readings,
    and `fails_soon`: whether this GPU (or its whole node) failed within `horizon_s` after it."""
    if horizon_s <= 0:
        raise SpecError(f"horizon_s must be > 0, got {horizon_s!r}")
    frame = pd.DataFrame([sample.model_dump() for sample in samples])
    frame = frame.sort_values(["node", "gpu", "timestamp_s"], kind="stable").reset_index(drop=True)
    frame["nvlink_errors_total"] = frame[list(NVLINK_COUNTERS)].sum(axis=1)
    frame["remapped_rows_total"] = frame["uncorrectable_remapped_rows"] + frame["correctable_remapped_rows"]
    per_gpu = frame.groupby(["node", "gpu"], sort=False)
    for counter, increase in (
        ("ecc_sbe_volatile_total", "sbe_increase"),
        ("ecc_dbe_volatile_total", "dbe_increase"),
        ("remapped_rows_total", "remapped_rows_increase"),
        ("nvlink_errors_total", "nvlink_errors_increase"),
    ):
        # A counter that goes down was reset (driver reload, GPU reset): count from zero again.
        difference = per_gpu[counter].diff()
        frame[increase] = difference.where(difference.isna() | (difference >= 0), frame[counter]).fillna(0.0)
    frame["critical_xid"] = frame["xid"].isin(CRITICAL_XIDS).astype(float)
    frame["any_xid"] = (frame["xid"] != 0).astype(float)
    for reading in ("gpu_temp_c", "memory_temp_c", "power_usage_w"):
        values = frame[reading].astype(float)
        frame[reading] = values.fillna(values.median() if values.notna().any() else 0.0)
    for flag in ("row_remap_pending", "row_remap_failure"):
        frame[flag] = frame[flag].astype(float)

    fails_soon = np.zeros(len(frame), dtype=bool)
    for failure in failures:
        same_unit = frame["node"].eq(failure.node)
        if failure.gpu is not None:
            same_unit &= frame["gpu"].eq(failure.gpu)
        before = (frame["timestamp_s"] < failure.timestamp_s) & (
            frame["timestamp_s"] >= failure.timestamp_s - horizon_s
        )
        fails_soon |= (same_unit & before).to_numpy()
    frame["fails_soon"] = fails_soon
    return frame


@dataclass
class TelemetryRiskModel:
    """Probability that a GPU fails within the horizon, from one telemetry sample.

    Scaled features and a plain (unweighted) logistic regression, so the output stays a
    probability that `should_checkpoint_now` can use.
    """

    pipeline: Pipeline

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> TelemetryRiskModel:
        if frame["fails_soon"].nunique() < 2:
            raise SpecError("training telemetry needs samples both before failures and far from them")
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        return cls(pipeline.fit(frame[list(TELEMETRY_FEATURES)], frame["fails_soon"]))

    def failure_probability(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(frame[list(TELEMETRY_FEATURES)])[:, 1]


@dataclass(frozen=True)
class TelemetryReport:
    horizon_s: float
    train_samples: int
    test_samples: int
    test_failing_samples: int
    alarms: AlarmQuality


def evaluate_telemetry(
    samples: list[GpuSample],
    failures: list[FailureRecord],
    horizon_s: float = 24 * 3600.0,
    train_fraction: float = 0.7,
    threshold: float = 0.5,
) -> tuple[TelemetryRiskModel, TelemetryReport]:
    """Train on the earliest `train_fraction` of time, report alarms on the rest."""
    if not 0.0 < train_fraction < 1.0:
        raise SpecError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    frame = telemetry_frame(samples, failures, horizon_s)
    cut_s = frame["timestamp_s"].quantile(train_fraction)
    train, test = frame[frame["timestamp_s"] <= cut_s], frame[frame["timestamp_s"] > cut_s]
    if test.empty:
        raise SpecError("no telemetry after the training period to test on")
    model = TelemetryRiskModel.fit(train)
    report = TelemetryReport(
        horizon_s=horizon_s,
        train_samples=len(train),
        test_samples=len(test),
        test_failing_samples=int(test["fails_soon"].sum()),
        alarms=alarm_quality(model.failure_probability(test), test["fails_soon"], threshold),
    )
    return model, report
