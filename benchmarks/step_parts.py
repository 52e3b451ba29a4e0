"""Where a training step's time goes: the recurrent layer and the output layer, each timed alone.

    python benchmarks/step_parts.py                          # the default's sizes, 3,706 movies (MovieLens-1M)
    python benchmarks/step_parts.py --hidden 384 --items 17770

Each part runs its forward pass and its gradient in a ``tf.function`` at a default batch's sizes: the GRU over
``batch_size`` windows of ``max_len`` steps (``embedding`` in, ``hidden`` out, a quarter of the cells left-padded
and masked), and the output layer over the cells that hold an item (``--held`` of them) with its softmax
cross-entropy, then its matrix products and its softmax apart. Milliseconds per step, the mean of ``--repeats``
after one warm-up call, each pass printed so that the spread shows. Whole steps and tokens/s:
``benchmarks/throughput.py``. Run it alone, as every benchmark here (docs/operations.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seqrec.core.config import TrainConfig
from seqrec.experiment.cli import Parser, positive, script_status

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import machine  # noqa: E402  (the same machine line)

DEFAULTS = TrainConfig()
PADDED_SHARE = 0.23  # of the default's window cells on the authors' split (docs/operations.md, "Padded steps")


def timed(step: Callable, repeats: int) -> float:
    """Milliseconds a call of ``step``, after one call that traces and warms it."""
    step()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return 1000 * (time.perf_counter() - started) / repeats


def parts(args: argparse.Namespace) -> dict[str, Callable]:
    """The timed steps, each a ``tf.function`` returning its gradients."""
    from seqrec.core.backend import keras, tf

    rng = np.random.default_rng(0)
    held_from = rng.integers(0, int(2 * PADDED_SHARE * args.max_len) + 1, size=args.batch_size)
    mask = tf.constant(np.arange(args.max_len)[None, :] >= held_from[:, None])
    # variables, so that each part's gradient reaches its input too, as it does in training
    windows = tf.Variable(rng.normal(size=(args.batch_size, args.max_len, args.embedding)).astype("float32"))
    features = tf.Variable(rng.normal(size=(args.held, args.hidden)).astype("float32"))
    targets = tf.constant(rng.integers(0, args.items, size=args.held))
    gru, output = keras.layers.GRU(args.hidden, return_sequences=True), keras.layers.Dense(args.items)
    logits = tf.Variable(output(features))

    def gradient(loss_of: Callable, watched: list) -> Callable:
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = loss_of()
            return tape.gradient(loss, watched)
        return step

    def crossentropy(scores):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, scores))

    return {"GRU": gradient(lambda: tf.reduce_sum(gru(windows, mask=mask)), [windows, *gru.trainable_weights]),
            "output layer + softmax CE": gradient(lambda: crossentropy(output(features)),
                                                  [features, *output.trainable_weights]),
            "  its matrix products": gradient(lambda: tf.reduce_sum(output(features)),
                                              [features, *output.trainable_weights]),
            "  its softmax CE": gradient(lambda: crossentropy(logits), [logits])}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("hidden", "embedding", "max_len", "batch_size"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=positive, default=getattr(DEFAULTS, name),
                            help=f"default: {getattr(DEFAULTS, name)}, the default configuration's")
    parser.add_argument("--items", type=positive, default=3706, help="catalogue size (default: 3706, MovieLens-1M)")
    parser.add_argument("--held", type=positive, help="cells holding an item (default: 77 %% of the batch's)")
    parser.add_argument("--repeats", type=positive, default=30, help="timed calls per part and pass (default: 30)")
    parser.add_argument("--passes", type=positive, default=2, help="passes over the parts (default: 2)")
    args = parser.parse_args(argv)
    args.held = args.held or round((1 - PADDED_SHARE) * args.batch_size * args.max_len)
    steps = parts(args)
    print(f"machine: {machine()}; batch {args.batch_size} x {args.max_len} steps, {args.held} held cells, "
          f"embedding {args.embedding}, hidden {args.hidden}, {args.items} items")
    print("| part | " + " | ".join(f"ms, pass {n + 1}" for n in range(args.passes)) + " |")
    print("|---|" + "---:|" * args.passes)
    times = {name: [] for name in steps}
    for _ in range(args.passes):
        for name, step in steps.items():
            times[name].append(timed(step, args.repeats))
    for name, values in times.items():
        print(f"| {name} | " + " | ".join(f"{value:.1f}" for value in values) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/step_parts.py", main))
