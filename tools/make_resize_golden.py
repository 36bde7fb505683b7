#!/usr/bin/python3
"""Golden values for tests/test_resize.cpp, from PyTorch (torch 1.13, float64).

Writes tests/golden/resize_golden.txt in the format of tests/nn_golden.hpp: records
"<name> <dtype> <ndim> <sizes...>" then a line of values. Cases (inputs are integers 0..255):
  whole.<k>.x / .y    F.interpolate(x[None], (OH, OW), mode='bilinear', align_corners=False,
                      antialias=False): the whole image resampled (up, down, mixed)
  box.x, box.<mode>.y a box (y0, x0, h, w) partly outside the image, resampled with
                      F.grid_sample(align_corners=False) at the half-pixel positions
                      y0 + (oy + 0.5) * h / OH - 0.5 (pixel-centre units); modes border and
                      reflection are grid_sample's; zeros is the border result set to 0 where
                      the position lies outside the image's extent [-0.5, n - 0.5]
                      (strata's zeros: a hard edge, not grid_sample's per-tap zeros)
  box.geom            y0 x0 h w OH OW
  near.<k>.x / .y     F.interpolate(mode='nearest-exact') (masks)
Run: /usr/bin/python3 tools/make_resize_golden.py
"""
import os
import torch
import torch.nn.functional as F

torch.manual_seed(5)
out = []


def rec(name, t):
    t = t.detach().to(torch.float64).contiguous()
    out.append(f"{name} f64 {t.dim()} {' '.join(str(s) for s in t.shape)}")
    out.append(" ".join("%.12g" % float(v) for v in t.flatten()))


def img(c, h, w):
    return torch.randint(0, 256, (c, h, w)).to(torch.float64)


for k, (shape, size) in enumerate([((2, 5, 7), (11, 13)), ((1, 15, 13), (6, 5)), ((1, 9, 4), (4, 10))]):
    x = img(*shape)
    y = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=False)[0]
    rec(f"whole.{k}.x", x)
    rec(f"whole.{k}.y", y)

x = img(2, 8, 10)
y0, x0, h, w, OH, OW = -3.5, 2.25, 14.0, 6.5, 9, 7
H, W = x.shape[1], x.shape[2]
cy = y0 + (torch.arange(OH, dtype=torch.float64) + 0.5) * h / OH - 0.5
cx = x0 + (torch.arange(OW, dtype=torch.float64) + 0.5) * w / OW - 0.5
gy, gx = (2 * cy + 1) / H - 1, (2 * cx + 1) / W - 1
grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]  # [1, OH, OW, 2] as (x, y)
inside = ((cy >= -0.5) & (cy <= H - 0.5))[:, None] & ((cx >= -0.5) & (cx <= W - 0.5))[None, :]
for mode in ["border", "reflection", "zeros"]:
    pm = "border" if mode == "zeros" else mode
    y = F.grid_sample(x[None], grid, mode="bilinear", padding_mode=pm, align_corners=False)[0]
    if mode == "zeros":
        y = y * inside
    rec(f"box.{mode}.y", y)
rec("box.x", x)
rec("box.geom", torch.tensor([y0, x0, h, w, OH, OW]))

for k, (shape, size) in enumerate([((1, 7, 9), (12, 5)), ((1, 10, 6), (4, 3))]):
    x = torch.randint(0, 5, shape).to(torch.float64)
    y = F.interpolate(x[None], size=size, mode="nearest-exact")[0]
    rec(f"near.{k}.x", x)
    rec(f"near.{k}.y", y)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "resize_golden.txt")
with open(path, "w") as f:
    f.write("# bilinear / nearest resampling vs torch (float64), tools/make_resize_golden.py\n")
    f.write("\n".join(out) + "\n")
print("wrote", os.path.normpath(path))
