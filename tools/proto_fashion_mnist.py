#!/usr/bin/python3
"""Prototype for examples/01_fashion_mnist.cpp: pick the cheapest Fashion-MNIST model that reaches >= 93.0%
test accuracy in 5 epochs with fastai's fit_one_cycle, in PyTorch, single thread.

Usage:  /usr/bin/python3 tools/proto_fashion_mnist.py --arch res8 --bs 128 --lr 1e-2 --epochs 5 --seed 0
        /usr/bin/python3 tools/proto_fashion_mnist.py --arch res8 --bench      (cost only: MFLOPs, params, s/epoch)

One-cycle (fastai defaults, written out): position p = step / total_steps, taken before each step;
  lr  = combined cosine  lr_max/25 -> lr_max over p in [0, 0.25], lr_max -> lr_max/1e5 over p in [0.25, 1]
  mom = combined cosine  0.95 -> 0.85           over p in [0, 0.25], 0.85 -> 0.95           over p in [0.25, 1]
  cos(start, end, t) = start + (1 + cos(pi * (1 - t))) * (end - start) / 2
Optimizer: fastai Adam = AdamW with betas (mom, 0.99), eps 1e-5, decoupled wd 0.01 (p *= 1 - lr*wd), with
fastai's wd_bn_bias=False (no weight decay on BatchNorm weights/biases and on biases).
Init: conv kaiming_normal_ (fan_in, relu), conv without bias (BatchNorm follows), last BN of each residual
branch with gamma = 0 (fastai's BatchZero); Linear keeps PyTorch's default init.
"""
import argparse
import gzip
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
DATA = "/usr/share/datasets/fashion-mnist/"
MEAN, STD = 0.2860, 0.3530


def load_idx(name):
    with gzip.open(DATA + name, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load():
    def imgs(n):
        x = torch.from_numpy(load_idx(n).astype(np.float32) / 255.0)
        return ((x - MEAN) / STD).unsqueeze(1).contiguous()

    def labels(n):
        return torch.from_numpy(load_idx(n).astype(np.int64))

    return (imgs("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            imgs("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


# ---------------------------------------------------------------------------------------------- models
def conv_bn(ni, nf, stride=1, ks=3, act=True, zero_bn=False):
    layers = [nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=False), nn.BatchNorm2d(nf)]
    if zero_bn:
        nn.init.zeros_(layers[1].weight)
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """out = relu(conv_bn(relu(conv_bn(x, stride)))  +  idpath(x)); idpath = [AvgPool2d(2, ceil)] [conv1x1+BN]."""

    def __init__(self, ni, nf, stride=1):
        super().__init__()
        self.convs = nn.Sequential(conv_bn(ni, nf, stride), conv_bn(nf, nf, act=False, zero_bn=True))
        idp = []
        if stride != 1:
            idp.append(nn.AvgPool2d(2, ceil_mode=True))
        if ni != nf:
            idp.append(conv_bn(ni, nf, ks=1, act=False))
        self.idpath = nn.Sequential(*idp)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.convs(x) + self.idpath(x))


def head(nf):
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(nf, 10)]


def resnet(nfs, stem=16, stem_stride=1, extra=()):
    """stem conv 1->stem at 28x28, then one stride-2 ResBlock per entry of nfs; extra[i] = number of additional
    stride-1 ResBlocks after stage i."""
    layers = [conv_bn(1, stem, stride=stem_stride)]
    ni = stem
    for i, nf in enumerate(nfs):
        layers.append(ResBlock(ni, nf, 2))
        for _ in range(extra[i] if i < len(extra) else 0):
            layers.append(ResBlock(nf, nf, 1))
        ni = nf
    return nn.Sequential(*layers, *head(ni))


def plain(nfs, stem=16):
    """stem conv, then per stage: conv stride 2 (ni->nf) + conv stride 1 (nf->nf)."""
    layers = [conv_bn(1, stem)]
    ni = stem
    for nf in nfs:
        layers += [conv_bn(ni, nf, 2), conv_bn(nf, nf)]
        ni = nf
    return nn.Sequential(*layers, *head(ni))


ARCHS = {
    # ResNet, stride-2 ResBlocks 28->14->7->4
    "res16": lambda: resnet([32, 64, 128], stem=16),
    "res8": lambda: resnet([16, 32, 64], stem=8),
    "res12": lambda: resnet([24, 48, 96], stem=12),
    "res16x4": lambda: resnet([32, 64, 128, 256], stem=16),   # 28->14->7->4->2 (fastai-like widths)
    "res8x4": lambda: resnet([16, 32, 64, 128], stem=8),
    "res16e": lambda: resnet([32, 64, 128], stem=16, extra=(0, 1, 0)),
    # plain conv nets, same stage layout
    "plain16": lambda: plain([32, 64, 128], stem=16),
    "plain8": lambda: plain([16, 32, 64], stem=8),
}


