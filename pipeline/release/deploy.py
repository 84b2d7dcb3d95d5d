"""Deploy step: assemble what a PYNQ board needs into one folder and one archive.

Output (``build/deploy/<net>_<board>/`` and ``<net>_<board>.tar.gz`` beside it)::

    README.md                         the three commands to run on the board
    maskbnn_board-<v>-py3-none-any.whl the driver (numpy + pillow; pynq on the board)
    samples/                          a few real MaskedFace-Net images
    deploy/                           the deployment folder ``maskbnn-board --deploy`` reads
        manifest.json                 sha256 of every file below, network, board, clock, checks
        settings.json                 FINN+-style driver settings (+ a ``maskbnn`` section)
        program.npz                   the hardware-graph program for the emulation backend
        accelerator.bit/.hwh          from `make bitstream`'s release of this very hardware graph
        golden/inputs.npy ...         pre-processed images, expected accelerator outputs, names

Golden expected outputs are the hardware-graph program's outputs (the function `make verify`
proves equal to Brevitas); the step refuses to deploy when their top-1 differs from the Brevitas
model's on any golden image, so golden vectors and verification cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from maskbnn.config import load_network_config
from maskbnn.errors import UserError, VerificationError
from maskbnn.models.checkpoint import pretrained_path
from maskbnn.paths import BUILD_DIR, REPO_ROOT, SAMPLE_DIR
from maskbnn.pipeline.builddir import BuildDir, bitstream_dir
from maskbnn.pipeline.data.maskedface import (
    CLASSES,
    IMAGE_EXTENSIONS,
    decode_file,
    label_from_filename,
)
from maskbnn.pipeline.export.qonnx_export import build_weights_hash, load_model
from maskbnn.pipeline.export.qonnx_export import weights_hash as hash_of
from maskbnn.pipeline.release.atomic import staged_file, staged_folder
from maskbnn.pipeline.release.settings import settings_from_finn_driver, settings_from_hw_model
from maskbnn.pipeline.verify.gate import verified_build
from maskbnn_board.deployment import FORMAT
from maskbnn_board.hwexec import HardwareProgram
from maskbnn_board.manifest import MANIFEST, file_problems, sha256_of, write_manifest

DRIVER_DIR = REPO_ROOT / "driver"
BOARDS = ("Pynq-Z1", "Pynq-Z2")


# --- golden vectors ----------------------------------------------------------------------------


def list_sample_images(folder: Path) -> list[Path]:
    files = sorted(
        p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise UserError(f"{folder}: no images for the golden vectors")
    names = [p.name for p in files]
    if len(set(names)) != len(names):
        raise UserError(f"{folder}: file names repeat; golden vectors are matched by file name")
    return files


def golden_inputs(files: list[Path], size: int = 32) -> np.ndarray:
    """Decode and pre-process with the one function training and the board driver use."""
    out = np.empty((len(files), size, size, 3), np.uint8)
    for i, p in enumerate(files):
        out[i] = decode_file(p, size)
    return out


def load_program(path: Path):
    """The hardware-graph program through the driver's own executor (numpy only)."""
    return HardwareProgram.load(path)


def brevitas_top1(
    network: str, x: np.ndarray, checkpoint: Path | None, weights_hash: str | None
) -> tuple[np.ndarray | None, str]:
    """Top-1 of the Brevitas model on uint8 NHWC images, and which weights gave it.

    Only weights whose hash equals the build's (``weights_hash``, from the export's file name) are
    a valid reference; otherwise (None, reason).
    """
    import torch

    try:
        path = Path(checkpoint) if checkpoint else pretrained_path(network)
    except UserError as err:
        return None, f"not checked: {err}"
    if not path.is_file():
        return None, f"not checked: no weights at {path}"
    model = load_model(network, path)
    digest = hash_of(model)
    if weights_hash and digest != weights_hash:
        return None, (
            f"not checked: {path.name} has weights {digest}, the build was made from "
            f"{weights_hash} (pass that checkpoint with --checkpoint)"
        )
    preds = []
    with torch.no_grad():
        for s in range(0, len(x), 250):
            t = torch.from_numpy(x[s : s + 250]).permute(0, 3, 1, 2).float() / 255.0
            preds.append(model(t).argmax(dim=1).numpy())
    return np.concatenate(preds).astype(np.int64), f"{path.name} (weights {digest})"


