"""SlicedInitializer: OTT contract, pytree/jit behaviour, storage, bad input."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

import ottsliced as ots
from ottsliced.initializers.sliced_initializer import FORMAT_VERSION


def _problem(batch, i=0):
  return batch.problem(i)


class TestOTTContract:
  def test_sinkhorn_initializer_jit_and_vmap(self, ra_model, digits_test):
    prob = _problem(digits_test)
    solver = sinkhorn.Sinkhorn(initializer=ra_model, threshold=1e-2, inner_iterations=1, max_iterations=5000)
    out = jax.jit(solver)(prob)
    zero = jax.jit(sinkhorn.Sinkhorn(threshold=1e-2, inner_iterations=1, max_iterations=5000))(prob)
    assert out.converged
    assert out.n_iters < zero.n_iters
    batched = ots.solve_batch(digits_test.take(slice(0, 3)), ra_model, threshold=1e-2, inner_iterations=1)
    for k in range(3):
      single = jax.jit(solver)(_problem(digits_test, k))
      assert abs(int(ots.num_iterations(batched)[k]) - int(single.n_iters)) <= 1

  def test_no_retrace_when_alpha_changes(self, ra_model, digits_test):
    prob = _problem(digits_test)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def solve(ini, prob):
      return sinkhorn.Sinkhorn(initializer=ini, max_iterations=50)(prob).f

    f1 = solve(ra_model, prob)
    f2 = solve(ra_model.replace(alpha=ra_model.alpha * 0.5), prob)
    assert not np.allclose(f1, f2)

  def test_init_fu_is_the_prediction(self, ra_model, digits_test):
    prob = _problem(digits_test)
    f0, _ = ra_model(prob, lse_mode=True)
    f, g = ra_model.predict_potentials(prob)
    np.testing.assert_allclose(f0, f, rtol=1e-6)
    mask = prob.b > 0
    g_ref = prob.geom.update_potential(f, jnp.zeros_like(prob.b), jnp.log(prob.b), axis=0)
    np.testing.assert_allclose(g[mask], g_ref[mask], rtol=1e-5)
    scal = ra_model.init_fu(prob, lse_mode=False)
    np.testing.assert_allclose(scal, jnp.exp(ra_model.init_fu(prob, lse_mode=True) / prob.geom.epsilon), rtol=1e-5)

  def test_non_finite_prediction_falls_back_to_zeros(self, ra_model, digits_test):
    prob = _problem(digits_test)
    bad = ra_model.replace(alpha=ra_model.alpha.at[0].set(jnp.nan))
    f = bad.init_fu(prob, lse_mode=True)
    np.testing.assert_array_equal(f, 0.0)
    out = sinkhorn.Sinkhorn(initializer=bad, threshold=1e-2, max_iterations=5000)(prob)
    assert out.converged


class TestBadInput:
  def test_wrong_dimension(self, ra_model):
    x = jnp.zeros((5, 3))
    prob = linear_problem.LinearProblem(pointcloud.PointCloud(x, x, epsilon=1e-2))
    with pytest.raises(ValueError, match="dimension 3 but the model was fitted with d=2"):
      ra_model.init_fu(prob, lse_mode=True)

  def test_epsilon_mismatch_and_override(self, ra_model, digits_test):
    x, y = digits_test.points(0)
    prob = linear_problem.LinearProblem(pointcloud.PointCloud(x, y, epsilon=0.1), digits_test.a[0], digits_test.b[0])
    with pytest.raises(ValueError, match="differs from the epsilon=0.01"):
      ra_model.predict_potentials(prob)
    f, _ = ra_model.replace(allow_epsilon_mismatch=True).predict_potentials(prob)
    assert np.all(np.isfinite(f[prob.a > 0]))

  @pytest.mark.parametrize("eps", [0.0, -1.0, float("nan")])
  def test_bad_epsilon(self, ra_model, eps):
    with pytest.raises(ValueError, match="epsilon"):
      ra_model.replace(epsilon=eps)

  def test_not_a_point_cloud(self, ra_model):
    from ott.geometry import geometry

    prob = linear_problem.LinearProblem(geometry.Geometry(cost_matrix=jnp.ones((3, 3)), epsilon=1e-2))
    with pytest.raises(ValueError, match="PointCloud"):
      ra_model.init_fu(prob, lse_mode=True)


class TestStorage:
  def test_round_trip_exact(self, ra_model, tmp_path):
    path = tmp_path / "model.npz"
    ra_model.save(path)
    loaded = ots.SlicedInitializer.load(path)
    np.testing.assert_array_equal(loaded.theta, ra_model.theta)
    np.testing.assert_array_equal(loaded.alpha, ra_model.alpha)
    assert loaded.method == "ra"
    assert loaded.epsilon == ra_model.epsilon
    assert loaded.summary["num_pairs"] == 50
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(ra_model)

  def test_round_trip_g_side(self, ra_model, tmp_path):
    model = ra_model.replace(beta=ra_model.alpha[::-1])
    model.save(tmp_path / "g.npz")
    np.testing.assert_array_equal(ots.SlicedInitializer.load(tmp_path / "g.npz").beta, model.beta)

  def test_missing_file(self, tmp_path):
    with pytest.raises(FileNotFoundError):
      ots.SlicedInitializer.load(tmp_path / "nope.npz")

  def test_truncated_file(self, ra_model, tmp_path):
    path = tmp_path / "m.npz"
    ra_model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
      ots.SlicedInitializer.load(path)

  def test_corrupted_arrays(self, ra_model, tmp_path):
    path = tmp_path / "m.npz"
    ra_model.save(path)
    with np.load(path) as d:
      contents = {k: d[k] for k in d.files}
    contents["alpha"] = contents["alpha"] + 1.0
    np.savez(path, **contents)
    with pytest.raises(ValueError, match="checksum"):
      ots.SlicedInitializer.load(path)

  def test_future_version(self, ra_model, tmp_path):
    path = tmp_path / "m.npz"
    ra_model.save(path)
    with np.load(path) as d:
      contents = {k: d[k] for k in d.files}
    meta = json.loads(str(contents["metadata"]))
    meta["format_version"] = FORMAT_VERSION + 1
    contents["metadata"] = np.array(json.dumps(meta))
    np.savez(path, **contents)
    with pytest.raises(ValueError, match="newer than this ottsliced reads"):
      ots.SlicedInitializer.load(path)

  def test_not_a_model(self, tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones(3))
    with pytest.raises(ValueError, match="no ottsliced metadata"):
      ots.SlicedInitializer.load(path)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
      ots.SlicedInitializer.load(tmp_path / "text.npz")


class TestBoundSupports:
  """`model.bind(support)`: projections sorted once and reused; clear errors; never silently wrong."""

  def test_bound_predictions_equal_unbound(self, ra_model, digits_test):
    bound = ra_model.bind(digits_test.x)
    assert bound.support.py is bound.support.px  # x is y: sorted once
    for k in range(3):
      prob = _problem(digits_test, k)
      np.testing.assert_allclose(
        bound.init_fu(prob, lse_mode=True), ra_model.init_fu(prob, lse_mode=True), rtol=1e-5, atol=1e-6
      )
    plain = ots.amortized_solve_batch(digits_test.take(slice(0, 4)), ra_model)
    fast = ots.amortized_solve_batch(digits_test.take(slice(0, 4)), bound)
    np.testing.assert_allclose(fast.f, plain.f, rtol=1e-5, atol=1e-6)

  def test_closed_over_inside_jit_compiles_no_sort(self, ra_model, digits_test):
    """The common user pattern: a constant grid and a model closed over in jit(vmap(...))."""
    grid, eps = digits_test.x, digits_test.epsilon

    def hlo(model):
      def solve(a, b):
        prob = linear_problem.LinearProblem(pointcloud.PointCloud(grid, grid, epsilon=eps), a, b)
        return sinkhorn.Sinkhorn(initializer=model, max_iterations=20)(prob).f

      return jax.jit(jax.vmap(solve)).lower(digits_test.a[:2], digits_test.b[:2]).as_text()

    assert "stablehlo.sort" in hlo(ra_model)
    assert "stablehlo.sort" not in hlo(ra_model.bind(grid))

  def test_traced_support_uses_bound_projections_or_sorts(self, ra_model, digits_test):
    bound = ra_model.bind(digits_test.x)
    prob = _problem(digits_test)
    predict = jax.jit(lambda m, x, a, b: m.predict(x, x, a, b, digits_test.epsilon)[0])
    np.testing.assert_allclose(
      predict(bound, digits_test.x, prob.a, prob.b), ra_model.init_fu(prob, lse_mode=True), rtol=1e-5, atol=1e-6
    )
    other = digits_test.x[::-1]  # same shape, other support: sorted, not looked up
    np.testing.assert_allclose(
      predict(bound, other, prob.a, prob.b), predict(ra_model, other, prob.a, prob.b), rtol=1e-5, atol=1e-6
    )

  def test_new_alpha_does_not_retrace(self, ra_model, digits_test):
    bound = ra_model.bind(digits_test.x)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def predict(model, a, b):
      return model.predict(digits_test.x, digits_test.y, a, b, digits_test.epsilon)[0]

    f1 = predict(bound, digits_test.a[0], digits_test.b[0])
    f2 = predict(bound.replace(alpha=bound.alpha * 0.5), digits_test.a[0], digits_test.b[0])
    assert not np.allclose(f1, f2)

  def test_bank_of_supports(self, ra_model):
    """Multi-resolution pairs: a few padded grids bound at once, each pair looks its own up."""
    from ottsliced.data import load_digits, multires_pairs

    pairs = multires_pairs(load_digits(), 6, sizes=(4, 6, 8), epsilon=1e-2, seed=0).batch
    x, y = pairs.supports()
    assert x.shape[0] > 1
    assert x is y
    bound = ra_model.bind(x, y)
    plain = ots.amortized_solve_batch(pairs, ra_model)
    fast = ots.amortized_solve_batch(pairs, bound)
    for k in range(pairs.num_pairs):
      mask = pairs.a[k] > 0
      np.testing.assert_allclose(fast.f[k][mask], plain.f[k][mask], rtol=1e-5, atol=1e-6)

  def test_wrong_support_errors(self, ra_model, digits_test):
    bound = ra_model.bind(digits_test.x)
    with pytest.raises(ValueError, match="shape"):
      bound.predict(digits_test.x[:10], digits_test.x[:10], digits_test.a[0, :10], digits_test.b[0, :10], 1e-2)
    with pytest.raises(ValueError, match="none of the 1 support"):
      bound.predict(digits_test.x + 1.0, digits_test.x + 1.0, digits_test.a[0], digits_test.b[0], 1e-2)
    with pytest.raises(ValueError, match="dimension 3"):
      ra_model.bind(jnp.ones((5, 3)))
    assert ra_model.bind(digits_test.x).unbind().support is None

  def test_one_side_bound(self, ra_model, digits_test):
    bound = ra_model.bind(None, digits_test.y)
    assert bound.support.x is None
    prob = _problem(digits_test)
    np.testing.assert_allclose(
      bound.init_fu(prob, lse_mode=True), ra_model.init_fu(prob, lse_mode=True), rtol=1e-5, atol=1e-6
    )
