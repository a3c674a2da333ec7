"""`suanli perf predict` on a CSV with broken rows: one line per bad row (row number, id, field and
cause), the good rows predicted, no traceback."""

from pathlib import Path

from typer.testing import CliRunner

from suanli.cli import app
from suanli.spec.datasets import dataset_path

runner = CliRunner()


def test_bad_rows_are_reported_one_line_each_and_the_rest_predicted(tmp_path: Path):
    lines = dataset_path("training_runs/heldout_runs.csv").read_bytes().splitlines()
    header, good, layers, seq, text = lines[0], lines[4], lines[5], lines[6], lines[7]
    layers = layers.replace(b",96,12288,", b",1e12,12288,", 1)
    seq = seq.replace(b",51200,2048,", b",51200,nan,", 1)
    text = text.replace(b"GPT-1T", b"GPT-\xff1T", 1)
    runs = tmp_path / "runs.csv"
    runs.write_bytes(b"\n".join([header, good, layers, seq, text]) + b"\n")
    result = runner.invoke(app, ["perf", "predict", str(runs)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "korthikanti-22b" in result.output
    reported = [line for line in result.output.splitlines() if line.startswith("not predicted")]
    assert reported == [
        "not predicted: row 3 (korthikanti-175b): n_layers (1e12 is outside 1..10,000)",
        "not predicted: row 4 (korthikanti-530b): seq_len ('nan' is not a number)",
        "not predicted: row 5 (korthikanti-1t): model_name (bytes that are not UTF-8)",
    ]
