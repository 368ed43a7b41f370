"""Write a PNG grid of synthetic chest X-rays with their lung-mask contours.

    python scripts/synthetic_samples.py --out docs/img/synthetic_samples.png --size 128 --n 8
"""

import argparse
import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from multimix_jax.names import CLASS_NAMES  # noqa: E402
from multimix_jax.synthetic import make_example  # noqa: E402



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/img/synthetic_samples.png")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--dpi", type=int, default=80)
    args = ap.parse_args(argv)

    cols = min(args.cols, args.n)
    rows = -(-args.n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(args.n):
        ex = make_example(i, seed=args.seed, size=args.size)
        ax = axes.ravel()[i]
        ax.imshow(ex["image"], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.contour(ex["mask"], levels=[0.5], colors="#00d0ff", linewidths=0.8)
        ax.set_title(f"#{i} {CLASS_NAMES[ex['label']]}", fontsize=9,
                     color="tab:red" if ex["label"] else "black")
    fig.tight_layout(pad=0.3)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=args.dpi, format="png")
    # a 128-colour palette keeps the file small (the noisy images compress badly as RGB)
    Image.open(buf).convert("RGB").quantize(colors=128, method=Image.Quantize.FASTOCTREE).save(args.out, optimize=True)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
