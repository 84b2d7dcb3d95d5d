"""The binary training methods of IR-Net, Bi-Real, ReActNet and Real-to-Binary: every estimator,
binariser and learnable piece against its formula (forward and backward), the padding that matches
the hardware, the networks, and one short `maskbnn train` run with EDE, KD and --save-every."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from maskbnn.cli import main
from maskbnn.config import load_network_config
from maskbnn.errors import UserError
from maskbnn.models.alexnet_small import AlexNetSmall
from maskbnn.models.binarize import (
    BinaryActivation,
    BinaryConv2d,
    BinaryLinear,
    ede_schedule,
    set_ede,
    sign,
)
from maskbnn.models.checkpoint import read_checkpoint, save_checkpoint
from maskbnn.models.distill import DistributionLoss, make_distiller
from maskbnn.models.method import BinaryMethod
from maskbnn.models.react import LearnedScale, RPReLU, RSign
from maskbnn.models.registry import METHOD_FAMILIES, get_network
from maskbnn.models.resnet_cifar import ResNet18Cifar, ResNet20
from maskbnn.models.vgg_small import VGGSmall
from maskbnn.paths import SAMPLE_DIR
from maskbnn.pipeline.train import method_hooks
from maskbnn.pipeline.train.method_hooks import EdeAnneal, cpu_has_bf16
from maskbnn.pipeline.train.trainer import Trainer, make_loss

torch.set_num_threads(1)

# Both sides of 0 and of the |x| = 1 clip points, plus 0 itself.
POINTS = torch.tensor([-2.0, -1.0, -0.999, -0.75, -0.25, -0.0, 0.0, 0.25, 0.75, 0.999, 1.0, 2.0])


def grad_of(fn, x: torch.Tensor, upstream: torch.Tensor | None = None):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    g = torch.ones_like(y) if upstream is None else upstream
    (y * g).sum().backward()
    return y.detach(), x.grad


# --- activation estimators --------------------------------------------------------------------
def test_sign_of_zero_is_plus_one():
    assert torch.equal(sign(POINTS), torch.where(POINTS >= 0, 1.0, -1.0))
    assert sign(torch.tensor([0.0, -0.0])).tolist() == [1.0, 1.0]


def test_ste_forward_and_clipped_backward():
    y, g = grad_of(BinaryActivation("ste"), POINTS)
    assert torch.equal(y, torch.where(POINTS >= 0, 1.0, -1.0))
    assert torch.equal(g, (POINTS.abs() <= 1).float())  # BNN-PYNQ: grad * 1{|x| <= 1}


@pytest.mark.parametrize("t", [0.1, 0.3, 1.0, 2.5, 10.0])
def test_ede_backward_is_k_t_sech2(t: float):
    k = max(1.0 / t, 1.0)
    act = BinaryActivation("ede")
    set_ede(torch.nn.Sequential(act), t, k)
    x = torch.linspace(-3, 3, 61)
    up = torch.rand(61) + 0.5
    y, g = grad_of(act, x, up)
    assert torch.equal(y, torch.where(x >= 0, 1.0, -1.0))
    want = up * k * t * (1 - torch.tanh(t * x) ** 2)
    torch.testing.assert_close(g, want, rtol=1e-6, atol=1e-7)


def test_approxsign_backward_is_piecewise_linear():
    y, g = grad_of(BinaryActivation("approxsign"), POINTS)
    assert torch.equal(y, torch.where(POINTS >= 0, 1.0, -1.0))
    x = POINTS
    want = torch.where(
        (x >= -1) & (x < 0), 2 + 2 * x, torch.where((x >= 0) & (x < 1), 2 - 2 * x, 0.0)
    )
    torch.testing.assert_close(g, want)
    # and it is the derivative of Bi-Real's polynomial -1 | 2x + x^2 | 2x - x^2 | 1
    xs = torch.linspace(-1.5, 1.5, 301)
    xs = xs[(xs.abs() - 1).abs() > 1e-3]

    def poly(v):
        return torch.where(
            v < -1, -1.0, torch.where(v < 0, 2 * v + v * v, torch.where(v < 1, 2 * v - v * v, 1.0))
        )

    _, g_poly = grad_of(poly, xs)
    _, g_est = grad_of(BinaryActivation("approxsign"), xs)
    torch.testing.assert_close(g_est, g_poly)


def test_rsign_threshold_forward_and_gradients():
    act = RSign(3, estimator="approxsign")
    with torch.no_grad():
        act.threshold.copy_(torch.tensor([0.5, -0.25, 0.0]))
    x = torch.randn(4, 3, 5, 5)
    x[0, 0, 0, 0] = 0.5  # exactly at the threshold: sign(0) = +1
    up = torch.randn_like(x)
    xr = x.clone().requires_grad_(True)
    y = act(xr)
    (y * up).sum().backward()
    shift = x - act.threshold.detach().view(1, 3, 1, 1)
    assert torch.equal(y.detach(), torch.where(shift >= 0, 1.0, -1.0))
    assert y[0, 0, 0, 0] == 1.0
    d = (2 - 2 * shift.abs()).clamp_min(0)
    torch.testing.assert_close(xr.grad, up * d)
    torch.testing.assert_close(act.threshold.grad, -(up * d).sum((0, 2, 3)))


def test_rsign_needs_channels():
    with pytest.raises(ValueError, match="channel"):
        BinaryActivation("ste", learnable_threshold=True)


# --- EDE schedule and its hook ------------------------------------------------------------------
def test_ede_schedule_endpoints_and_middle():
    assert ede_schedule(0, 100) == pytest.approx((0.1, 10.0))
    assert ede_schedule(100, 100) == pytest.approx((10.0, 1.0))
    t, k = ede_schedule(50, 100)
    assert (t, k) == pytest.approx((1.0, 1.0))
    ts = [ede_schedule(e, 10)[0] for e in range(11)]
    ratios = [b / a for a, b in zip(ts, ts[1:], strict=False)]
    assert ratios == pytest.approx([100 ** (1 / 10)] * 10)  # log-linear
    t, k = ede_schedule(1, 4)  # t < 1 -> k = 1/t
    assert k == pytest.approx(1 / t) and t < 1
    assert ede_schedule(0, 10, 1e-3, 10.0)[0] == pytest.approx(1e-3)  # IR-Net's ResNet-20 range


def test_ede_anneal_hook_sets_every_layer():
    method = BinaryMethod(estimator="ede", weight_binarizer="libra_pb", first_last="int8")
    model = VGGSmall(method, 4, width=0.125)
    hook = EdeAnneal(log=False)

    class T:
        pass

    trainer = T()
    trainer.model = model
    hook.on_epoch_start(trainer, 1, 10)
    states = [(float(m.t), float(m.k)) for m in model.modules() if hasattr(m, "set_ede")]
    assert len(states) == 2 * 5 + 1  # 5 activations + 5 convs' weights + the head's activation
    assert all(s == pytest.approx((0.1, 10.0)) for s in states)
    hook.on_epoch_start(trainer, 10, 10)
    t_last = ede_schedule(9, 10)[0]
    assert all(float(m.t) == pytest.approx(t_last) for m in model.modules() if hasattr(m, "t"))
    assert not any(k.endswith((".t", ".k")) for k in model.state_dict())  # not persistent


# --- weight binarisers ----------------------------------------------------------------------------
def libra_reference(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IR-Net Libra-PB by hand, one channel at a time."""
    rows, scales = [], []
    for c in range(w.shape[0]):
        v = w[c].flatten().double()
        n = v.numel()
        mean = v.sum() / n
        std = math.sqrt(float(((v - mean) ** 2).sum()) / (n - 1))
        hat = (v - mean) / std
        scale = 2.0 ** round(math.log2(float(hat.abs().mean())))
        rows.append(torch.where(hat >= 0, 1.0, -1.0) * scale)
        scales.append(scale)
    return torch.stack(rows).view_as(w).float(), torch.tensor(scales)


