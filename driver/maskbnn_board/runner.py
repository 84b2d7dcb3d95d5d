"""Run a folder of images (and the golden vectors) through an accelerator and score the results."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskbnn_board.accelerator import Accelerator
from maskbnn_board.backend_emulate import EmulatedAccelerator
from maskbnn_board.backend_pynq import PynqAccelerator
from maskbnn_board.deployment import Deployment
from maskbnn_board.errors import DriverError
from maskbnn_board.preprocess import Skipped, iter_batches, label_from_filename, list_images

BACKENDS = ("pynq", "emulate")


def open_accelerator(deployment: Deployment, backend: str, batch_size: int) -> Accelerator:
    """The accelerator for a backend name; imports pynq only for the board backend."""
    if backend == "emulate":
        return EmulatedAccelerator(deployment, batch_size)
    if backend == "pynq":
        return PynqAccelerator(deployment, batch_size)
    raise DriverError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


class _NoBar:
    """Stand-in when tqdm is not installed on the board: progress is optional, results are not."""

    def __init__(self, *args, **kwargs):
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool = True):
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(total=total, desc=desc, unit="img")
        except ImportError:
            pass
    return _NoBar()


@dataclass
class RunResult:
    """Per-image predictions and the summary the CLI prints and writes."""

    rows: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def run_images(
    acc: Accelerator,
    deployment: Deployment,
    images_dir: Path,
    limit: int | None = None,
    progress: bool = True,
) -> RunResult:
    """Predict every readable image under ``images_dir``; skip unreadable ones with a reason."""
    images_dir = Path(images_dir)
    files = list_images(images_dir)[:limit] if limit else list_images(images_dir)
    golden = _golden_by_name(deployment)
    classes = acc.settings.classes
    result = RunResult()
    bar = progress_bar(len(files), "images", progress)
    acc.reset_timings()
    t0 = time.perf_counter()
    for used, x, skipped in iter_batches(files, acc.batch_size, acc.settings.image_size):
        result.skipped.extend(skipped)
        if len(x):
            out = acc.execute(x)
            pred = acc.predict(out)
            for p, o, k in zip(used, out, pred):  # noqa: B905 (no strict= before 3.10)
                label = label_from_filename(p)
                row = {
                    "file": str(p.relative_to(images_dir)),
                    "prediction": int(k),
                    "class": classes[k] if 0 <= k < len(classes) else f"?{k}",
                    "label": "" if label is None else label,
                    "correct": "" if label is None else int(label == k),
                    "output": " ".join(str(int(v)) for v in np.ravel(o)),
                    "golden_match": "",
                }
                if golden is not None and p.name in golden:
                    row["golden_match"] = int(np.array_equal(o, golden[p.name]))
                result.rows.append(row)
        bar.update(len(used) + len(skipped))
    bar.close()
    wall = time.perf_counter() - t0
    result.summary = _summarise(result, acc, wall)
    return result


def _golden_by_name(deployment: Deployment) -> dict[str, np.ndarray] | None:
    if not deployment.manifest.get("golden"):
        return None
    g = deployment.golden()
    return {Path(n).name: y for n, y in zip(g.names, g.expected)}  # noqa: B905


def _summarise(result: RunResult, acc: Accelerator, wall: float) -> dict:
    rows = result.rows
    labelled = [r for r in rows if r["correct"] != ""]
    matched = [r for r in rows if r["golden_match"] != ""]
    per_class: dict[str, dict] = {}
    for r in labelled:
        name = acc.settings.classes[int(r["label"])]
        c = per_class.setdefault(name, {"n": 0, "correct": 0})
        c["n"] += 1
        c["correct"] += int(r["correct"])
    return {
        "images": len(rows),
        "skipped": [{"file": str(s.path), "reason": s.reason} for s in result.skipped],
        "labelled": len(labelled),
        "accuracy": (100.0 * sum(int(r["correct"]) for r in labelled) / len(labelled))
        if labelled
        else None,
        "per_class_accuracy": {k: 100.0 * v["correct"] / v["n"] for k, v in per_class.items()},
        "golden_compared": len(matched),
        "golden_agreeing": sum(int(r["golden_match"]) for r in matched),
        "golden_mismatches": [r["file"] for r in matched if not r["golden_match"]][:20],
        "wall_s": wall,
        "images_per_s_end_to_end": len(rows) / wall if wall > 0 else None,
        "accelerator": acc.timing_report(),
    }


def check_golden(acc: Accelerator, deployment: Deployment, progress: bool = True) -> dict:
    """Run the golden inputs through the accelerator; exact comparison with expected outputs."""
    g = deployment.golden()
    acc.reset_timings()
    outs = []
    bar = progress_bar(len(g.inputs), "golden", progress)
    for start in range(0, len(g.inputs), acc.batch_size):
        chunk = g.inputs[start : start + acc.batch_size]
        outs.append(acc.execute(chunk))
        bar.update(len(chunk))
    bar.close()
    out = np.concatenate(outs) if outs else np.zeros_like(g.expected)
    equal = np.all(out.reshape(len(out), -1) == g.expected.reshape(len(out), -1), axis=1)
    bad = np.flatnonzero(~equal)
    report = {
        "golden_images": int(len(out)),
        "golden_agreeing": int(equal.sum()),
        "agreement_percent": 100.0 * float(equal.mean()) if len(out) else None,
        "first_mismatches": [
            {
                "name": g.names[i],
                "expected": np.ravel(g.expected[i]).tolist(),
                "got": np.ravel(out[i]).tolist(),
            }
            for i in bad[:10]
        ],
        "accelerator": acc.timing_report(),
    }
    if g.labels is not None:
        pred = acc.predict(out)
        known = g.labels >= 0
        if known.any():
            report["golden_label_accuracy"] = 100.0 * float((pred[known] == g.labels[known]).mean())
    return report


def write_results(result: RunResult, out_dir: Path, extra: dict | None = None) -> tuple[Path, Path]:
    """predictions.csv and summary.json in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "predictions.csv"
    fields = ["file", "prediction", "class", "label", "correct", "golden_match", "output"]
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(result.rows)
    summary = dict(result.summary)
    if extra:
        summary.update(extra)
    json_path = out_dir / "summary.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    return csv_path, json_path
