#!/usr/bin/python3
"""DataLoader throughput peer, PyTorch side (and the image folder generator for run_dataloader.sh).

    /usr/bin/python3 bench/peers/dataloader.py make DIR [N]   # N (2000) 160x160 JPEGs in DIR/class_k/, 10 classes
    /usr/bin/python3 bench/peers/dataloader.py run DIR         # one timed epoch: "pytorch IMAGES_PER_S N CPU_MS_PER_IMAGE"
    /usr/bin/python3 bench/peers/dataloader.py run DIR tensor  # the same on torchvision's tensor path ("pytorch_tensor ...")

make: every image is a random linear gradient between two colours with 3-8 soft Gaussian blobs of
random colours and a little pixel noise, saved with PIL at JPEG quality 90 (about 5 KB each, in the
range of Imagenette's 160 px JPEGs), so decoding costs what real photos of that size cost. Seeded:
the same N gives the same files. Written to DIR.tmp and renamed, so a half-made folder is never used.

run: prints "pytorch IMAGES_PER_S N CPU_MS_PER_IMAGE": the CPU time (user + sys) of the main process
and both workers over the timed part, per image, which a busy shared machine disturbs far less than
the wall clock. torchvision ImageFolder(DIR) with RandomResizedCrop(128) + RandomHorizontalFlip + ToTensor,
DataLoader(bs 64, shuffle, num_workers 2, torch.set_num_threads(1) in each worker), as
bench/peers/dataloader.cpp does with strata's DataBlock. The epoch's first batch is the warm-up
(worker start, first decodes); the clock runs from there to the end of the epoch, over the images
of the remaining batches.

run ... tensor: the closer like-for-like variant. The default (PIL) path is what most PyTorch code
runs, but Pillow's resize antialiases when it shrinks, which costs more than strata's plain bilinear
(= torch interpolate antialias=False). Here images are decoded by torchvision.io.read_image
(libjpeg) to u8 tensors and go through RandomResizedCrop(128, antialias=False),
RandomHorizontalFlip and ConvertImageDtype(float32), the same arithmetic strata does.
"""
import os
import shutil
import sys
import time

N_CLASSES, SIZE = 10, 160


def make(out, n):
    import numpy as np
    from PIL import Image
    if os.path.isdir(out):
        return
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        a = rng.uniform(0, 2 * np.pi)
        t = ((np.cos(a) * xx + np.sin(a) * yy) / (SIZE * 1.42) + 0.5)[..., None]
        im = c0 * (1 - t) + c1 * t
        for _ in range(rng.integers(3, 9)):
            cx, cy, sx, sy = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(6, 40), rng.uniform(6, 40)
            g = np.exp(-((xx - cx) ** 2 / (2 * sx * sx) + (yy - cy) ** 2 / (2 * sy * sy)))[..., None]
            im = im * (1 - g) + rng.uniform(0, 255, 3) * g
        im += rng.normal(0, 4, im.shape)
        d = os.path.join(tmp, f"class_{i % N_CLASSES}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(np.clip(im, 0, 255).astype(np.uint8)).save(os.path.join(d, f"img_{i:05d}.jpg"), quality=90)
    os.rename(tmp, out)


def worker_init(_):
    import torch
    torch.set_num_threads(1)


def cpu_seconds(pids):
    """User + system CPU seconds of this process (all threads) and of the processes `pids`."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    total = r.ru_utime + r.ru_stime
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def run(root, variant):
    import torch
    from torchvision import datasets, io, transforms
    torch.set_num_threads(1)  # the main process only receives batches (workers collate)
    if variant == "tensor":
        tfms = transforms.Compose([transforms.RandomResizedCrop(128, antialias=False),
                                   transforms.RandomHorizontalFlip(), transforms.ConvertImageDtype(torch.float32)])
        ds = datasets.ImageFolder(root, transform=tfms, loader=io.read_image)
    else:
        tfms = transforms.Compose([transforms.RandomResizedCrop(128), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor()])
        ds = datasets.ImageFolder(root, transform=tfms)
    dl = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, num_workers=2, worker_init_fn=worker_init,
                                     generator=torch.Generator().manual_seed(0))
    it = iter(dl)
    xb, yb = next(it)  # warm-up batch
    assert xb.shape[1:] == (3, 128, 128) and xb.dtype == torch.float32, xb.shape
    pids = [w.pid for w in it._workers]
    n, c0, t0 = 0, cpu_seconds(pids), time.perf_counter()
    for i, (xb, yb) in enumerate(it):
        n += xb.shape[0]
        if i == len(dl) - 2:  # the last batch: read the workers' CPU time before they exit
            c1 = cpu_seconds(pids)
    dt = time.perf_counter() - t0
    name = "pytorch_tensor" if variant == "tensor" else "pytorch"
    print(f"{name} {n / dt:.1f} {n} {(c1 - c0) * 1e3 / n:.3f}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2000)
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "run" and sys.argv[3:] in ([], ["tensor"]):
        run(sys.argv[2], sys.argv[3] if len(sys.argv) == 4 else "pil")
    else:
        sys.exit(__doc__)