def test_libra_pb_forward_and_power_of_two_scale():
    torch.manual_seed(0)
    conv = BinaryConv2d(3, 6, 3, weight_binarizer="libra_pb", estimator="ede")
    with torch.no_grad():
        conv.weight.normal_()
        conv.weight[1].zero_()
        conv.weight[1, 0, 0, 0] = 5.0  # one outlier: mean|w_hat| = 10/27 -> scale 2^-1
        conv.weight[2].zero_()
        conv.weight[2, :, :, :2] = 1.0  # two-valued: mean|w_hat| ~ 0.98 -> scale 1
    want, scales = libra_reference(conv.weight.detach())
    assert torch.equal(conv.binary_weight().detach(), want)
    got = conv.weight_scale()
    torch.testing.assert_close(got, scales.float())
    assert torch.equal(torch.log2(got), torch.round(torch.log2(got)))  # powers of two
    assert got[1] == 0.5 and got[2] == 1.0


def test_libra_pb_ede_backward_through_the_standardisation():
    torch.manual_seed(1)
    conv = BinaryConv2d(2, 3, 3, weight_binarizer="libra_pb", estimator="ede")
    t, k = 0.7, 1 / 0.7
    set_ede(conv, t, k)
    up = torch.randn(3, 2, 3, 3)
    (conv.binary_weight() * up).sum().backward()
    got = conv.weight.grad.clone()
    # reference: EDE factor on w_hat, times the detached scale, back through (w - mean) / std
    w = conv.weight.detach().clone().requires_grad_(True)
    flat = w.flatten(1)
    centred = flat - flat.mean(1, keepdim=True)
    hat = (centred / centred.std(1, keepdim=True)).view_as(w)
    scale = conv.weight_scale().view(-1, 1, 1, 1)
    factor = (up * scale * k * t * (1 - torch.tanh(t * hat.detach()) ** 2)).detach()
    (hat * factor).sum().backward()
    torch.testing.assert_close(got, w.grad)


