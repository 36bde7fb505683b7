#!/usr/bin/python3
"""Golden files for strata's nn tests (tests/test_loss.cpp, tests/test_models.cpp), made with PyTorch.

Run from the repository root with Debian's PyTorch 1.13 and torchvision:
    /usr/bin/python3 tools/make_nn_golden.py
Writes tests/golden/nn_losses.txt, nn_small_cnn.txt, nn_model_keys.txt.

Format (plain text, one tensor per record, read by tests/nn_golden.hpp):
    <name> <dtype f32|f64|i64> <ndim> <size...>
    <values, row-major, space separated>      (a line of its own, empty for an empty tensor;
                                               '-' when only the name, dtype and shape are kept)
Lines starting with '#' are comments. Floats are written exactly: 17 significant digits for f64, 9 for f32.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")
DTYPES = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64"}


class Writer:
    def __init__(self, path, header):
        self.f = open(path, "w")
        for line in header.strip().splitlines():
            self.f.write("# " + line + "\n")

    def put(self, name, t):
        t = t.detach().contiguous()
        dt = DTYPES[t.dtype]
        self.f.write(f"{name} {dt} {t.dim()} {' '.join(str(s) for s in t.shape)}".rstrip() + "\n")
        vals = t.reshape(-1).tolist()
        if dt == "i64":
            self.f.write(" ".join(str(v) for v in vals) + "\n")
        else:
            digits = 17 if dt == "f64" else 9
            self.f.write(" ".join(repr(float(v)) if math.isinf(v) else f"{v:.{digits}g}" for v in vals) + "\n")

    def close(self):
        self.f.close()


def losses():
    """Each case: inputs, then the loss (mean, sum, none) and input gradients of sum(loss * v) for a fixed v."""
    torch.manual_seed(0)
    w = Writer(os.path.join(OUT, "nn_losses.txt"), "losses vs torch.nn.functional (float64), tools/make_nn_golden.py")

    def case(name, fn, inputs, grad_of):
        for k, v in inputs.items():
            w.put(f"{name}.{k}", v)
        for red in ("mean", "sum", "none"):
            w.put(f"{name}.{red}", fn(reduction=red))
        # gradients of <loss_none, v> for the inputs that take one
        for k in grad_of:
            inputs[k].requires_grad_(True)
        out = fn(reduction="none")
        v = torch.randn(out.shape, dtype=torch.float64)
        w.put(f"{name}.v", v)
        gs = torch.autograd.grad((out * v).sum(), [inputs[k] for k in grad_of])
        for k, g in zip(grad_of, gs):
            w.put(f"{name}.d{k}", g)
            inputs[k].requires_grad_(False)

    x = torch.randn(6, 5, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (6,))
    case("ce", lambda reduction: F.cross_entropy(x, y, reduction=reduction), {"x": x, "y": y}, ["x"])
    case("ce_ls", lambda reduction: F.cross_entropy(x, y, label_smoothing=0.1, reduction=reduction),
         {"x": x, "y": y}, ["x"])
    x4 = torch.randn(2, 4, 3, 2, dtype=torch.float64)
    y4 = torch.randint(0, 4, (2, 3, 2))
    case("ce_4d", lambda reduction: F.cross_entropy(x4, y4, label_smoothing=0.2, reduction=reduction),
         {"x": x4, "y": y4}, ["x"])
    p = torch.softmax(torch.randn(6, 5, dtype=torch.float64), 1)
    case("ce_prob", lambda reduction: F.cross_entropy(x, p, label_smoothing=0.15, reduction=reduction),
         {"x": x, "y": p}, ["x", "y"])
    big = torch.tensor([[1000.0, -1000.0, 0.0], [-500.0, 500.0, 499.0]], dtype=torch.float64)
    yb = torch.tensor([1, 2])
    case("ce_extreme", lambda reduction: F.cross_entropy(big, yb, reduction=reduction), {"x": big, "y": yb}, ["x"])
    logp = torch.log_softmax(torch.randn(6, 5, dtype=torch.float64), 1)
    case("nll", lambda reduction: F.nll_loss(logp, y, reduction=reduction), {"x": logp, "y": y}, ["x"])
    a, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    case("mse", lambda reduction: F.mse_loss(a, b, reduction=reduction), {"x": a, "y": b}, ["x", "y"])
    case("l1", lambda reduction: F.l1_loss(a, b, reduction=reduction), {"x": a, "y": b}, ["x", "y"])
    z = torch.tensor([[-800.0, -20.0, -1.5, 0.0], [0.3, 2.0, 30.0, 900.0]], dtype=torch.float64)
    t = torch.rand(2, 4, dtype=torch.float64)
    case("bce", lambda reduction: F.binary_cross_entropy_with_logits(z, t, reduction=reduction),
         {"x": z, "y": t}, ["x", "y"])
    w.close()


class SmallCNN(nn.Sequential):
    def __init__(self):
        super().__init__(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def small_cnn():
    """Initial weights, a fixed batch, and per step: the loss and gradient norms; 3 steps of p -= lr * grad."""
    torch.manual_seed(1)
    m = SmallCNN()
    xb = torch.randn(6, 3, 10, 10)
    yb = torch.randint(0, 10, (6,))
    lr = 0.1
    w = Writer(os.path.join(OUT, "nn_small_cnn.txt"), f"""
