#!/usr/bin/python3
"""Writes tests/golden/resnet18_logits.safetensors: torchvision ResNet-18 logits for tests/test_pretrained.cpp.

The weights are not committed (47 MB). They are torchvision's random init after torch.manual_seed(0)
with random batch norms, exactly what the CTest fixture regenerates at test time with
    /usr/bin/python3 tools/convert_torchvision.py --arch resnet18 --random-seed 0 --random-bn --out <build>/resnet18_seed0.safetensors
(both call convert_torchvision.random_model, so they cannot drift apart). The golden holds
    input   [2, 3, 64, 64] f32   randn from torch.Generator seeded 1
    logits  [2, 1000] f32        model.eval()(input), no grad
and metadata: the torch/torchvision versions, the converter's arguments, and checksums of the weights
(sum of |w| over floating tensors in float64, sum of num_batches_tracked), so the test can tell
"the regenerated weights differ from the golden's" (a different torch) from "the logits differ"
(a bug in strata). Random init depends on the torch version: rerun this after upgrading torch.

    /usr/bin/python3 tools/make_resnet18_golden.py [OUT]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_torchvision as cv  # noqa: E402

ARCH, SEED, INPUT_SEED = "resnet18", 0, 1


def weight_checksums(sd):
    """(sum |w| over floating tensors in float64, sum of integer tensors) of a state_dict."""
    fsum = sum(float(t.double().abs().sum()) for t in sd.values() if t.is_floating_point())
    isum = sum(int(t.sum()) for t in sd.values() if not t.is_floating_point())
    return fsum, isum


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "golden", "resnet18_logits.safetensors")
    import torchvision
    model = cv.random_model(ARCH, SEED, random_bn=True).eval()
    sd = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    fsum, isum = weight_checksums(sd)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(INPUT_SEED))
    with torch.no_grad():
        logits = model(x)
    meta = {
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "weights": f"convert_torchvision.py --arch {ARCH} --random-seed {SEED} --random-bn",
        "weights_abs_sum": repr(fsum), "weights_int_sum": str(isum),
        "input": f"torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed({INPUT_SEED}))",
    }
    cv.write_safetensors(out, [("input", x), ("logits", logits)], meta)
    print(f"wrote {out}: logits max |y| {logits.abs().max().item():.3f}, weights sum|w| {fsum:.6f}, "
          f"int sum {isum} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