def test_sign_weights_scale_one_and_identity_ste():
    lin = BinaryLinear(5, 4, weight_binarizer="sign", estimator="ste")
    with torch.no_grad():
        lin.weight.copy_(torch.linspace(-2, 2, 20).view(4, 5))
    assert torch.equal(lin.weight_scale(), torch.ones(4))
    up = torch.randn(4, 5)
    (lin.binary_weight() * up).sum().backward()
    assert torch.equal(lin.binary_weight().detach(), sign(lin.weight.detach()))
    assert torch.equal(lin.weight.grad, up)  # Brevitas' BinaryQuant: straight through, unclipped
    assert lin.is_binary and BinaryConv2d.is_binary


def test_mean_abs_forward_and_clipped_backward():
    torch.manual_seed(2)
    conv = BinaryConv2d(3, 4, 3, weight_binarizer="mean_abs", estimator="approxsign")
    with torch.no_grad():
        conv.weight.uniform_(-1.5, 1.5)
    w = conv.weight.detach()
    alpha = w.abs().mean((1, 2, 3))
    assert torch.equal(conv.weight_scale(), alpha)
    assert torch.equal(conv.binary_weight().detach(), alpha.view(-1, 1, 1, 1) * sign(w))
    up = torch.randn_like(w)
    (conv.binary_weight() * up).sum().backward()
    # Bi-Real / ReActNet code: gradient of clamp(w, -1, 1), the scale held constant
    assert torch.equal(conv.weight.grad, up * (w.abs() <= 1))


def test_linear_binarises_its_input():
    lin = BinaryLinear(6, 3, weight_binarizer="mean_abs")
    x = torch.randn(5, 6)
    want = F.linear(sign(x), lin.binary_weight().detach())
    torch.testing.assert_close(lin(x).detach(), want)


# --- padding -------------------------------------------------------------------------------------
def test_pad_value_minus_one_equals_manual_pad_and_differs_from_zero_padding():
    torch.manual_seed(3)
    hw = BinaryConv2d(4, 5, 3, padding=1, pad_value=-1.0)
    zero = BinaryConv2d(4, 5, 3, padding=1, pad_value=0.0)
    zero.load_state_dict(hw.state_dict())
    x = torch.randn(2, 4, 6, 6)
    w = hw.binary_weight().detach()
    want = F.conv2d(F.pad(sign(x), (1, 1, 1, 1), value=-1.0), w)
    assert torch.equal(hw(x).detach(), want)
    assert torch.equal(zero(x).detach(), F.conv2d(sign(x), w, padding=1))
    diff = hw(x).detach() != zero(x).detach()
    assert diff[..., 1:-1, 1:-1].sum() == 0 and diff.any()  # only the border differs: the trap
    assert hw.padding == (1, 1) and hw(x).shape == (2, 5, 6, 6)


