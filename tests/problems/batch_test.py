"""Online geometries (``PointCloud(batch_size=...)``) and ``ProblemBatch.online_batch_size``.

The online path recomputes costs block by block and must give the dense
path's potentials, errors and iteration counts while never building the
``[n, m]`` cost matrix.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem

import ottsliced as ots
from ottsliced.solvers.iterations import final_errors

EPS = 0.5
DIM = 3
BLOCK = 64  # not a divisor of the sizes below: OTT's remainder block is exercised too


def mixture(rs: np.random.Generator, n: int, shift: float = 0.0, zero_frac: float = 0.0):
  """A 3-component Gaussian mixture in ``DIM`` dimensions: points ``[n, DIM]``, weights ``[n]`` (sum 1)."""
  centres = np.array([[0.0] * DIM, [2.0] + [0.0] * (DIM - 1), [0.0, 2.0] + [0.0] * (DIM - 2)]) + shift
  x = centres[rs.integers(3, size=n)] + 0.5 * rs.normal(size=(n, DIM))
  w = rs.uniform(0.2, 1.0, size=n)
  if zero_frac:
    w[rs.uniform(size=n) < zero_frac] = 0.0
  return x, w / w.sum()


def pairs(seed: int, num: int, n: int, m: int, zero_frac: float = 0.0, online_batch_size=None) -> ots.ProblemBatch:
  rs = np.random.default_rng(seed)
  src = [mixture(rs, n, 0.0, zero_frac) for _ in range(num)]
  tgt = [mixture(rs, m, 0.5, zero_frac) for _ in range(num)]
  stack = lambda ms, k: np.stack([p[k] for p in ms])  # noqa: E731
  return ots.ProblemBatch(
    stack(src, 0), stack(tgt, 0), stack(src, 1), stack(tgt, 1), EPS, online_batch_size=online_batch_size
  )


def online_problem(prob: linear_problem.LinearProblem, block: int = BLOCK) -> linear_problem.LinearProblem:
  geom = pointcloud.PointCloud(prob.geom.x, prob.geom.y, epsilon=EPS, batch_size=block)
  return linear_problem.LinearProblem(geom, prob.a, prob.b)


@pytest.fixture
def model(x64):
  r"""A float64 model with :math:`\alpha=(d/L)\mathbf 1` (no fit: compile time is the test budget).

  Averaging the 1-D potentials over directions recovers the potential of a
  translation exactly (:math:`\mathbb E[\theta\theta^\top]=I/d`), so this
  :math:`\alpha` is a real warm start on the shifted mixtures below; what a
  fitted model does at large ``n`` is the scaling benchmark's job.
  """
  theta = ots.directions(jax.random.key(0), DIM, 32)
  return ots.SlicedInitializer(theta, jnp.full(32, DIM / 32), epsilon=EPS)


@pytest.fixture
def small_pairs(x64):
  return pairs(1, 2, 150, 130, zero_frac=0.1)


@pytest.mark.usefixtures("x64")
class TestOnlineMatchesDense:
  def test_amortized_solve(self, model, small_pairs):
    online = ots.ProblemBatch(small_pairs.x, small_pairs.y, small_pairs.a, small_pairs.b, EPS, online_batch_size=BLOCK)
    assert online.problem(0).geom.is_online
    assert not small_pairs.problem(0).geom.is_online
    out_d, info_d = ots.amortized_solve_batch(small_pairs, model, return_info=True)
    out_o, info_o = ots.amortized_solve_batch(online, model, return_info=True)
    a, b = np.asarray(small_pairs.a) > 0, np.asarray(small_pairs.b) > 0
    np.testing.assert_allclose(np.asarray(out_o.f)[a], np.asarray(out_d.f)[a], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out_o.g)[b], np.asarray(out_d.g)[b], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out_o.errors, out_d.errors, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(info_o.predicted_error, info_d.predicted_error, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(out_o.reg_ot_cost, out_d.reg_ot_cost, rtol=1e-10)
    errors = np.asarray(out_d.errors)
    assert np.all((errors > 0) & (errors < 0.5))  # a real prediction, not a degenerate one
    for k in range(small_pairs.num_pairs):  # a user's online PointCloud, one pair: the same as batched
      single = ots.amortized_solve(online_problem(small_pairs.problem(k)), model)
      assert single.geom.is_online
      np.testing.assert_allclose(single.f[a[k]], out_o.f[k][a[k]], rtol=1e-10, atol=1e-12)
      np.testing.assert_allclose(single.errors, out_o.errors[k], rtol=1e-8, atol=1e-14)

  @pytest.mark.parametrize("warm", [False, True], ids=["zeros", "sliced"])
  def test_solve_batch_same_iterations(self, model, small_pairs, warm):
    online = ots.ProblemBatch(small_pairs.x, small_pairs.y, small_pairs.a, small_pairs.b, EPS, online_batch_size=BLOCK)
    kw = {"threshold": 1e-3, "inner_iterations": 1, "max_iterations": 1000}
    out_d = ots.solve_batch(small_pairs, model if warm else None, **kw)
    out_o = ots.solve_batch(online, model if warm else None, **kw)
    iters = np.asarray(ots.num_iterations(out_o))
    np.testing.assert_array_equal(iters, ots.num_iterations(out_d))
    assert np.all(np.asarray(out_o.converged))
    np.testing.assert_allclose(final_errors(out_o), final_errors(out_d), rtol=1e-6, atol=1e-14)
    if warm:  # the warm start helps on the online geometry too
      zeros = ots.solve_batch(online, None, **kw)
      assert np.all(iters < np.asarray(ots.num_iterations(zeros)))


class TestOnlineBatchSize:
  @pytest.mark.parametrize("bad", [0, -4, True, False, 2.5, "8", np.bool_(True)])
  def test_rejected(self, bad):
    p = pairs(2, 1, 5, 4)
    with pytest.raises(ValueError, match="`online_batch_size` must be a positive int or None"):
      ots.ProblemBatch(p.x, p.y, p.a, p.b, EPS, online_batch_size=bad)

  def test_accepted_and_kept(self):
    p = pairs(2, 3, 5, 4, online_batch_size=np.int64(2))
    assert p.online_batch_size == 2
    assert type(p.online_batch_size) is int
    assert "online_batch_size=2" in repr(p)
    assert p.take([0, 2]).online_batch_size == 2
    assert p.problem(1).geom.is_online
    assert p.problem(1).geom.batch_size == 2
    leaves, tree = jax.tree_util.tree_flatten(p)
    assert jax.tree_util.tree_unflatten(tree, leaves).online_batch_size == 2
    again = ots.ProblemBatch.from_problems([p.problem(k) for k in range(3)])
    assert again.online_batch_size == 2
    dense = pairs(2, 3, 5, 4)
    assert dense.online_batch_size is None
    assert not dense.problem(0).geom.is_online
    assert ots.ProblemBatch.from_problems([dense.problem(0)]).online_batch_size is None

  def test_from_problems_pairs_smaller_than_the_block(self):
    # OTT clips `geom.batch_size` to min(n, m): pairs of different sizes built with one
    # request must still batch together, keeping the request.
    small, large = pairs(3, 1, 5, 4, online_batch_size=16), pairs(4, 1, 40, 30, online_batch_size=16)
    batch = ots.ProblemBatch.from_problems([small.problem(0), large.problem(0)])
    assert batch.online_batch_size == 16
    assert batch.shape == (40, 30)

  def test_from_problems_refuses_mixed(self):
    p = pairs(2, 2, 20, 20)
    probs = [online_problem(p.problem(0), 8), online_problem(p.problem(1), 4)]
    with pytest.raises(ValueError, match="different online batch sizes"):
      ots.ProblemBatch.from_problems(probs)
    with pytest.raises(ValueError, match="different online batch sizes"):
      ots.ProblemBatch.from_problems([p.problem(0), online_problem(p.problem(1), 4)])  # dense + online


def _shapes(text: str) -> set:
  """Array shapes in StableHLO (``tensor<256x2000xf32>``) or compiled HLO (``f32[256,2000]``) text."""
  found = re.findall(r"tensor<((?:\d+x)+)[a-z]", text) + re.findall(r"[a-z]\d*\[(\d+(?:,\d+)*)\]", text)
  return {tuple(int(k) for k in re.split(r"[x,]", dims.strip("x"))) for dims in found}


def test_online_never_builds_the_cost_matrix():
  """Amortized solves (single and batched) on n = m = 2000 hold no [2000, 2000] array."""
  n, block = 2000, 256
  rs = np.random.default_rng(5)
  x, y = rs.normal(size=(n, DIM)).astype(np.float32), rs.normal(size=(n, DIM)).astype(np.float32)
  w = np.full(n, 1.0 / n, np.float32)
  theta = ots.directions(jax.random.key(0), DIM, 32)
  model = ots.SlicedInitializer(theta, jnp.full(32, 0.01, jnp.float32), epsilon=EPS)
  dense = linear_problem.LinearProblem(pointcloud.PointCloud(x, y, epsilon=EPS), w, w)
  batch = ots.ProblemBatch(x[None], y[None], w[None], w[None], EPS, online_batch_size=block)
  single = jax.jit(lambda p, mdl: ots.amortized_solve(p, mdl))
  batched = jax.jit(lambda bt, mdl: ots.amortized_solve_batch(bt, mdl))
  # Control: the dense path does build it.
  assert any(s.count(n) >= 2 for s in _shapes(single.lower(dense, model).as_text()))
  lowered = [single.lower(online_problem(dense, block), model), batched.lower(batch, model)]
  compiled = lowered[1].compile()
  for text in [low.as_text() for low in lowered] + [compiled.as_text()]:
    shapes = _shapes(text)
    assert any(block in s and n in s for s in shapes)  # the cost blocks (a vmapped batch adds axes)
    assert not any(s.count(n) >= 2 for s in shapes)  # nothing n x m, whatever its other axes
  stats = compiled.memory_analysis()
  if stats is not None:  # temporaries: at least one block, less than one dense float32 cost matrix
    assert block * n * 4 <= stats.temp_size_in_bytes < n * n * 4
