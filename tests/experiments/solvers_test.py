"""The solver benchmark harness: its cases, its accuracy check, and the quick suite end to end."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced.experiments import load_config, run_config
from ottsliced.experiments import solvers as bench

CONFIGS = pathlib.Path(__file__).parents[2] / "configs"


def test_every_suite_config_validates_and_expands():
  suites = sorted(CONFIGS.glob("solvers_*.yaml"))
  assert len(suites) >= 2
  for path in suites:
    module, config = load_config(str(path))
    assert module is bench
    cases = config.all_cases()
    assert cases
    assert len({c.label() for c in cases}) == len(cases), f"{path.name}: two cases with one label"


def test_grid_expands_as_a_product():
  config = bench.Config(
    suite="t", tolerances=(1e-2,), grid_data="gmm", grid_n=(64, 128), grid_d=(2, 3), grid_epsilon=(0.05, 1e-3)
  )
  assert len(config.all_cases()) == 8
  with pytest.raises(ValueError, match="no case"):
    bench.Config(suite="t", tolerances=(1e-2,))
  with pytest.raises(ValueError, match="tolerances"):
    bench.Config(suite="t", tolerances=(), grid_data="gmm", grid_n=(64,))


def test_relative_epsilon_and_the_measured_error():
  case = bench.CaseConfig("gmm", n=20, d=2, epsilon=0.05, pairs=2)
  pairs = bench.make_pairs(case, 2, 0)
  cost = bench._cost_matrix(pairs[0])
  np.testing.assert_allclose(pairs[0].epsilon, 0.05 * cost.mean(), rtol=1e-5)
  # A converged solve (float64) has no marginal error, and its transport cost is OTT's <C, P>.
  p = pairs[0]
  with jax.enable_x64(True):
    geom = pointcloud.PointCloud(jnp.asarray(p.x, jnp.float64), jnp.asarray(p.y, jnp.float64), epsilon=p.epsilon)
    prob = linear_problem.LinearProblem(geom, jnp.asarray(p.a, jnp.float64), jnp.asarray(p.b, jnp.float64))
    out = sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=100_000)(prob)
    err, transported = bench.marginal_error(cost, p, out.f, out.g)
    assert err < 1e-8
    np.testing.assert_allclose(transported, float(jnp.sum(out.matrix * geom.cost_matrix)), rtol=1e-10)
    err0, _ = bench.marginal_error(cost, p, np.zeros(20), np.zeros(20))
    plan0 = np.exp(-cost / p.epsilon)
    np.testing.assert_allclose(err0, np.abs(plan0.sum(1) - p.a).sum() + np.abs(plan0.sum(0) - p.b).sum(), rtol=1e-10)


def test_timing_protocol_blocks_and_repeats(monkeypatch):
  """JAX solvers finish before the peers start; a long compile does not cut a jitted method's repeats."""
  case = bench.CaseConfig("gmm", n=8, d=2, epsilon=0.05, pairs=2)
  pairs = bench.make_pairs(case, 2, 0)
  config = bench.Config(suite="t", tolerances=(1e-2,), cases=(case,), peers=None, repeats=4)
  calls, seen = [], set()

  def scripted_call(method, args, tol):  # a 3 s compile for ours, a 2 s solve for the slow peer, else 1 ms
    first = method.name not in seen
    seen.add(method.name)
    calls.append(method.name)
    seconds = 3.0 if first and method.family == "ours" else 2.0 if method.name == "slow peer" else 1e-3
    return seconds, (np.zeros(8), np.zeros(8), 1)

  monkeypatch.setattr(bench, "_call", scripted_call)
  methods = [
    bench.Method(name, family, lambda p: (), None)
    for name, family in (("ottsliced", "ours"), ("OTT default", "ott"), ("slow peer", "pot"), ("peer", "geomloss"))
  ]
  rows = bench.bench_case(case, config, 1e-2, methods, pairs, [1.0, 1.0], progress=False)
  last_jax = max(i for i, n in enumerate(calls) if n in ("ottsliced", "OTT default"))
  assert last_jax < min(i for i, n in enumerate(calls) if n in ("slow peer", "peer"))
  # First calls on both pairs, then `repeats` timed calls per pair; a solve over a second is timed once more.
  assert calls.count("ottsliced") == calls.count("OTT default") == calls.count("peer") == 2 + 2 * 4
  assert calls.count("slow peer") == 2 + 2
  assert rows["ottsliced"]["ms"] == pytest.approx(1.0)
  assert rows["ottsliced"]["compile_s"] == pytest.approx(3.0 - 1e-3)


