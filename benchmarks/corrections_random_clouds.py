"""Where sliced corrections cost iterations: random small clouds, plain Sinkhorn vs ``SlicedSinkhorn``.

Run: ``python benchmarks/corrections_random_clouds.py [num_problems]`` (float64, about a minute for 40 on
the 2-core CPU). Each problem is the hypothesis test's family (``tests/sliced_sinkhorn_test.py``): ``n, m`` in
8..40 atoms in 2-D, the target shifted by a normal draw, 30 % zero weights in half the problems,
ε in {0.02, 0.1, 0.5} in turn, padded to 40 atoms. Prints the iterations to 1e-3 of OTT's Sinkhorn
(``inner_iterations=1``), of the training-free corrections without Anderson and with it (memory 2), and of
the latter with ``safeguard=True`` (plain Sinkhorn raced in lockstep), and counts the problems where each
needs more iterations than plain Sinkhorn.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

import ottsliced as ots

SIZE, THRESHOLD, CAP = 40, 1e-3, 20_000


def _measure(rs: np.random.Generator, n: int, zero_frac: float):
  x = rs.normal(size=(n, 2))
  w = rs.uniform(0.1, 1.0, size=n) * (rs.uniform(size=n) >= zero_frac)
  w[0] = max(w[0], 0.1)
  return x, w / w.sum()


def problem(n: int, m: int, seed: int, epsilon: float, zero_frac: float) -> linear_problem.LinearProblem:
  rs = np.random.default_rng(seed)
  x, a = _measure(rs, n, zero_frac)
  y, b = _measure(rs, m, zero_frac)
  y = y + rs.normal(size=2)
  x, y = np.pad(x, ((0, SIZE - n), (0, 0))), np.pad(y, ((0, SIZE - m), (0, 0)))
  a, b = np.pad(a, (0, SIZE - n)), np.pad(b, (0, SIZE - m))
  geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=epsilon)
  return linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b))


def main(num: int) -> None:
  run = jax.jit(lambda solver, prob: solver(prob))
  plain = jax.jit(lambda prob: sinkhorn.Sinkhorn(threshold=THRESHOLD, inner_iterations=1, max_iterations=CAP)(prob))

  def iters(out) -> int:
    return int(jnp.sum(out.errors != -1))

  rs = np.random.default_rng(123)
  rows = []
  print("n  m  seed  eps   zeros%  plain  corrections  +Anderson  safeguarded")
  for t in range(num):
    n, m = (int(v) for v in rs.integers(8, SIZE + 1, 2))
    seed, eps, zf = int(rs.integers(10_000)), (0.02, 0.1, 0.5)[t % 3], (0.0, 0.3)[(t // 3) % 2]
    prob = problem(n, m, seed, eps, zf)
    theta = ots.directions(jax.random.key(seed), 2, 16, dtype=jnp.float64)
    kw = {"threshold": THRESHOLD, "max_iterations": CAP}
    counts = (
      iters(plain(prob)),
      iters(run(ots.SlicedSinkhorn(theta, anderson_memory=0, **kw), prob)),
      iters(run(ots.SlicedSinkhorn(theta, anderson_memory=2, **kw), prob)),
      iters(run(ots.SlicedSinkhorn(theta, anderson_memory=2, safeguard=True, **kw), prob)),
    )
    rows.append(counts)
    flag = "  corrections > plain" * (counts[1] > counts[0]) + "  +Anderson > plain" * (counts[2] > counts[0])
    flag += "  safeguarded > plain" * (counts[3] > counts[0])
    print(
      f"{n:2d} {m:2d} {seed:5d} {eps:4g} {int(zf * 100):4d} {counts[0]:7d} {counts[1]:12d} {counts[2]:10d} "
      f"{counts[3]:12d}{flag}"
    )
  r = np.asarray(rows)
  print(
    f"more iterations than plain Sinkhorn: corrections {int((r[:, 1] > r[:, 0]).sum())} of {num}, "
    f"with Anderson {int((r[:, 2] > r[:, 0]).sum())} of {num}, safeguarded {int((r[:, 3] > r[:, 0]).sum())} of "
    f"{num}; median ratio to plain {np.median(r[:, 1] / r[:, 0]):.2f} / {np.median(r[:, 2] / r[:, 0]):.2f} / "
    f"{np.median(r[:, 3] / r[:, 0]):.2f}"
  )


if __name__ == "__main__":
  with jax.enable_x64(True):
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