# --- ReActNet / Real-to-Binary pieces -----------------------------------------------------------
def test_rprelu_formula_and_gradients():
    torch.manual_seed(4)
    m = RPReLU(3)
    with torch.no_grad():
        m.gamma.copy_(torch.tensor([0.2, -0.3, 0.0]))
        m.beta.copy_(torch.tensor([0.25, 0.5, -0.1]))
        m.zeta.copy_(torch.tensor([0.1, 0.0, -0.4]))
    x = torch.randn(4, 3, 5, 5)
    up = torch.randn_like(x)
    xr = x.clone().requires_grad_(True)
    y = m(xr)
    (y * up).sum().backward()
    g, b, z = (p.detach().view(1, 3, 1, 1) for p in (m.gamma, m.beta, m.zeta))
    pos = x > g
    torch.testing.assert_close(y.detach(), torch.where(pos, x - g + z, b * (x - g) + z))
    slope = torch.where(pos, 1.0, b)
    torch.testing.assert_close(xr.grad, up * slope)
    torch.testing.assert_close(m.gamma.grad, -(up * slope).sum((0, 2, 3)))
    torch.testing.assert_close(m.beta.grad, (up * (x - g) * ~pos).sum((0, 2, 3)))
    torch.testing.assert_close(m.zeta.grad, up.sum((0, 2, 3)))
    fresh = RPReLU(2)  # ReActNet's init: no shifts, PReLU slope 0.25
    assert fresh.beta.tolist() == [0.25, 0.25] and not fresh.gamma.any() and not fresh.zeta.any()


def test_learned_scale_formula_and_gradients():
    m = LearnedScale(3)
    assert torch.equal(m.alpha.detach(), torch.ones(3))
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.5, 2.0, -1.0]))
    x = torch.randn(2, 3, 4, 4)
    up = torch.randn_like(x)
    xr = x.clone().requires_grad_(True)
    y = m(xr)
    (y * up).sum().backward()
    a = m.alpha.detach().view(1, 3, 1, 1)
    torch.testing.assert_close(y.detach(), a * x)
    torch.testing.assert_close(xr.grad, a * up)
    torch.testing.assert_close(m.alpha.grad, (up * x).sum((0, 2, 3)))


# --- distillation -------------------------------------------------------------------------------
def test_distribution_loss_is_kl_by_hand():
    torch.manual_seed(5)
    s = torch.randn(6, 4, requires_grad=True)
    t = torch.randn(6, 4)
    loss = DistributionLoss()(s, t)
    ps, pt = s.detach().softmax(1).double(), t.softmax(1).double()
    by_hand = sum(
        sum(float(pt[i, c]) * math.log(float(pt[i, c]) / float(ps[i, c])) for c in range(4))
        for i in range(6)
    )
    assert float(loss.detach()) == pytest.approx(by_hand / 6, rel=1e-5)
    loss.backward()
    torch.testing.assert_close(s.grad, (ps - pt).float() / 6)  # d KL / d student logits
    assert float(DistributionLoss()(t, t.clone())) == pytest.approx(0.0, abs=1e-7)


def test_distiller_freezes_the_teacher():
    teacher = torch.nn.Linear(3, 4)
    kd = make_distiller(teacher, weight=0.5)
    x = torch.randn(5, 3)
    out = torch.randn(5, 4, requires_grad=True)
    term = kd(x, out)
    assert float(term.detach()) == pytest.approx(
        0.5 * float(DistributionLoss()(out.detach(), teacher(x)))
    )
    term.backward()
    assert teacher.weight.grad is None and not teacher.training
    with pytest.raises(ValueError, match="does not match"):
        kd(x, torch.randn(5, 3))