@pytest.mark.slow
def test_quick_suite_end_to_end(tmp_path):
  metrics = run_config(str(CONFIGS / "solvers_quick.yaml"), out_dir=str(tmp_path), progress=False)
  saved = json.loads((tmp_path / "metrics.json").read_text())
  table = (tmp_path / "table.md").read_text()
  assert saved["suite"] == "quick"
  assert (tmp_path / "ratios.png").exists()
  for case in metrics["cases"]:
    for tol, entry in case["tolerances"].items():
      rows = entry["methods"]
      assert {"ottsliced", "OTT default"} <= set(rows)
      ours = rows["ottsliced"]
      # The solver meets the tolerance on every pair, measured in float64 on the returned potentials, and its
      # transport cost is the reference's to about the tolerance.
      assert ours["met"], (case["label"], tol, ours["error_max"])
      assert ours["cost_rel_error_max"] < 10 * float(tol)
      assert ours["ms"] > 0
      assert ours["compile_s"] >= 0
      best = entry["best_ott"]
      assert best is not None
      assert rows[best]["met"]
      assert rows[best]["ms"] == min(v["ms"] for v in rows.values() if v["family"] == "ott" and v["met"])
      np.testing.assert_allclose(entry["ratio_to_best_ott"], ours["ms"] / rows[best]["ms"])
      assert f"| {case['label']} | {float(tol):g} |" in table


def test_scaling_suite_reports_memory_and_growth(tmp_path):
  cases = tuple(bench.CaseConfig("gmm", n=n, d=2, epsilon=0.05, pairs=1, online=32) for n in (32, 64, 128))
  config = bench.Config(
    suite="scaling",
    tolerances=(1e-2,),
    cases=cases,
    ott=bench.OTTConfig(anderson=(), momentum=(), gaussian=False, epsilon_scaling=()),
    peers=None,
    repeats=1,
    memory=True,
  )
  metrics = bench.run(config, str(tmp_path), progress=False)
  assert (tmp_path / "scaling.png").exists()
  for c in metrics["cases"]:
    rows = c["tolerances"]["0.01"]["methods"]
    assert rows["ottsliced"]["met"]
    assert rows["ottsliced"]["memory_mb"] > 0
    assert rows["OTT default"]["memory_mb"] > 0
  # The online geometry stores no n x n matrix: OTT's buffers at n = 128 are below the dense cost's 64 kB.
  assert metrics["cases"][-1]["tolerances"]["0.01"]["methods"]["OTT default"]["memory_mb"] < 128 * 128 * 4 / 2**20
  table = bench.format_scaling(metrics)
  assert table.count("\n| 0.01 | ") == 3
  assert "| 0.01 | 32 |" in table
  assert " / " in table.splitlines()[-1]


def test_compiled_solve_is_the_program_a_call_runs():
  case = bench.CaseConfig("gmm", n=24, d=2, epsilon=0.05, pairs=1)
  pair = bench.make_pairs(case, 1, case.seed)[0]
  method = bench.ott_methods(
    bench.OTTConfig(anderson=(), momentum=(), gaussian=False, epsilon_scaling=()), case, None, 500
  )[0]
  args = method.prepare(pair)
  compiled = bench.compiled_solve(method, args, 1e-2)
  f, g, iterations = compiled(*args, jnp.float32(1e-2))
  f_call, g_call, iterations_call = method.solve(*args, jnp.float32(1e-2))
  np.testing.assert_array_equal(f, f_call)
  np.testing.assert_array_equal(g, g_call)
  assert int(iterations) == int(iterations_call) > 0
  assert " fusion(" in compiled.as_text()
  assert bench.program_megabytes(method, args, 1e-2) > 0