def count(model):
    """params, forward MACs per image (conv + linear only; BN/ReLU/pool/adds are not counted)."""
    macs = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            macs[0] += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            macs[0] += m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in hs:
        h.remove()
    return sum(p.numel() for p in model.parameters()), macs[0]


def init(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


# ---------------------------------------------------------------------------------------------- one-cycle
def sched_cos(start, end, t):
    return start + (1 + math.cos(math.pi * (1 - t))) * (end - start) / 2


def combined(p, pct, a, b, c):
    return sched_cos(a, b, p / pct) if p < pct else sched_cos(b, c, (p - pct) / (1 - pct))


def one_cycle(p, lr_max, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    return (combined(p, pct_start, lr_max / div, lr_max, lr_max / div_final),
            combined(p, pct_start, moms[0], moms[1], moms[2]))


def augment(x, gen):
    """random horizontal flip (p=0.5) and random 28x28 crop of the zero-padded (by 2, in normalized space the
    pad value is the normalized 0 = -MEAN/STD) image."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    xp = F.pad(x, (2, 2, 2, 2), value=-MEAN / STD)
    dy = torch.randint(0, 5, (n,), generator=gen)
    dx = torch.randint(0, 5, (n,), generator=gen)
    ar = torch.arange(28)
    rows = (dy[:, None] + ar[None, :])  # n,28
    cols = (dx[:, None] + ar[None, :])
    return xp[:, 0][torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def evaluate(model, x, y, bs=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], bs):
            correct += (model(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum().item()
    return correct / x.shape[0]


def train(args, data):
    xtr, ytr, xte, yte = data
    torch.manual_seed(args.seed)
    model = ARCHS[args.arch]()
    init(model)
    params, macs = count(model)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": args.wd if args.wd_all else 0.0}],
                            lr=args.lr, betas=(0.95, 0.99), eps=1e-5)
    gen = torch.Generator().manual_seed(args.seed)
    n = xtr.shape[0]
    steps_per_epoch = math.ceil(n / args.bs)
    total = steps_per_epoch * args.epochs
    step = 0
    print(f"arch={args.arch} params={params} fwd_MFLOPs/img={2 * macs / 1e6:.2f} bs={args.bs} lr_max={args.lr} "
          f"aug={args.aug} seed={args.seed}", flush=True)
    accs, times = [], []
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        t0 = time.perf_counter()
        tot_loss = 0.0
        for i in range(0, n, args.bs):
            idx = perm[i:i + args.bs]
            xb, yb = xtr[idx], ytr[idx]
            if args.aug:
                xb = augment(xb, gen)
            lr, mom = one_cycle(step / total, args.lr)
            for g in opt.param_groups:
                g["lr"], g["betas"] = lr, (mom, 0.99)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += loss.item() * idx.shape[0]
            step += 1
        t1 = time.perf_counter()
        acc = evaluate(model, xte, yte)
        accs.append(acc)
        times.append(t1 - t0)
        print(f"  epoch {ep + 1}: train_loss={tot_loss / n:.4f} test_acc={acc * 100:.2f}% "
              f"train_s={t1 - t0:.1f} eval_s={time.perf_counter() - t1:.1f}", flush=True)
    print(f"RESULT arch={args.arch} params={params} MFLOPs={2 * macs / 1e6:.2f} bs={args.bs} lr={args.lr} "
          f"aug={args.aug} seed={args.seed} accs={' '.join(f'{a * 100:.2f}' for a in accs)} "
          f"s/epoch={sum(times) / len(times):.1f}", flush=True)


def bench(args, data):
    xtr, ytr = data[0], data[1]
    for arch in args.arch.split(","):
        torch.manual_seed(0)
        model = ARCHS[arch]()
        init(model)
        params, macs = count(model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-5)
        model.train()
        nb = args.bench_batches
        for k in range(nb + 3):
            if k == 3:
                t0 = time.perf_counter()
            xb, yb = xtr[k * args.bs:(k + 1) * args.bs], ytr[k * args.bs:(k + 1) * args.bs]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        dt = (time.perf_counter() - t0) / nb
        print(f"BENCH arch={arch} params={params} fwd_MFLOPs/img={2 * macs / 1e6:.2f} bs={args.bs} "
              f"s/batch={dt:.4f} est_s/epoch={dt * 60000 / args.bs:.1f}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="res8")
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--wd-all", action="store_true", help="weight decay on BN/bias too (fastai wd_bn_bias=True)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aug", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--bench-batches", type=int, default=20)
    a = ap.parse_args()
    d = load()
    bench(a, d) if a.bench else train(a, d)