# --- method config --------------------------------------------------------------------------------
def test_method_is_strict():
    with pytest.raises(UserError, match=r"unknown keys \['estimater'\].*known"):
        BinaryMethod.from_dict({"estimater": "ede"})
    with pytest.raises(UserError, match="estimator: input should be 'ste', 'ede' or 'approxsign'"):
        BinaryMethod.from_dict({"estimator": "tanh"})
    m = BinaryMethod().with_overrides("estimator=ede, rsign=true, pad_value=-1")
    assert (m.estimator, m.rsign, m.pad_value, m.weight_grad) == ("ede", True, -1.0, "ede")
    assert BinaryMethod(weight_binarizer="mean_abs").weight_grad == "clipped"
    assert BinaryMethod().weight_grad == "identity"
    with pytest.raises(UserError, match="KEY=VALUE"):
        BinaryMethod().with_overrides("ede")


def test_config_rejects_unknown_method_keys(tmp_path: Path):
    text = load_network_config("vgg_small_irnet").path.read_text()
    text = text.replace("name: vgg_small_irnet", "name: bad").replace("estimator:", "estimatr:")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(UserError, match=r"model.method: unknown keys \['estimatr'\]"):
        load_network_config("bad", tmp_path)


# --- networks -------------------------------------------------------------------------------------
METHODS = {
    "bnn": BinaryMethod(),
    "irnet": BinaryMethod(estimator="ede", weight_binarizer="libra_pb", pad_value=-1.0),
    "bireal": BinaryMethod(estimator="approxsign", weight_binarizer="mean_abs"),
    "reactnet": BinaryMethod(
        estimator="approxsign", weight_binarizer="mean_abs", rsign=True, rprelu=True
    ),
    "real2binary": BinaryMethod(learned_scale=True, first_last="int8"),
}


