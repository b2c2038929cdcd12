"""Shared fixtures: small problems, float64 mode, a fitted digits model; one compilation cache per test run."""

import gc
import os
import shutil
import tempfile
import warnings

import jax
import pytest
from helpers import FLOW_SOURCE, FLOW_TARGET

import ottsliced as ots
from ottsliced import flow_matching as fm
from ottsliced.data import digit_pairs

EPS = 1e-2

_CACHE_ENV = "OTTSLICED_TEST_COMPILATION_CACHE"


def pytest_addoption(parser):
  parser.addoption(
    "--ott-control",
    action="store_true",
    default=False,
    help="also run tests/solvers/ott_contract_test.py with OTT's own solver, the control that shows each restated "
    "OTT test still describes OTT (123 more cases; the file took 5:55 without, 8:49 with it on 2 workers)",
  )


def pytest_configure(config):
  """One JAX persistent compilation cache for the whole run: both xdist workers, notebooks and subprocesses.

  Most test time is XLA compilation, and the same programs are compiled by
  both workers (session fixtures), by notebooks and the quick configs, and
  again after :func:`_bound_compiled_executables` clears the in-memory caches.
  The first process (the controller) makes a temporary folder and names it in
  the environment, which every process started later inherits; set
  ``OTTSLICED_TEST_COMPILATION_CACHE`` yourself to keep a cache between runs.
  """
  path = os.environ.get(_CACHE_ENV)
  if not path:
    path = tempfile.mkdtemp(prefix="ottsliced-test-jax-cache-")
    os.environ[_CACHE_ENV] = path
    config._ottsliced_cache_to_remove = path
  # Most programs here are compiled once and run for milliseconds: LLVM's optimisation passes cost more than
  # they save (quick configs 14 % faster end to end, measured cold, one process). XLA reads the flags when the
  # CPU backend starts, after this hook; set XLA_FLAGS yourself to choose otherwise.
  os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
  # Child processes (notebook kernels, the CLI) read these when they import jax.
  os.environ["JAX_COMPILATION_CACHE_DIR"] = path
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
  path = getattr(config, "_ottsliced_cache_to_remove", None)
  if path:
    shutil.rmtree(path, ignore_errors=True)


_MAPS = "/proc/self/maps"


def _memory_maps() -> int:
  with open(_MAPS) as f:
    return sum(1 for _ in f)


@pytest.fixture(autouse=True)
def _bound_compiled_executables(request):
  """Drop JAX's compiled executables when a worker holds too many.

  XLA:CPU maps memory for each executable (about 6 maps each) and keeps it as
  long as JAX caches the executable. A long-lived xdist worker that compiles
  ~10,000 programs (the quick-config tests compile 10,000-15,000 maps' worth
  each, mostly eager ops on new shapes) reaches the kernel's
  ``vm.max_map_count`` (65,530) and then crashes at a random place (segfault,
  or ``SystemError: error return without exception set``). Clearing the caches
  after any test that leaves more than 25,000 maps bounds a worker below about
  40,000; a single test that adds more than 30,000 is reported.
  """
  if not os.path.exists(_MAPS):
    yield
    return
  before = _memory_maps()
  yield
  after = _memory_maps()
  if after - before > 30_000:
    warnings.warn(f"{request.node.nodeid} added {after - before} memory maps (limit 65,530)", stacklevel=1)
  if after > 25_000:
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def rng():
  return jax.random.key(0)


@pytest.fixture
def compile_events():
  """The names of JAX's compile events (trace, lowering, backend compile) recorded while the test runs."""
  events = []

  def listen(name, duration, **kwargs):
    if name.startswith("/jax/core/compile/"):
      events.append(name)

  jax.monitoring.register_event_duration_secs_listener(listen)
  yield events
  jax.monitoring.unregister_event_duration_listener(listen)


@pytest.fixture
def x64():
  """Run the test in float64 (reference comparisons)."""
  with jax.enable_x64(True):
    yield


@pytest.fixture(scope="session")
def digits_train():
  return digit_pairs(50, epsilon=EPS, seed=0)


@pytest.fixture(scope="session")
def digits_test():
  return digit_pairs(50, epsilon=EPS, seed=0, offset=50)


@pytest.fixture(scope="session")
def ra_model(digits_train):
  return ots.fit_ra(digits_train, progress=False)


@pytest.fixture(scope="session")
def oa_model(digits_train):
  return ots.fit_oa(digits_train, steps=5000, progress=False)  # converged: its dual value beats RA-OT's (L = 32)


@pytest.fixture(scope="session")
def flow_models():
  """RA-OT and OA-OT couplings fitted on a few small Gaussian -> 8-Gaussians mini-batches."""
  return fm.fit_flow_couplings(FLOW_SOURCE, FLOW_TARGET, jax.random.key(0), num_batches=4, batch_size=32, oa_steps=50)