def predictions_from_outputs(outputs: np.ndarray, output_kind: str) -> np.ndarray:
    flat = outputs.reshape(len(outputs), -1)
    return (flat[:, 0] if output_kind == "label" else np.argmax(flat, axis=1)).astype(np.int64)


# --- assembling --------------------------------------------------------------------------------

GOLDEN_FILES = {
    "inputs": "golden/inputs.npy",
    "expected": "golden/expected.npy",
    "labels": "golden/labels.npy",
    "names": "golden/names.json",
}


def build_wheel(out_dir: Path) -> Path:
    """The driver wheel, built offline with this venv's setuptools from a copy of driver/ (pip
    builds in the source tree, and driver/ should not collect build/ and egg-info leftovers)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".wheel-build"
    shutil.rmtree(tmp, ignore_errors=True)
    src = tmp / "driver"
    shutil.copytree(
        DRIVER_DIR, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
           "-w", str(tmp), str(src)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(tmp.glob("maskbnn_board-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise UserError(f"building the driver wheel failed:\n{proc.stderr[-2000:]}")
    dest = out_dir / wheels[0].name
    shutil.move(str(wheels[0]), dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


NOTEBOOK = DRIVER_DIR / "notebooks" / "maskbnn_board.ipynb"


def add_notebook(out: Path) -> Path:
    """The board notebook (PYNQ boards serve Jupyter), beside deploy/ and samples/ it reads."""
    dest = out / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, dest)
    return dest


BOARD_README = """# {net} on {board}: maskbnn board package

Contents: `deploy/` (settings, golden vectors, emulation program{bit_note}), `samples/`
({n_samples} real MaskedFace-Net images), the driver wheel `{wheel}`.

On the board (PYNQ image, as root because PYNQ maps the FPGA and DMA memory):

```
pip3 install {wheel}
maskbnn-board run --deploy deploy --images samples --golden
maskbnn-board throughput --deploy deploy
```

The first command installs the driver (numpy and pillow; the board image already has pynq). The
second loads the bitstream, runs the sample images and the {n_golden} golden vectors through the
accelerator, and writes `maskbnn-board-results/predictions.csv` and `summary.json` (accuracy from the
file names, exact agreement with the golden vectors; exit code 3 on any disagreement). The third
prints images/s, latency and the host / transfer / compute split.

{bit_status}

Anywhere else (a laptop, CI): add `--backend emulate` to run the same driver path with the
bit-exact software model of the accelerator.

Or open `maskbnn_board.ipynb` in the board's Jupyter (after the `pip3 install`): it classifies the
samples and shows the faces, the confusion matrix, the golden agreement and images/s.

