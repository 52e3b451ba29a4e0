"""Training throughput: tokens/s and where the CPU time goes (user vs kernel), for variants of one configuration.

    python benchmarks/throughput.py              # the default against glibc's plain malloc, and with padded steps
    python benchmarks/throughput.py --variant fast:max_len=20,batch_size=32 --variant bottleneck:projection=128
    python benchmarks/throughput.py --variant fit:input=feed --variant pydataset:input=pydataset  # input pipelines

Each variant trains ``--batches`` batches of the real training loop's model, loss and batches (no validation) in
a fresh process, after one warm-up batch, and reports the target tokens per second and the process's user and
kernel CPU seconds; the last column is the ratio to the first variant. ``malloc=glibc`` runs a variant without
:func:`seqrec.core.training.keep_freed_memory`; ``padding=compute`` computes the logits of the padded window
cells too, as training did before :func:`seqrec.core.training.skips_padding`. ``input`` is how batches reach the
step: ``step`` (the default) calls ``train_on_batch`` with numpy arrays, ``feed`` runs ``model.fit`` through
:class:`seqrec.core.training.EpochFeed` as training does, ``pydataset`` runs ``model.fit`` on the batches as a Keras
``PyDataset`` (what training did before). ``intra`` and ``inter`` size TensorFlow's two thread pools (0, the
default: one thread per CPU). Run it alone: TensorFlow slows several-fold when another process shares the cores,
and compare variants as ratios measured in the same run. ``--busy N`` makes that sharing the measurement: N
single-threaded busy loops run beside each variant, as other jobs on a shared machine would.

    python benchmarks/throughput.py --busy 1 --variant default: --variant one-thread:intra=1,inter=1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from seqrec.experiment.cli import Parser, argument_type, count, positive, script_status

DEFAULT_VARIANTS = ["default:", "glibc-malloc:malloc=glibc", "padded-steps:padding=compute"]
INPUTS = ("step", "feed", "pydataset")
PADDING = ("skip", "compute")


BENCHMARK_KEYS = {"malloc": ("keep", "glibc"), "padding": PADDING, "input": INPUTS}
THREAD_KEYS = ("intra", "inter")  # TensorFlow's intra- and inter-op pools; 0: its default, one thread per CPU


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``name:key=value,key=value`` (TrainConfig fields, and ``malloc``, ``padding``, ``input``), checked here so
    that a bad one is refused before any child process starts."""
    name, _, assignments = text.partition(":")
    pairs = [item.split("=", 1) for item in assignments.split(",") if item]
    if not name or any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected NAME:key=value,..., got {text!r}")
    overrides = dict(pairs)
    for key, allowed in BENCHMARK_KEYS.items():
        if overrides.get(key, allowed[0]) not in allowed:
            raise argparse.ArgumentTypeError(f"{key} must be one of {allowed}, got {overrides[key]!r}")
    for key in THREAD_KEYS:
        if not overrides.get(key, "0").isdigit():
            raise argparse.ArgumentTypeError(f"{key} must be a thread count (0: TensorFlow's default), "
                                             f"got {overrides[key]!r}")
    try:
        config_of({key: value for key, value in overrides.items() if key not in (*BENCHMARK_KEYS, *THREAD_KEYS)})
    except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
        raise argparse.ArgumentTypeError(f"variant {name!r}: {error}") from None
    return name, overrides


def config_of(overrides: dict[str, str]):
    """The default TrainConfig with ``overrides`` (strings, parsed as the command line parses each field)."""
    from seqrec.core.config import TrainConfig

    defaults = TrainConfig()
    unknown = sorted(set(overrides) - set(vars(defaults)))
    if unknown:
        raise ValueError(f"unknown keys {unknown}: expected fields of TrainConfig or "
                         f"{sorted([*BENCHMARK_KEYS, *THREAD_KEYS])}")
    return replace(defaults, **{key: argument_type(key, getattr(defaults, key))(value)
                                for key, value in overrides.items()})


def window_items(inputs):
    """The item matrix of a batch's inputs (a dict when the model has inputs besides the items)."""
    return inputs["items"] if isinstance(inputs, dict) else inputs


