#!/usr/bin/python3
"""torch_iresnet.py -- the PyTorch reference of the CPU benchmark: our IResNet
(common/iresnet.c, after insightface's arcface_torch backbones/iresnet.py) with
an ArcFace head, trained and run for inference in PyTorch on this machine.

Usage: torch_iresnet.py [--model r50] [--batch 32] [--threads 2] [--steps 5] ...
       torch_iresnet.py --check      (a tiny model, one step: the smoke test)

Prints one line of JSON to stdout: median training images/s (a step is forward,
loss, backward, SGD step, zero_grad), median inference images/s (backbone only,
eval mode, no autograd), peak RSS in MiB and the per-step times; diagnostics go
to stderr. Exits 77 (skipped) when torch cannot be imported, 1 when --check
fails. Installs nothing.
"""
import argparse
import ctypes
import json
import math
import os
import resource
import statistics
import sys
import time

SKIPPED = 77  # ctest's SKIP_RETURN_CODE for the project's tests

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as error:
    print(f"torch_iresnet: skipped, cannot import torch ({error}); install python3-torch", file=sys.stderr)
    sys.exit(SKIPPED)

STAGE_BLOCKS = {"r18": [2, 2, 2, 2], "r34": [3, 4, 6, 3], "r50": [3, 4, 14, 3], "r100": [3, 13, 30, 3]}
INPUT_SIZE = 112
BN_EPS = 1e-5  # iresnet.c's bn_eps; the momentum is PyTorch's default 0.1, as there
SEED = 20240607


