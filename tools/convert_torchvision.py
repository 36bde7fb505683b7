#!/usr/bin/python3
"""Converts a PyTorch / torchvision state_dict to safetensors, the format strata loads.

    # published weights you downloaded (e.g. resnet18-f37072fd.pth from the torchvision docs page)
    /usr/bin/python3 tools/convert_torchvision.py --arch resnet18 --weights resnet18-f37072fd.pth --out resnet18.safetensors
    # torchvision's random init, seeded (for tests: the same seed gives the same weights on the same torch)
    /usr/bin/python3 tools/convert_torchvision.py --arch resnet18 --random-seed 0 --out resnet18_seed0.safetensors
    # the same with random batch-norm weights and running statistics (what tests/test_pretrained.cpp uses)
    /usr/bin/python3 tools/convert_torchvision.py --arch resnet18 --random-seed 0 --random-bn --out resnet18_seed0.safetensors
    # any .pth state_dict, no model: just the tensors
    /usr/bin/python3 tools/convert_torchvision.py --weights anything.pth --out anything.safetensors

With --arch the weights are loaded into torchvision.models.<arch> first (strictly: every key and shape
must match), so a file that would not load into the model is refused here, not in C++; the output
then is model.state_dict() in its order, with torchvision's keys (strata's nn::resnet18/34 use the
same keys: nn::resnet18()->load_state_dict(load_safetensors(path))). Without --arch every tensor of
the .pth is written as it is keyed; a checkpoint that wraps its state_dict ({"state_dict": ...},
{"model": ...}) is unwrapped, and --strip-prefix removes e.g. DataParallel's "module.".

Floating tensors are written as F32 (--keep-dtype keeps F64/F16/BF16); integer buffers keep their
dtype, so num_batches_tracked stays I64 as PyTorch has it. The __metadata__ names the source, the
arch, the seed and the torch/torchvision versions (random init depends on them).

Format written (https://github.com/huggingface/safetensors): 8-byte little-endian header length,
the JSON header padded with spaces to a multiple of 8, then every tensor's bytes in order. The file
is written to a temporary beside the target and renamed over it, so no half-written file is left.
No network access: published weights must be downloaded by the user (torchvision's URLs are listed
in its docs; torch.hub's cache ~/.cache/torch/hub/checkpoints holds them once downloaded).
"""
import argparse
import json
import os
import struct
import sys
import tempfile

import torch

# torch dtype -> safetensors dtype name
DTYPES = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8", torch.bool: "BOOL",
}


def fail(msg):
    sys.exit(f"convert_torchvision.py: {msg}")


def tensor_bytes(t):
    """Row-major little-endian bytes of a CPU tensor."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)  # numpy has no bfloat16: the same bits as int16
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata):
    """Writes [(name, tensor)] and a {str: str} metadata dict to path atomically (temp + rename)."""
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    for name, t in tensors:
        raw = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    target_dir = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=target_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for raw in blobs:
                f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return offset


def load_pth(path, allow_pickle):
    """The state_dict ({name: tensor}) stored in a .pth file, unwrapped from common checkpoint layouts."""
    if not os.path.isfile(path):
        fail(f"--weights '{path}' is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001 (torch raises many kinds)
        hint = "" if allow_pickle else " (if it pickles whole objects and you trust it, add --allow-pickle)"
        fail(f"could not load '{path}' as a PyTorch file: {type(e).__name__}: {e}{hint}")
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        fail(f"'{path}' holds a {type(obj).__name__}, expected a state_dict (a dict of name -> tensor)")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        fail(f"'{path}' has non-tensor entries {bad[:5]}, expected a state_dict of tensors only")
    return obj


def check_keys(model, sd, path, arch):
    """Fails with a short list of missing, unexpected and mis-shaped keys unless sd fits model exactly.
    Batch norms' num_batches_tracked, which checkpoints saved before PyTorch 0.4.1 lack, are added as 0
    (what BatchNorm's own loader does for them)."""
    want = model.state_dict()
    added = [k for k in want if k.endswith("num_batches_tracked") and k not in sd]
    for k in added:
        sd[k] = torch.zeros((), dtype=torch.long)
    if added:
        print(f"convert_torchvision.py: '{path}' has no num_batches_tracked ({len(added)} batch norms): written as 0")
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k} {list(sd[k].shape)} (expected {list(want[k].shape)})"
              for k in want if k in sd and sd[k].shape != want[k].shape]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            problems.append(f"{len(keys)} {what}: {', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}")
    if problems:
        fail(f"'{path}' does not load into torchvision's {arch} ({len(sd)} tensors, the model has {len(want)}): "
             + "; ".join(problems) + " (a prefix to drop? see --strip-prefix)")