def measure(data: str, overrides: dict[str, str], batches: int) -> dict[str, float]:
    """In this process: train ``batches`` batches with ``overrides`` and time them."""
    import numpy as np

    from seqrec.core import training
    from seqrec.core.backend import tf
    from seqrec.core.model import build_model, keras
    from seqrec.core.sampling import TrainingBatches
    from seqrec.core.sources import load_data

    overrides = dict(overrides)  # checked by parse_variant
    padding = overrides.pop("padding", "skip")
    if overrides.pop("malloc", "keep") != "glibc":
        training.keep_freed_memory()
    feed_by = overrides.pop("input", "step")
    tf.config.threading.set_intra_op_parallelism_threads(int(overrides.pop("intra", 0)))  # before any op runs
    tf.config.threading.set_inter_op_parallelism_threads(int(overrides.pop("inter", 0)))
    config = config_of(overrides)
    split = load_data(data)
    keras.utils.set_random_seed(config.seed)
    steps = TrainingBatches(split.train, config, seed=config.seed, n_items=split.n_items)
    skip_padding = padding == "skip" and training.skips_padding(config)
    model = build_model(split.n_items, config.hidden, config.embedding, config.resolved_dropout, config.cell,
                        config.projection, return_sequences=True, model=config.model, max_len=config.max_len,
                        blocks=config.blocks, heads=config.heads, skip_padding=skip_padding,
                        exclude_seen=config.resolved_exclude_seen)
    model.compile(optimizer=keras.optimizers.Adam(config.lr), loss=training.training_loss(config))
    model.train_on_batch(*steps[0])
    # fit's input: training's epoch feed (batch 0 left out, as the warm-up took it) or Keras' PyDataset adapter
    pipeline = (training.EpochFeed(steps).dataset().repeat().skip(1).take(batches) if feed_by == "feed" else steps)
    if feed_by != "step":  # one warm-up batch traces Keras' fit step
        model.fit(pipeline, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    tokens = int(sum(np.count_nonzero(window_items(steps[index % len(steps)][0])) for index in range(1, batches + 1)))
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    if feed_by == "step":
        for index in range(1, batches + 1):
            model.train_on_batch(*steps[index % len(steps)][:2])
    else:
        model.fit(pipeline, steps_per_epoch=batches, epochs=1, verbose=0, shuffle=False)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    return {"tokens_per_second": tokens / wall, "wall": wall, "user": after.ru_utime - before.ru_utime,
            "kernel": after.ru_stime - before.ru_stime, "page_faults": after.ru_minflt - before.ru_minflt}


@contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """``count`` single-threaded busy processes while inside: the other jobs of a shared machine."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def machine() -> str:
    """The CPU model (from /proc/cpuinfo where there is one) and the number of CPUs this process may use."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="auto")
    parser.add_argument("--batches", type=positive, default=100, help="timed batches per variant (default: 100)")
    parser.add_argument("--variant", type=parse_variant, action="append",
                        help="NAME:key=value,... (default: the default configuration, then with glibc's malloc)")
    parser.add_argument("--busy", type=count, default=0,
                        help="single-threaded busy loops running beside each variant (default: 0, alone)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # JSON overrides: measure in this process
    args = parser.parse_args(argv)
    if args.child is not None:  # errors as one line and status 2, as seqrec's (this process imports TensorFlow)
        return script_status("benchmarks/throughput.py",
                             lambda: print(json.dumps(measure(args.data, json.loads(args.child), args.batches))) or 0)
    variants = args.variant or [parse_variant(text) for text in DEFAULT_VARIANTS]
    print(f"machine: {machine()}; {args.batches} batches each; {args.busy} busy loops beside")
    print("| variant | tokens/s | user CPU (s) | kernel CPU (s) | kernel share | page faults | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    first = None
    for name, overrides in variants:
        with busy_loops(args.busy):
            child = subprocess.run([sys.executable, __file__, "--data", args.data, "--batches", str(args.batches),
                                    "--child", json.dumps(overrides)], capture_output=True, text=True)
        if child.returncode != 0:  # its one line (bad data, out of memory, ...)
            said = child.stderr.strip().splitlines()
            print(said[-1] if said else f"variant {name}: exit status {child.returncode}", file=sys.stderr)
            return child.returncode
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        first = first or figures["tokens_per_second"]
        share = figures["kernel"] / max(figures["user"] + figures["kernel"], 1e-9)
        print(f"| {name} | {figures['tokens_per_second']:.0f} | {figures['user']:.1f} | {figures['kernel']:.1f} | "
              f"{100 * share:.0f} % | {figures['page_faults']:,} | {figures['tokens_per_second'] / first:.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/throughput.py", main))