Built {date} for clock {clock} MHz. Files and sha256: `deploy/manifest.json`.
"""


def write_golden(
    dep: Path,
    settings: dict,
    images: Path,
    net: str,
    checkpoint: Path | None,
    weights_hash: str | None,
) -> tuple[list[Path], dict]:
    """golden/: real images pre-processed as in training, the program's outputs for them, labels
    and names; the outputs' top-1 must equal the Brevitas model's. Returns (files, checks)."""
    files = list_sample_images(images)
    x = golden_inputs(files)
    program_obj = load_program(dep / "program.npz")
    io = settings["driver_information"]["io_shape_dict"]
    want_in, want_odt = tuple(io["ishape_normal"][0][1:]), io["odt"][0]
    if tuple(program_obj.input_shape) != want_in or f"'{program_obj.output_dtype}'" not in want_odt:
        raise UserError(
            f"the program ({program_obj.input_shape} in, {program_obj.output_dtype} out) and the "
            f"settings ({want_in} in, {want_odt} out) come from different builds: re-run `make build`"
        )
    expected = np.asarray(program_obj.run(x))
    out_normal = settings["driver_information"]["io_shape_dict"]["oshape_normal"][0][1:]
    if expected.size != len(x) * int(np.prod(out_normal)):
        raise UserError(
            f"program outputs {expected.shape} do not match the settings' output shape {out_normal}"
        )
    expected = np.rint(expected).astype(np.int64).reshape(len(x), *out_normal)
    kind = settings["maskbnn"]["output"]
    pred = predictions_from_outputs(expected, kind)
    labels = np.array([-1 if (lb := label_from_filename(p)) is None else lb for p in files])
    reference, ref_note = brevitas_top1(net, x, checkpoint, weights_hash)
    checks: dict = {"golden_images": len(x), "brevitas_reference": ref_note}
    if reference is not None:
        agree = pred == reference
        checks["brevitas_top1_agreement"] = f"{int(agree.sum())}/{len(x)}"
        if not agree.all():
            bad = [files[i].name for i in np.flatnonzero(~agree)[:10]]
            raise VerificationError(
                f"golden outputs of the program disagree with the Brevitas model on "
                f"{int((~agree).sum())} of {len(x)} images (first: {', '.join(bad)}); "
                f"run `make verify NET={net}` with the build's BOARD to find the stage"
            )
    else:
        print(
            f"warning: golden outputs not cross-checked with Brevitas: {ref_note}", file=sys.stderr
        )
    known = labels >= 0
    if known.any():
        checks["golden_accuracy_percent"] = round(
            100.0 * float((pred[known] == labels[known]).mean()), 3
        )
    np.save(dep / "golden" / "inputs.npy", x)
    np.save(dep / "golden" / "expected.npy", expected)
    np.save(dep / "golden" / "labels.npy", labels.astype(np.int64))
    rel = [str(p.relative_to(images)) for p in files]
    (dep / "golden" / "names.json").write_text(json.dumps(rel, indent=0) + "\n")
    return files, checks


def check_manifest(folder: Path) -> list[str]:
    """Problems with a release manifest's hashes (empty when every listed file is intact)."""
    manifest = json.loads((Path(folder) / MANIFEST).read_text())
    problems = [str(p) for p in file_problems(folder, manifest["files"])]
    exported = manifest.get("exported_model", {})
    if exported.get("path"):
        p = REPO_ROOT / exported["path"]
        if p.is_file() and sha256_of(p) != exported["sha256"]:
            problems.append(f"{exported['path']}: sha256 differs from the exported model")
    return problems


def release_artifacts(
    release: Path, hw_model: Path, net: str, board: str
) -> tuple[Path, Path, float] | None:
    """(bitfile, FINN driver settings, clock MHz) of the release `make bitstream` wrote, None
    when there is none. A release of another hardware graph (another folding included) or a
    damaged one is refused: its bitfile does not implement this build."""
    manifest_path = Path(release) / "manifest.json"
    if not manifest_path.is_file():
        return None
    m = json.loads(manifest_path.read_text())
    where = Path(release)
    if m.get("status") != "complete":
        raise UserError(f"{where} is not complete ({m.get('status')}): run `make bitstream "
                        f"NET={net} BOARD={board}`")  # fmt: skip
    have, want = m.get("hw_model", {}).get("sha256", ""), sha256_of(hw_model)
    if have != want:
        raise UserError(
            f"the bitfile in {where} was built from another hardware graph (sha256 "
            f"{have[:12]}) than this build's {Path(hw_model).name} ({want[:12]}; another "
            f"folding or network): run `make bitstream NET={net} BOARD={board}` again"
        )
    problems = check_manifest(where)
    if problems:
        raise UserError(f"{where} does not match its manifest: {'; '.join(problems)}")
    art = m["artifacts"]
    return where / art["bitstream"], where / art["settings"], round(1000.0 / m["clock_ns"], 3)


def verification_check(
    verification: Path | None, hw_model: Path | None, net: str, board: str
) -> dict:
    """The build's `make verify` report: it must have passed, on this very hardware graph."""
    checks: dict = {}
    if verification is not None and Path(verification).is_file():
        v = json.loads(Path(verification).read_text())
        checks["verification_report"] = {
            "file": Path(verification).name,
            "passed": v.get("passed"),
            "images": v.get("images"),
        }
        if v.get("passed") is False:
            raise VerificationError(f"{verification} reports a failed verification: not deploying")
        if (
            hw_model is not None
            and Path(verification).stat().st_mtime < Path(hw_model).stat().st_mtime
        ):
            raise UserError(
                f"{verification} is older than {Path(hw_model).name}: the build changed after "
                f"it was verified; run `make verify NET={net} BOARD={board}` again"
            )
    return checks