def randomize_batch_norms(model):
    """Gives every batch norm random affine parameters and running statistics (drawn from the seeded
    global generator), so a test that loads the file checks them too (torchvision's init leaves them
    at 1, 0, 0, 1, which equal any fresh model's)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, ())))


def build_model(arch):
    import torchvision
    models = torchvision.models
    names = models.list_models(module=models) if hasattr(models, "list_models") else [
        n for n in dir(models) if n[:1].islower() and callable(getattr(models, n))]
    if arch not in names:
        fail(f"--arch '{arch}' is not a torchvision classification model, expected one of: {', '.join(sorted(names))}")
    return models.get_model(arch, weights=None) if hasattr(models, "get_model") else getattr(models, arch)(weights=None)


def random_model(arch, seed, random_bn=False):
    """torchvision's <arch> with its random init after torch.manual_seed(seed) (and random batch norms)."""
    torch.manual_seed(seed)
    model = build_model(arch)
    if random_bn:
        randomize_batch_norms(model)
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", help="torchvision model name (resnet18, resnet34, ...); omit to convert any state_dict")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="a .pth file holding a state_dict")
    src.add_argument("--random-seed", type=int, help="torchvision's random init after torch.manual_seed(N) (needs --arch)")
    p.add_argument("--random-bn", action="store_true",
                   help="with --random-seed: random batch-norm weights, biases and running statistics too")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.add_argument("--strip-prefix", default="", help="remove this prefix from every key that has it (e.g. 'module.')")
    p.add_argument("--keep-dtype", action="store_true", help="keep F64/F16/BF16 floating tensors instead of writing F32")
    p.add_argument("--allow-pickle", action="store_true", help="load .pth files that pickle objects (trusted files only)")
    a = p.parse_args()
    out_dir = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(out_dir):
        fail(f"--out '{a.out}': the directory '{out_dir}' does not exist")

    import torchvision
    meta = {"format": "pt", "converter": "strata tools/convert_torchvision.py",
            "torch": torch.__version__, "torchvision": torchvision.__version__}
    if a.random_seed is not None:
        if not a.arch:
            fail("--random-seed needs --arch (random init of which model?)")
        model = random_model(a.arch, a.random_seed, a.random_bn)
        meta.update(source="random init" + (", random batch norms" if a.random_bn else ""), seed=str(a.random_seed))
    else:
        sd = load_pth(a.weights, a.allow_pickle)
        meta["source"] = os.path.basename(a.weights)
        model = None
        if a.strip_prefix:
            sd = {k[len(a.strip_prefix):] if k.startswith(a.strip_prefix) else k: v for k, v in sd.items()}
        if a.arch:
            model = build_model(a.arch)
            check_keys(model, sd, a.weights, a.arch)
            model.load_state_dict(sd, strict=True)
    if model is not None:
        meta["arch"] = a.arch
        sd = model.state_dict()

    tensors = []
    for name, t in sd.items():
        if t.is_floating_point() and not a.keep_dtype:
            t = t.float()
        if t.dtype not in DTYPES:
            fail(f"tensor '{name}' has dtype {t.dtype}, expected one of {', '.join(str(d) for d in DTYPES)}")
        tensors.append((name, t))
    nbytes = write_safetensors(a.out, tensors, meta)
    print(f"convert_torchvision.py: wrote {a.out}: {len(tensors)} tensors, {nbytes / 1e6:.1f} MB"
          f" ({meta.get('arch', 'no arch')}, {meta['source']}{', seed ' + meta['seed'] if 'seed' in meta else ''})")


if __name__ == "__main__":
    main()
