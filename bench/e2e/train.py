"""End-to-end throughput, PyTorch side: the same run as bench/e2e/train.cpp (model, init scheme,
data, batch, optimizer, threads), printed in the same one-line format.

  /usr/bin/python3 bench/e2e/train.py --model cnn|resnet9|fashion_resnet [--bs 256] [--threads 2]
                             [--batches 20] [--warmup 3] [--eval-batches N] [--bf16] [--channels-last]
                             [--eval-only]
--eval-batches: timed eval batches (default --batches), as train.cpp.
--bf16 trains (and evaluates) under torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's CPU mixed
precision. --channels-last: model.to(memory_format=torch.channels_last) and each batch
x.contiguous(memory_format=torch.channels_last).
Init: cnn and resnet9 keep PyTorch's defaults (as strata's Conv2d/Linear/BatchNorm2d); fashion_resnet
mirrors strata's nn::ConvLayer/ResBlock + init_cnn: kaiming_normal_ conv/linear weights, every bias 0
(batch norm biases too), batch norm weights 1 except 0 on the last ConvLayer of each ResBlock's convpath
(fastai's NormType.BatchZero).
peak_rss_mb is ru_maxrss of the whole process, so it includes the Python interpreter and torch's
shared libraries (~230 MB after `import torch`, printed as start_rss_mb).
"""
import argparse, gzip, os, resource, time

import numpy as np
import torch
from torch import nn

MEAN, STD = 0.2860, 0.3530


def read_idx(path, n):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    return arr[:n]


def fm_file(name):
    d = os.environ.get("STRATA_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
    p = os.path.join(d, name)
    return p + ".gz" if os.path.exists(p + ".gz") else p


def cbr(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())


def flagship_cnn():
    return nn.Sequential(cbr(1, 32), cbr(32, 32), nn.MaxPool2d(2), cbr(32, 64), cbr(64, 64), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 10))


class Residual(nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.res1, self.res2 = a, b

    def forward(self, x):
        return x + self.res2(self.res1(x))


class ResNet9(nn.Module):
    def __init__(self, c_in=1, n_out=10):
        super().__init__()
        self.prep = cbr(c_in, 64)
        self.layer1 = nn.Sequential(cbr(64, 128), nn.MaxPool2d(2), Residual(cbr(128, 128), cbr(128, 128)))
        self.layer2 = nn.Sequential(cbr(128, 256), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(cbr(256, 512), nn.MaxPool2d(2), Residual(cbr(512, 512), cbr(512, 512)))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.linear = nn.Linear(512, n_out, bias=False)

    def forward(self, x):
        return self.linear(torch.flatten(self.pool(self.layer3(self.layer2(self.layer1(self.prep(x))))), 1)) * 0.125


def conv_layer(ni, nf, ks=3, stride=1, act=True, zero_bn=False):
    """fastai's ConvLayer: conv (padding (ks - 1) // 2, no bias), BatchNorm2d (weight 0 for BatchZero), ReLU."""
    bn = nn.BatchNorm2d(nf)
    nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    layers = [nn.Conv2d(ni, nf, ks, stride, (ks - 1) // 2, bias=False), bn]
    return nn.Sequential(*(layers + [nn.ReLU()] if act else layers))


class ResBlock(nn.Module):
    """fastai's ResBlock(1, ni, nf, stride): act(convpath(x) + idpath(x)); convpath = ConvLayer(ni, nf,
    stride) + ConvLayer(nf, nf, BatchZero, no act); idpath = AvgPool2d(2, ceil_mode) when strided,
    then ConvLayer(ni, nf, 1, no act) when the channels change."""

    def __init__(self, ni, nf, stride):
        super().__init__()
        self.convpath = nn.Sequential(conv_layer(ni, nf, 3, stride), conv_layer(nf, nf, 3, 1, act=False, zero_bn=True))
        idp = [nn.AvgPool2d(stride, ceil_mode=True)] if stride != 1 else []
        if ni != nf:
            idp.append(conv_layer(ni, nf, 1, act=False))
        self.idpath = nn.Sequential(*idp)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.convpath(x) + self.idpath(x))


def init_cnn(m):
    """fastai's init_cnn: every bias 0 (batch norm biases too), conv and linear weights kaiming_normal_."""
    if getattr(m, "bias", None) is not None:
        nn.init.constant_(m.bias, 0)
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight)
    for c in m.children():
        init_cnn(c)


def fashion_resnet():
    m = nn.Sequential(conv_layer(1, 16), ResBlock(16, 32, 2), ResBlock(32, 64, 2), ResBlock(64, 128, 2),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
    init_cnn(m)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--bs", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--eval-batches", type=int, default=None)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--eval-only", action="store_true")
    a = ap.parse_args()
    if a.eval_batches is None:
        a.eval_batches = a.batches
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # interpreter + torch, ~230 MB
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = {"cnn": flagship_cnn, "resnet9": ResNet9, "fashion_resnet": fashion_resnet}[a.model]()
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)

    n = min(60000, (a.warmup + max(a.batches, a.eval_batches)) * a.bs)
    x = torch.from_numpy(read_idx(fm_file("train-images-idx3-ubyte"), n).astype(np.float32) / 255.0)
    images = ((x - MEAN) / STD).reshape(n, 1, 28, 28).contiguous()
    labels = torch.from_numpy(read_idx(fm_file("train-labels-idx1-ubyte"), n).astype(np.int64))
    nb = n // a.bs

    def batch(i):
        i %= nb
        return images[i * a.bs:(i + 1) * a.bs].contiguous(memory_format=fmt), labels[i * a.bs:(i + 1) * a.bs]

    train_ips, final_loss = 0.0, float("nan")
    if not a.eval_only:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
        model.train()
        for i in range(a.warmup + a.batches):
            if i == a.warmup:
                t0 = time.perf_counter()
            xb, yb = batch(i)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            if i + 1 == a.warmup + a.batches:
                final_loss = loss.item()
            opt.step()
            opt.zero_grad()
        train_ips = a.batches * a.bs / (time.perf_counter() - t0)
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
        for i in range(a.warmup + a.eval_batches):
            if i == a.warmup:
                t0 = time.perf_counter()
            model(batch(i)[0])
    eval_ips = a.eval_batches * a.bs / (time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"pytorch model={a.model} bs={a.bs} threads={a.threads} bf16={int(a.bf16)} "
          f"channels_last={int(a.channels_last)} train_ips={train_ips:.1f} eval_ips={eval_ips:.1f} "
          f"peak_rss_mb={rss:.1f} start_rss_mb={start_rss:.1f} final_loss={final_loss:.4f}")


if __name__ == "__main__":
    main()
