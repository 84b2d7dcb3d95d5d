"""Data stage: prepare a MaskedFace-Net folder, summarise a prepared one, or cut a sample.

maskbnn data prepare --source DIR --out DIR [--layout L] [--per-class N | --keep-all] [--workers N]
maskbnn data summary DIR
maskbnn data sample --source DIR --out DIR --per-class N [--split test]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from maskbnn.errors import UserError
from maskbnn.pipeline.data.maskedface import CLASSES, LAYOUTS, scan
from maskbnn.report import md_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    prep = sub.add_parser("prepare", help="prepare a MaskedFace-Net folder for training")
    prep.add_argument("--source", type=Path, required=True)
    prep.add_argument("--out", type=Path, required=True)
    prep.add_argument("--layout", choices=LAYOUTS, help="default: detect")
    prep.add_argument("--per-class", type=int, help="default: the smallest class's count")
    prep.add_argument(
        "--keep-all",
        action="store_true",
        help="keep every readable image (classes unbalanced; see train --class-balance)",
    )
    prep.add_argument("--test-fraction", type=float, default=0.2)
    prep.add_argument("--image-size", type=int, default=32)
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--workers", type=int, default=0, help="decoding processes (0: one per core)")
    summ = sub.add_parser("summary", help="print a prepared dataset's manifest")
    summ.add_argument("folder", type=Path)
    samp = sub.add_parser("sample", help="copy a class-balanced subset in the original layout")
    samp.add_argument("--source", type=Path, required=True)
    samp.add_argument("--out", type=Path, required=True)
    samp.add_argument("--test-per-class", type=int, required=True)
    samp.add_argument("--train-per-class", type=int, default=0)
    samp.add_argument("--test-fraction", type=float, default=0.2)
    samp.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        from maskbnn.pipeline.data.prepare import PrepareParams, prepare

        params = PrepareParams(
            args.per_class,
            args.test_fraction,
            args.image_size,
            args.seed,
            args.layout,
            args.workers,
            args.keep_all,
        )
        manifest = prepare(args.source, args.out, params)
        print(format_summary(manifest))
        if manifest["decoded_by_an_interrupted_run"]:
            print(
                f"resumed: {manifest['decoded_by_an_interrupted_run']} images were decoded before"
            )
        print(f"wrote {args.out / 'dataset.npz'} and manifest.json in {manifest['seconds']} s")
    elif args.action == "summary":
        path = args.folder / "manifest.json"
        if not path.is_file():
            raise UserError(
                f"{args.folder} has no manifest.json; run "
                f"`maskbnn data prepare --source DIR --out {args.folder}` first"
            )
        print(format_summary(json.loads(path.read_text())))
    else:
        per_side = {"test": args.test_per_class, "train": args.train_per_class}
        sample(args.source, args.out, per_side, args.test_fraction, args.seed)
    return 0


def format_summary(m: dict) -> str:
    """A Markdown table of counts per class and split, plus the provenance lines."""
    lines = [
        f"source: {m['source']} ({m['layout']} layout)",
        f"images: {m['total']}  size: {m['params']['image_size']}px  "
        f"split: {m['params']['split']}  seed: {m['params']['seed']}",
        f"content sha256: {m['content_sha256'][:16]}…  skipped: {len(m['skipped'])}",
        "",
    ]
    train, test = m["counts"]["train"], m["counts"]["test"]
    rows = [(c, train[c], test[c]) for c in m["classes"]]
    rows.append(("total", sum(train.values()), sum(test.values())))
    return "\n".join(lines + md_table(("class", "train", "test"), rows, align="lrr"))


def sample(
    source: Path, out: Path, per_side: dict[str, int], test_fraction: float, seed: int
) -> None:
    """Copy a class-balanced subset, `per_side[side]` files per class from each side of the
    face-disjoint split, in the original layout (CMFD/, IMFD/). Preparing the copy with the same
    seed and test fraction puts every file back on the side it came from."""
    import numpy as np

    from maskbnn.pipeline.data.prepare import split_of

    layout, items, _ = scan(source)
    if layout == "cifar-pickle":
        raise UserError("sampling copies image files; a pickle source has none")
    rng = np.random.default_rng(seed)
    copied = 0
    for c, name in enumerate(CLASSES):
        for side, n in per_side.items():
            pool = [
                it
                for it in items
                if it.label == c and split_of(it.face, seed, test_fraction) == side
            ]
            if len(pool) < n:
                raise UserError(
                    f"class {name}: only {len(pool)} images on the {side} side, {n} asked"
                )
            for i in sorted(rng.choice(len(pool), n, replace=False)):
                dst = out / ("CMFD" if c == 0 else "IMFD") / pool[i].path.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(pool[i].path, dst)
                copied += 1
    print(f"copied {copied} images to {out}")