SmallCNN (conv-BN-ReLU-maxpool-conv-BN-ReLU-adaptive avg pool-flatten-linear), float32, training mode.
Initial state_dict as 'sd.<key>', batch 'xb' / 'yb'. Then for step in 0..2: loss = cross_entropy(m(xb), yb),
'step<k>.loss', 'step<k>.gnorm.<param>' (2-norm of the gradient), then p -= {lr} * grad (plain SGD).
After the steps: 'final.sd.<key>' for the BN running stats.
""")
    for k, v in m.state_dict().items():
        w.put(f"sd.{k}", v)
    w.put("xb", xb)
    w.put("yb", yb)
    w.put("lr", torch.tensor(lr, dtype=torch.float64))
    for step in range(3):
        m.zero_grad()
        loss = F.cross_entropy(m(xb), yb)
        loss.backward()
        w.put(f"step{step}.loss", loss.detach().double())
        for k, p in m.named_parameters():
            w.put(f"step{step}.gnorm.{k}", p.grad.double().norm())
        with torch.no_grad():
            for p in m.parameters():
                p -= lr * p.grad
    for k, v in m.state_dict().items():
        if "running" in k or "num_batches" in k:
            w.put(f"final.sd.{k}", v)
    w.close()


# fastai's xresnet18/50 (fastai/vision/models/xresnet.py + fastai/layers.py ConvLayer/ResBlock), transcribed
# to plain PyTorch for its state_dict keys and shapes (fastai itself is not installed here).
def conv_layer(ni, nf, ks=3, stride=1, act=True, zero_bn=False):
    layers = [nn.Conv2d(ni, nf, ks, stride=stride, padding=(ks - 1) // 2, bias=False), nn.BatchNorm2d(nf)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    def __init__(self, expansion, ni, nf, stride):
        super().__init__()
        nh, nf, ni = nf, nf * expansion, ni * expansion
        if expansion == 1:
            convpath = [conv_layer(ni, nh, 3, stride), conv_layer(nh, nf, 3, act=False, zero_bn=True)]
        else:
            convpath = [conv_layer(ni, nh, 1), conv_layer(nh, nh, 3, stride), conv_layer(nh, nf, 1, act=False, zero_bn=True)]
        self.convpath = nn.Sequential(*convpath)
        idpath = []
        if ni != nf:
            idpath.append(conv_layer(ni, nf, 1, act=False))
        if stride != 1:
            idpath.insert(0, nn.AvgPool2d(stride, ceil_mode=True))
        self.idpath = nn.Sequential(*idpath)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.convpath(x) + self.idpath(x))


def xresnet(expansion, layers, c_in=3, n_out=1000):
    stem = [conv_layer(c_in, 32, stride=2), conv_layer(32, 32), conv_layer(32, 64)]
    szs = [64 // expansion, 64, 128, 256, 512]
    blocks = [nn.Sequential(*[ResBlock(expansion, szs[i] if j == 0 else szs[i + 1], szs[i + 1],
                                       (1 if i == 0 else 2) if j == 0 else 1)
                              for j in range(n)]) for i, n in enumerate(layers)]
    return nn.Sequential(*stem, nn.MaxPool2d(3, 2, 1), *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.0), nn.Linear(512 * expansion, n_out))


def model_keys():
    import torchvision
    w = Writer(os.path.join(OUT, "nn_model_keys.txt"), """
state_dict keys and shapes: torchvision resnet18/resnet34 (num_classes=1000), fastai xresnet18/50 (n_out=1000).
One record per key: '<model>:<key>' with dtype and shape; values not kept ('-').
""")
    for name, m in (("resnet18", torchvision.models.resnet18()), ("resnet34", torchvision.models.resnet34()),
                    ("xresnet18", xresnet(1, [2, 2, 2, 2])), ("xresnet50", xresnet(4, [3, 4, 6, 3]))):
        for k, v in m.state_dict().items():
            dt = DTYPES[v.dtype]
            w.f.write(f"{name}:{k} {dt} {v.dim()} {' '.join(str(s) for s in v.shape)}".rstrip() + "\n-\n")
    w.close()


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    losses()
    small_cnn()
    model_keys()