def deploy(
    net: str,
    board: str,
    out_root: Path,
    program: Path,
    hw_model: Path | None = None,
    finn_settings: Path | None = None,
    bitstream: Path | None = None,
    images: Path = SAMPLE_DIR,
    n_samples: int = 16,
    clock_mhz: float | None = None,
    checkpoint: Path | None = None,
    verification: Path | None = None,
    weights_hash: str | None = None,
) -> dict:
    """Assemble the deployment folder and archive, each replacing the previous one only when
    whole; returns the manifest. The clock defaults to the network config's."""
    t0 = time.perf_counter()
    images = Path(images)
    if board not in BOARDS:
        raise UserError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    if not Path(program).is_file():
        raise UserError(
            f"no hardware-graph program at {program}: run `make build NET={net} BOARD={board}` "
            "first (it writes the program the emulation backend and the golden vectors use)"
        )
    name = f"{net}_{board}"
    final = Path(out_root) / name
    if clock_mhz is None:
        clock_mhz = round(1000.0 / load_network_config(net).build.clock_ns, 3)
    with staged_folder(final) as out:
        manifest = _assemble(out, net, board, program, hw_model, finn_settings, bitstream,
                             images, n_samples, clock_mhz, checkpoint, verification,
                             weights_hash)  # fmt: skip
    archive = final.parent / f"{name}.tar.gz"
    with staged_file(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
        tar.add(final, arcname=name)
    manifest["archive"] = str(archive)
    manifest["seconds"] = round(time.perf_counter() - t0, 2)
    return manifest


def _assemble(out: Path, net: str, board: str, program: Path, hw_model: Path | None,
              finn_settings: Path | None, bitstream: Path | None, images: Path,
              n_samples: int, clock_mhz: float, checkpoint: Path | None,
              verification: Path | None, weights_hash: str | None) -> dict:  # fmt: skip
    """The package folder's contents, written into `out`; returns the deploy manifest."""
    dep = out / "deploy"
    (dep / "golden").mkdir(parents=True)

    # settings: a real FINN driver's when a bitstream build produced one, else from the graph
    if finn_settings is not None:
        settings = settings_from_finn_driver(finn_settings, clock_mhz)
    elif hw_model is not None:
        settings = settings_from_hw_model(hw_model, clock_mhz)
    else:
        raise UserError("deploy needs --hw-model (folded hardware graph) or --finn-settings")
    # the driver cross-checks the (unhashed) manifest's identity fields against these
    settings["maskbnn"].update(network=net, board=board)
    (dep / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    shutil.copyfile(program, dep / "program.npz")
    artifacts = {"settings": "settings.json", "program": "program.npz"}

    if bitstream is not None:
        hwh = Path(bitstream).with_suffix(".hwh")
        if not Path(bitstream).is_file() or not hwh.is_file():
            raise UserError(
                f"bitstream {bitstream} needs its {hwh.name} beside it; both must exist"
            )
        shutil.copyfile(bitstream, dep / "accelerator.bit")
        shutil.copyfile(hwh, dep / "accelerator.hwh")
        artifacts.update({"bitstream": "accelerator.bit", "hwh": "accelerator.hwh"})

    files, checks = write_golden(dep, settings, images, net, checkpoint, weights_hash)
    checks.update(verification_check(verification, hw_model, net, board))

    source = images.relative_to(REPO_ROOT) if images.is_relative_to(REPO_ROOT) else images.name
    manifest = write_manifest(
        dep,
        FORMAT,
        {
            "network": net,
            "board": board,
            "clock_mhz": clock_mhz,
            "classes": list(CLASSES),
            "artifacts": artifacts,
            "golden": {**GOLDEN_FILES, "source": str(source)},
            "checks": checks,
        },
    )

    # a few sample images (per class, in file-name order) and the driver wheel
    (out / "samples").mkdir()
    per_class = max(1, n_samples // len(CLASSES))
    taken: dict[int, int] = {}
    for p in files:
        lb = label_from_filename(p)
        if taken.get(lb, 0) < per_class:
            shutil.copyfile(p, out / "samples" / p.name)
            taken[lb] = taken.get(lb, 0) + 1
    wheel = build_wheel(out)
    add_notebook(out)
    bit_status = (
        "This package holds the accelerator bitstream."
        if bitstream is not None
        else "This package holds NO bitstream (it was built without Vivado), so `--backend pynq` "
        "stops with a clear error. To run on the FPGA, build one on a machine with Vivado "
        f"(`make docker-bitstream NET={net}`) and re-run `make deploy`; until then use the "
        "emulation backend below."
    )
    (out / "README.md").write_text(
        BOARD_README.format(
            net=net,
            board=board,
            bit_note=", bitstream" if bitstream is not None else "",
            n_samples=sum(taken.values()),
            wheel=wheel.name,
            n_golden=len(files),
            bit_status=bit_status,
            date=time.strftime("%Y-%m-%d"),
            clock=clock_mhz,
        )
    )
    return manifest


# --- CLI ---------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", required=True, help="network name, e.g. mask_1w1a_0.25")
    p.add_argument("--board", default="Pynq-Z1", choices=BOARDS)
    p.add_argument("--build-dir", type=Path, help="where the build left its artifacts "
                   "(default build/<net>/<board>)")  # fmt: skip
    p.add_argument("--program", type=Path, help="hardware-graph program .npz (default: searched "
                   "in the build dir)")  # fmt: skip
    p.add_argument("--hw-model", type=Path, help="folded hardware-graph ONNX for the settings")
    p.add_argument("--finn-settings", type=Path, help="settings.json of FINN's make_driver step")
    p.add_argument("--release", type=Path, help="`make bitstream`'s release folder: its "
                   "bitfile, FINN driver settings and clock when built from this build's graph "
                   "(default bitstreams/<net>/<board>; none is fine)")  # fmt: skip
    p.add_argument("--images", type=Path, default=SAMPLE_DIR, help="images for golden vectors")
    p.add_argument("--samples", type=int, default=16, help="sample images to ship (default 16)")
    p.add_argument("--clock-mhz", type=float, help="default: the release's, else the config's")
    p.add_argument("--checkpoint", type=Path, help="weights for the Brevitas cross-check "
                   "(default: the shipped pretrained weights)")  # fmt: skip
    p.add_argument("--out", type=Path, default=BUILD_DIR / "deploy")


def run(args: argparse.Namespace) -> int:

    load_network_config(args.net)  # an unknown name is named before any advice to build it
    bd = BuildDir.at(args.build_dir, args.net, args.board)
    build = bd.root
    hw_model = args.hw_model or bd.hw_model
    if args.finn_settings is None and not hw_model.is_file():
        raise UserError(
            f"no hardware graph at {hw_model}: run `make build NET={args.net} BOARD={args.board}` "
            f"(and `make verify NET={args.net} BOARD={args.board}`) first"
        )
    if args.finn_settings is None:
        verified_build(args.net, args.board, build)
    release = args.release or bitstream_dir(args.net, args.board)
    found = (
        release_artifacts(release, hw_model, args.net, args.board) if hw_model.is_file() else None
    )
    bitstream, finn_settings, clock = found if found else (None, args.finn_settings, None)
    program = args.program or bd.program
    if not program.is_file() and hw_model.is_file():
        from maskbnn.pipeline.finn.hwgraph import export_program

        export_program(hw_model, program)
    manifest = deploy(
        args.net,
        args.board,
        args.out,
        program,
        hw_model=hw_model if hw_model.is_file() else None,
        finn_settings=finn_settings,
        bitstream=bitstream,
        images=args.images,
        n_samples=args.samples,
        clock_mhz=args.clock_mhz or clock,
        checkpoint=args.checkpoint,
        verification=bd.verification_json,
        weights_hash=build_weights_hash(build),
    )
    print(json.dumps(manifest["checks"], indent=2))
    print(f"wrote {manifest['archive']} ({manifest['seconds']} s)")
    return 0