def conv3x3(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN, conv3x3, BN, PReLU, conv3x3 (stride), BN, + shortcut; no activation
    after the sum, as insightface's and ours."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.prelu = nn.PReLU(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels, stride)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=BN_EPS),
            )

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """Attribute names follow iresnet.c's parameter names (conv1, bn1, prelu,
    layer1.0.bn1, ..., bn2, fc, features), so the two models' parameter lists
    line up tensor by tensor."""

    def __init__(self, stage_blocks, width, embedding_size, dropout):
        super().__init__()
        self.conv1 = conv3x3(3, width)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.prelu = nn.PReLU(width)
        in_channels = width
        for stage, blocks in enumerate(stage_blocks):
            out_channels = width << stage
            layer = [IBasicBlock(in_channels, out_channels, 2)]
            layer += [IBasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
            in_channels = out_channels
        final_size = INPUT_SIZE >> len(stage_blocks)
        self.bn2 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(in_channels * final_size * final_size, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=BN_EPS)
        # insightface freezes the embedding BN's scale at 1; ours too (dgamma NULL).
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        # insightface's initialisation, which iresnet.c copies; BN and PReLU
        # defaults (gamma 1, beta 0, alpha 0.25) already match.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


class ArcFace(nn.Module):
    """Classic ArcMarginProduct (easy_margin False) with cross entropy: logits
    s * cos(theta) for the other classes and s * cos(theta + m) for the target,
    falling back to s * (cos - mm) once theta + m passes pi. The margin is
    computed for the target column only, as margin.c does, rather than for
    the whole (N, classes) matrix and then masked."""

    def __init__(self, classes, embedding_size, s=64.0, m=0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, embedding_size))
        nn.init.normal_(self.weight, 0, 0.01)  # classifier.c's initialisation
        self.s = s
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.th = math.cos(math.pi - m)
        self.mm = math.sin(math.pi - m) * m

    def forward(self, embeddings, labels):
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight))
        target_index = labels[:, None]
        target = cosine.gather(1, target_index)
        sine = torch.sqrt((1.0 - target * target).clamp(0, 1))
        phi = target * self.cos_m - sine * self.sin_m
        phi = torch.where(target > self.th, phi, target - self.mm)
        logits = cosine.scatter(1, target_index, phi) * self.s
        return F.cross_entropy(logits, labels)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(STAGE_BLOCKS), default="r50")
    parser.add_argument("--width", type=int, default=64, help="channels of the first stage")
    parser.add_argument("--embedding", type=int, default=512)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="intra-op threads (default: the cores this process may use)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed training steps, and untimed forward passes, before the timed ones")
    parser.add_argument("--forward-steps", type=int, default=5, help="timed inference forward passes")
    parser.add_argument("--check", action="store_true",
                        help="smoke test: r18, width 8, embedding 16, batch 4, 100 classes, one step, one thread; "
                             "fails unless the loss is finite and the parameters changed")
    args = parser.parse_args()
    if args.check:
        args.model, args.width, args.embedding, args.batch, args.classes = "r18", 8, 16, 4, 100
        args.steps, args.warmup, args.forward_steps = 1, 0, 1
        # One thread: OpenMP threads waiting for a busy core cost a tiny model
        # seconds per step, and the smoke test checks results, not speed.
        args.threads = 1
    for name in ("width", "embedding", "batch", "classes", "threads", "steps", "forward_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    if not 0 <= args.dropout < 1:
        parser.error("--dropout must be in [0, 1)")
    return args


def pin_openblas_threads(threads):
    """Debian's torch runs its matrix products (nn.Linear, the classifier) in
    OpenBLAS, whose own thread pool starts one thread per core and is not
    resized by torch.set_num_threads (that sets OpenMP's and MKL's). Returns
    whether an OpenBLAS was found and set."""
    try:
        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(threads)
    except (OSError, AttributeError):
        return False
    return True


def describe_runtime(openblas_pinned):
    """One stderr line: what PyTorch will run the model with."""
    backend = next((line.split(":", 1)[1].strip() for line in torch.__config__.parallel_info().splitlines()
                    if "parallel backend" in line), "unknown")
    mkldnn = "on" if torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled else "off"
    openblas = "set to the same count" if openblas_pinned else "not found"
    print(f"torch_iresnet: torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
          f"{torch.get_num_interop_threads()} inter-op, {backend} backend, mkldnn {mkldnn}, "
          f"OpenBLAS threads {openblas}", file=sys.stderr)


def minor_page_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_training(backbone, head, optimizer, images, labels, warmup, steps):
    """Seconds and minor page faults of each of the `steps` timed training
    steps, and their losses."""
    backbone.train()
    times, faults, losses = [], [], []
    for step in range(warmup + steps):
        start, start_faults = time.perf_counter(), minor_page_faults()
        loss = head(backbone(images), labels)
        loss.backward()
        optimizer.step()
        # PyTorch 2's default; frees the gradients instead of writing zeros.
        optimizer.zero_grad(set_to_none=True)
        elapsed, step_faults = time.perf_counter() - start, minor_page_faults() - start_faults
        if step >= warmup:
            times.append(elapsed)
            faults.append(step_faults)
            losses.append(loss.item())
    return times, faults, losses


def time_inference(backbone, images, warmup, steps):
    """Seconds and minor page faults of each of the `steps` timed inference
    forward passes."""
    backbone.eval()
    times, faults = [], []
    with torch.no_grad():
        for step in range(warmup + steps):
            start, start_faults = time.perf_counter(), minor_page_faults()
            backbone(images)
            elapsed, pass_faults = time.perf_counter() - start, minor_page_faults() - start_faults
            if step >= warmup:
                times.append(elapsed)
                faults.append(pass_faults)
    return times, faults


def check_step(backbone, head, before, losses):
    """The --check verdict: a list of what went wrong, empty when nothing did."""
    failures = [f"loss {loss} is not finite" for loss in losses if not math.isfinite(loss)]
    for name, parameter in list(backbone.named_parameters()) + list(head.named_parameters(prefix="head")):
        changed = not torch.equal(before[name], parameter.detach())
        if parameter.requires_grad and not changed:
            failures.append(f"{name} did not change after a training step")
        if not parameter.requires_grad and changed:
            failures.append(f"{name} is frozen but changed")
    return failures


def main():
    args = parse_args()
    # Inter-op threads must be set before any parallel work starts; one, so
    # the cores all go to the intra-op pool that runs the convolutions.
    torch.set_num_interop_threads(1)
    torch.set_num_threads(args.threads)
    describe_runtime(pin_openblas_threads(args.threads))

    torch.manual_seed(SEED)
    backbone = IResNet(STAGE_BLOCKS[args.model], args.width, args.embedding, args.dropout)
    head = ArcFace(args.classes, args.embedding)
    optimizer = torch.optim.SGD(list(backbone.parameters()) + list(head.parameters()),
                                lr=0.1, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(args.batch, 3, INPUT_SIZE, INPUT_SIZE)
    labels = torch.randint(args.classes, (args.batch,))
    backbone_parameters = sum(p.numel() for p in backbone.parameters())
    print(f"torch_iresnet: {args.model} width {args.width} embedding {args.embedding}: "
          f"{backbone_parameters} backbone parameters, {head.weight.numel()} in the classifier", file=sys.stderr)

    before = {}
    if args.check:
        before = {name: p.detach().clone() for name, p in backbone.named_parameters()}
        before.update({name: p.detach().clone() for name, p in head.named_parameters(prefix="head")})

    train_times, train_faults, losses = time_training(backbone, head, optimizer, images, labels,
                                                      args.warmup, args.steps)
    forward_times, forward_faults = time_inference(backbone, images, args.warmup, args.forward_steps)
    # ru_maxrss is in KiB on Linux.
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(json.dumps({
        "impl": "pytorch",
        "torch_version": torch.__version__,
        "model": args.model,
        "width": args.width,
        "embedding": args.embedding,
        "batch": args.batch,
        "classes": args.classes,
        "threads": args.threads,
        "backbone_parameters": backbone_parameters,
        "train_images_per_s": round(statistics.median(args.batch / t for t in train_times), 3),
        "forward_images_per_s": round(statistics.median(args.batch / t for t in forward_times), 3),
        "peak_rss_mib": round(peak_rss_mib),
        # PyTorch allocates every activation and gradient afresh each step and
        # glibc returns large blocks to the kernel, so each step faults its
        # memory in again (ours allocates once): part of the gap, on machines
        # where page faults are slow a large part.
        "train_page_faults_per_step": round(statistics.median(train_faults)),
        "forward_page_faults_per_pass": round(statistics.median(forward_faults)),
        "train_step_s": [round(t, 4) for t in train_times],
        "forward_s": [round(t, 4) for t in forward_times],
    }))

    if args.check:
        failures = check_step(backbone, head, before, losses)
        for failure in failures:
            print(f"torch_iresnet: check failed: {failure}", file=sys.stderr)
        if failures:
            return 1
        print(f"torch_iresnet: check passed (loss {losses[0]:.4f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
