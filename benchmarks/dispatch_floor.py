"""How far tiny problems are from the floor of a jitted loop on CPU: ours, minimal solvers, OTT's configurations.

Run: ``python benchmarks/dispatch_floor.py`` (about 2 minutes on a 2-core CPU). On problems of a few thousand cost
entries (flow-matching batches B = 64, wine classes) a call is mostly fixed cost: the dispatch of the jitted
program and the per-kernel overhead of XLA's CPU runtime, a few microseconds per kernel whatever its size. This
probe times, side by side (``side_by_side.py``: 3 pairs, 9 repeats each, methods alternated, the median over pairs
of each method's median), to 1e-2 and 1e-3:

- ``ottsliced``: :class:`~ottsliced.SlicedSinkhorn` with no argument (Newton steps here);
- ``minimal Newton``: the least a Newton solve can do: full steps on the column Schur complement, 10 CG
  iterations each (``jax.scipy.sparse.linalg.cg``, diagonal preconditioner), no line search, no fallback, no
  trace (positive weights only: a floor, not a solver);
- ``minimal Sinkhorn``: log-domain iterations with the column error read every iteration, nothing else;
- ``Sinkhorn then Newton``: at most 10 of those iterations, then ottsliced's Newton steps
  (:func:`~ottsliced.solvers.newton.newton_tail`, with its safeguards) from where they stopped: a candidate path
  for tiny problems;
- OTT's default, Anderson (memory 2) and momentum (1.5), the best OTT settings on these cases.

``python benchmarks/dispatch_floor.py interleaved`` (about 6 minutes) runs the suite's 14 OTT configurations
(untimed, on the first pair) before every timed call, as the suite interleaves them.

Each line: ``case tol: name ms (iterations) ...``.
"""

import functools
import sys

import jax
import jax.numpy as jnp
from side_by_side import side_by_side, suite_interleaving

from ottsliced.experiments import solvers as bench
from ottsliced.solvers import newton

CASES = ({"data": "flow", "n": 64, "epsilon": 0.05}, {"data": "tabular", "name": "wine", "epsilon": 0.05})


def _rows(cost, a, g, eps):
  z = (g[None, :] - cost) / eps
  e = jnp.exp(z - jnp.max(z, axis=1, keepdims=True))
  plan = e * (a[:, None] / jnp.sum(e, axis=1, keepdims=True))
  return plan, jnp.sum(plan, axis=0)


def minimal_newton(x, y, a, b, eps, tol):
  """Full Newton steps in ``g`` (rows exact) until the column L1 error is below ``tol``: ``(g, iterations)``."""
  cost = bench._geometry(x, y, eps, None, 0).cost_matrix

  def body(state):
    g, plan, cols, k = state
    rhs = eps * cols * jnp.log(b / cols)
    op = lambda v: 1.001 * cols * v - ((plan @ v) / a) @ plan  # noqa: E731
    step = jax.scipy.sparse.linalg.cg(op, rhs, maxiter=10, M=lambda v: v / cols)[0]
    return g + step, *_rows(cost, a, g + step, eps), k + 1

  g = jnp.zeros_like(b)
  state = (g, *_rows(cost, a, g, eps), 0)
  g, _, _, k = jax.lax.while_loop(lambda s: (jnp.sum(jnp.abs(s[2] - b)) >= tol) & (s[3] < 100), body, state)
  return g, k


def _sinkhorn_loop(cost, a, b, eps, tol, limit):
  """Log-domain Sinkhorn from zeros, the column error read every iteration: ``(g, error, iterations)``."""
  log_a, log_b = jnp.log(a), jnp.log(b)

  def body(state):
    _, g, _, k = state
    f = eps * log_a - eps * jax.nn.logsumexp((g[None, :] - cost) / eps, axis=1)
    g_next = eps * log_b - eps * jax.nn.logsumexp((f[:, None] - cost) / eps, axis=0)
    err = jnp.sum(jnp.abs(b * jnp.exp((g - g_next) / eps) - b))
    return f, g_next, err, k + 1

  state = (jnp.zeros_like(a), jnp.zeros_like(b), jnp.asarray(jnp.inf, a.dtype), 0)
  _, g, err, k = jax.lax.while_loop(lambda s: (s[2] >= tol) & (s[3] < limit), body, state)
  return g, err, k


def minimal_sinkhorn(x, y, a, b, eps, tol):
  """Log-domain Sinkhorn, the column error read every iteration, nothing else: ``(g, iterations)``."""
  g, _, k = _sinkhorn_loop(bench._geometry(x, y, eps, None, 0).cost_matrix, a, b, eps, tol, 10_000)
  return g, k


def sinkhorn_then_newton(x, y, a, b, eps, tol, sweeps: int = 10):
  """At most ``sweeps`` iterations of :func:`minimal_sinkhorn`, then ottsliced's Newton steps: ``(g, iterations)``."""
  cost = bench._geometry(x, y, eps, None, 0).cost_matrix
  g, err, k = _sinkhorn_loop(cost, a, b, eps, tol, sweeps)

  def newton_steps(_):
    trace = -jnp.ones((sweeps + 100,), a.dtype)
    state = newton.newton_tail(cost, a, b, eps, g, k, trace, tol, fallback=True)
    return state.g, state.k

  return jax.lax.cond(err < tol, lambda _: (g, k), newton_steps, None)


def _methods(case):
  calls = {"ottsliced": functools.partial(_on_method, bench._ours_method("ottsliced", None, 0, 20_000))}
  calls["minimal Newton"] = functools.partial(_on_pair, jax.jit(minimal_newton))
  calls["minimal Sinkhorn"] = functools.partial(_on_pair, jax.jit(minimal_sinkhorn))
  calls["Sinkhorn then Newton"] = functools.partial(_on_pair, jax.jit(sinkhorn_then_newton))
  ott = bench.OTTConfig(anderson=(2,), momentum=(1.5,), gaussian=False, epsilon_scaling=())
  for method in bench.ott_methods(ott, case, None, 20_000):
    calls[method.name] = functools.partial(_on_method, method)
  return calls


def _on_pair(fn, pair, tol):
  return fn(*bench._device_args(pair), tol)


def _on_method(method, pair, tol):
  return method.solve(*method.prepare(pair), tol)


def main(repeats: int = 9, interleaved: bool = False) -> None:
  """Prints one line per case and tolerance."""
  for spec in CASES:
    case = bench.CaseConfig(**spec)
    pairs = bench.make_pairs(case, 3, case.seed)
    calls = _methods(case)
    for tol in (1e-2, 1e-3):
      tol = jnp.float32(tol)
      before = suite_interleaving(case, pairs[0], tol) if interleaved else None
      timings = side_by_side(
        {name: functools.partial(call, tol=tol) for name, call in calls.items()}, pairs, repeats, before=before
      )
      cells = " ".join(f"{name} {t.ms:.3f} ({t.iterations:g})" for name, t in timings.items())
      print(f"{case.label()} tol {float(tol):g}: {cells}", flush=True)


if __name__ == "__main__":
  main(interleaved=sys.argv[1:] == ["interleaved"])