@pytest.mark.parametrize("net", [VGGSmall, ResNet20, ResNet18Cifar, AlexNetSmall])
@pytest.mark.parametrize("method", list(METHODS))
def test_network_forward_backward(net, method: str):
    torch.manual_seed(0)
    model = net(METHODS[method], num_classes=4, width=0.125 if net is not ResNet20 else 0.5)
    model.train()
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    out.square().sum().backward()
    binary = [m for m in model.modules() if getattr(m, "is_binary", False)]
    assert binary and all(m.weight.grad is not None for m in binary)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_network_shapes_follow_the_papers():
    vgg = VGGSmall(width=1.0)
    convs = [m.out_channels for m in vgg.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [128, 128, 256, 256, 512, 512] and vgg.fc.in_features == 512 * 4 * 4
    assert VGGSmall(in_channels=1, image_size=28, width=0.25).fc.in_features == 128 * 3 * 3
    r20 = ResNet20()
    assert sum(isinstance(m, BinaryConv2d) for m in r20.modules()) == 18  # + first conv + FC = 20
    assert sum(p.numel() for p in r20.parameters()) < 0.28e6  # IR-Net: ResNet-20 has 0.27M
    r18 = ResNet18Cifar()
    assert sum(isinstance(m, BinaryConv2d) for m in r18.modules()) == 16
    downs = [m for m in r18.modules() if isinstance(m, torch.nn.AvgPool2d)]
    assert len(downs) == 3  # Bi-Real shortcut at every stride-2 unit


@pytest.mark.parametrize(
    "name", sorted(n for n in ["vgg_small_irnet", "resnet18_reactnet", "alexnet_irnet"])
)
def test_method_configs_build(name: str):
    model, cfg = get_network(name)
    assert cfg.model.family in METHOD_FAMILIES
    method = BinaryMethod.from_dict(cfg.model.method)
    assert model.method == method


# --- trainer plumbing -----------------------------------------------------------------------------
def test_cpu_bf16_detection(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx2 avx512f\n")
    assert not cpu_has_bf16(info)
    info.write_text("processor : 0\nflags : fpu avx512f avx512_bf16\n")
    assert cpu_has_bf16(info)
    assert not cpu_has_bf16(tmp_path / "missing")


def test_amp_is_refused_without_native_bf16(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setattr(method_hooks, "cpu_has_bf16", lambda: False)
    args = ["train", "--network", "alexnet_irnet", "--amp", "--dry_run", "--no-progress"]
    assert main(args + ["--experiments", str(tmp_path)]) == 2
    assert "no native bfloat16" in capsys.readouterr().err


def test_trainer_amp_and_distill_step():
    """One step under bfloat16 autocast (emulated here) with a KD term."""
    from maskbnn.pipeline.data.datasets import ArrayDataset

    torch.manual_seed(0)
    model = AlexNetSmall(METHODS["irnet"], num_classes=4, width=0.125)
    teacher = AlexNetSmall(METHODS["bnn"], num_classes=4, width=0.125)
    calls = []

    def distill(xb, out):
        calls.append(out.dtype)
        return make_distiller(teacher)(xb, out)

    data = ArrayDataset(
        torch.randint(0, 255, (8, 32, 32, 3), dtype=torch.uint8).numpy(),
        torch.randint(0, 4, (8,)).numpy(),
        ("a", "b", "c", "d"),
    )
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    trainer = Trainer(
        model,
        make_loss("CrossEntropy", 4),
        opt,
        None,
        data.classes,
        batch_size=4,
        progress=False,
        log=lambda s: None,
        distill=distill,
        amp=True,
        hooks=[EdeAnneal(log=False)],
    )
    result = trainer.fit(data, None, 1)
    assert calls == [torch.bfloat16, torch.bfloat16]
    assert math.isfinite(result["last"]["train_loss"])


def test_train_cli_with_ede_kd_save_every_and_method_override(tmp_path: Path):
    """`maskbnn train` end to end on the shipped sample: EDE annealing, a teacher checkpoint,
    --save-every, a --method override recorded in the checkpoint, then --evaluate of it."""
    teacher = tmp_path / "teacher.tar"
    torch.manual_seed(0)
    t_model, _ = get_network("alexnet_irnet")
    save_checkpoint(teacher, {"state_dict": t_model.state_dict(), "network": "alexnet_irnet"})
    exp = tmp_path / "exp"
    args = ["train", "--network", "alexnet_irnet", "--datadir", str(SAMPLE_DIR)]
    args += ["--experiments", str(exp), "--threads", "1", "--no-progress", "--epochs", "2"]
    args += ["--limit", "64", "--batch_size", "32", "--save-every", "2"]
    args += ["--teacher", str(teacher), "--kd-weight", "0.5", "--method", "rsign=true"]
    assert main(args) == 0
    (run,) = exp.iterdir()
    log = (run / "log.txt").read_text()
    assert "EDE t 0.1, k 10" in log and "EDE t 1, k 1" in log  # epochs 1 and 2 of 2
    ckpts = run / "checkpoints"
    assert (ckpts / "epoch_2.tar").is_file() and not (ckpts / "epoch_1.tar").exists()
    ckpt = read_checkpoint(ckpts / "checkpoint.tar")
    hp = ckpt["hparams"]
    assert hp["method"]["rsign"] is True and hp["kd_weight"] == 0.5
    assert any(k.endswith("threshold") for k in ckpt["state_dict"])  # RSign was built
    m = json.loads((run / "metrics.json").read_text())
    assert m["test"]["n"] > 500 and len(m["history"]) == 2
    out = tmp_path / "eval.json"
    ev = [
        "train",
        "--evaluate",
        "--network",
        "alexnet_irnet",
        "--resume",
        str(ckpts / "epoch_2.tar"),
    ]
    ev += ["--datadir", str(SAMPLE_DIR), "--metrics-json", str(out), "--threads", "1"]
    assert main(ev + ["--no-progress"]) == 0  # the checkpoint's method (with RSign) is rebuilt
    assert json.loads(out.read_text())["top1"] == pytest.approx(m["test"]["top1"])


def test_method_flag_refused_for_brevitas_networks(tmp_path: Path):
    args = ["train", "--network", "mask_1w1a_0.125", "--method", "estimator=ede", "--dry_run"]
    with pytest.raises(UserError, match="no binary method"):
        from maskbnn.pipeline.train.cli import with_method

        with_method(load_network_config("mask_1w1a_0.125"), "estimator=ede", None)
    assert main(args + ["--experiments", str(tmp_path), "--no-progress"]) == 2
