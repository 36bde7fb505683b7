"""The flagship recipe of examples/01_fashion_mnist.cpp in PyTorch, for time-to-accuracy (DAWNBench).

Same model, data, batch, schedule and optimizer as the example's Learner:
  model   fashion_resnet (bench/e2e/train.py: fastai's ConvLayer/ResBlock, init_cnn), as nn::ResBlock
  data    Fashion-MNIST 60k train (shuffled each epoch, last partial batch dropped) / 10k test (in order),
          u8 -> float / 255 -> (x - 0.2860) / 0.3530 per batch, bs 128 for both
  fit     fastai's fit_one_cycle(5, lr_max=1e-2): per training batch, at pos = batches done / all batches,
          lr  = combined_cos(0.25, lr_max / 25, lr_max, lr_max / 1e5)
          mom = combined_cos(0.25, 0.95, 0.85, 0.95)
          combined_cos(p, a, m, b): cosine a -> m over [0, p], then m -> b over [p, 1]
  opt     fastai's Adam (strata optim::adam): mom as scheduled, sqr_mom 0.99, eps 1e-5 (outside the sqrt),
          bias correction with the current mom, weight decay 0.01 decoupled (p *= 1 - lr wd), none on batch
          norm parameters and biases (fastai's wd_bn_bias=False): torch.optim.AdamW does exactly this
          with betas = (mom, 0.99) set before each step
  loss    cross entropy (mean); metric accuracy on the 10k test images after each epoch
  threads 2 (torch.set_num_threads)
Timing as strata's TimeToAccuracy callback: time to target = wall time from the start of the fit to the
end (validation included) of the first epoch whose test accuracy reaches the target; wall = the whole
fit; training items/s = training images / time in the training phases. The last line has the example's
format:
  DAWNBench | Fashion-MNIST 10000 test images | accuracy 0.9312 | target 0.925 reached at epoch 4 after
  312.4 s | wall 380.2 s | training 1234 items/s

  /usr/bin/python3 bench/peers/flagship.py [--epochs 5] [--bs 128] [--lr 1e-2] [--target 0.925]
                                           [--threads 2] [--n-train N] [--n-valid N]
"""
import argparse, math, os, sys, time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from train import MEAN, STD, fashion_resnet, fm_file, read_idx  # noqa: E402


def sched_cos(start, end):
    return lambda pos: start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def combined_cos(pct, start, middle, end):
    a, b = sched_cos(start, middle), sched_cos(middle, end)
    return lambda pos: a(pos / pct) if pos < pct else b((pos - pct) / (1 - pct))


def load(split, n):
    x = torch.from_numpy(read_idx(fm_file(f"{split}-images-idx3-ubyte"), n or None).copy())
    y = torch.from_numpy(read_idx(fm_file(f"{split}-labels-idx1-ubyte"), n or None).astype(np.int64))
    return x.reshape(-1, 1, 28, 28), y


def to_float(xb):
    return (xb.float() / 255.0 - MEAN) / STD


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--target", type=float, default=0.925)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=0, help="first N train images (0: all)")
    ap.add_argument("--n-valid", type=int, default=0, help="first N test images (0: all)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(42)

    xt, yt = load("train", a.n_train)
    xv, yv = load("t10k", a.n_valid)
    model = fashion_resnet()
    decay, no_decay = [], []
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            (no_decay if isinstance(m, nn.BatchNorm2d) or name == "bias" else decay).append(p)
    div, div_final, pct_start, moms = 25.0, 1e5, 0.25, (0.95, 0.85, 0.95)
    lr_at = combined_cos(pct_start, a.lr / div, a.lr, a.lr / div_final)
    mom_at = combined_cos(pct_start, *moms)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr_at(0), betas=(moms[0], 0.99), eps=1e-5)
    loss_func = nn.CrossEntropyLoss()

    n_iter = len(xt) // a.bs  # drop_last
    total = n_iter * a.epochs
    gen = torch.Generator().manual_seed(42)
    reached_epoch, time_to_target, final_acc, train_s, train_items = -1, float("nan"), float("nan"), 0.0, 0
    print(f"pytorch flagship: fashion_resnet, fit_one_cycle({a.epochs}, {a.lr}), bs {a.bs}, {a.threads} threads, "
          f"{len(xt)} train / {len(xv)} test images")
    print("epoch  train_loss  valid_loss  accuracy  time")
    t_fit = time.perf_counter()
    step = 0
    for epoch in range(a.epochs):
        t_epoch = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        tot_loss = 0.0
        for i in range(n_iter):
            idx = perm[i * a.bs:(i + 1) * a.bs]
            xb, yb = to_float(xt[idx]), yt[idx]
            pos = step / total
            for g in opt.param_groups:
                g["lr"], g["betas"] = lr_at(pos), (mom_at(pos), 0.99)
            loss = loss_func(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            tot_loss += loss.item()
            step += 1
        train_s += time.perf_counter() - t_epoch
        train_items += n_iter * a.bs
        model.eval()
        correct, vloss = 0, 0.0
        with torch.no_grad():
            for i in range(0, len(xv), a.bs):
                out = model(to_float(xv[i:i + a.bs]))
                yb = yv[i:i + a.bs]
                vloss += loss_func(out, yb).item() * len(yb)
                correct += (out.argmax(1) == yb).sum().item()
        final_acc = correct / len(xv)
        if reached_epoch < 0 and final_acc >= a.target:
            reached_epoch, time_to_target = epoch + 1, time.perf_counter() - t_fit
        print(f"{epoch:5d}  {tot_loss / n_iter:10.4f}  {vloss / len(xv):10.4f}  {final_acc:8.4f}  "
              f"{time.perf_counter() - t_epoch:.1f}s", flush=True)
    wall = time.perf_counter() - t_fit
    reached = (f"reached at epoch {reached_epoch} after {time_to_target:.1f} s" if reached_epoch > 0
               else "not reached")
    print(f"DAWNBench | Fashion-MNIST {len(xv)} test images | accuracy {final_acc:.4f} | target {a.target:g} "
          f"{reached} | wall {wall:.1f} s | training {train_items / train_s:.0f} items/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
