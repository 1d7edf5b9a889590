import os

# Tests run on the CPU, whatever the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One OpenBLAS thread: multi-threaded LAPACK inside XLA's CPU threads is up to 100x slower (see discovery/cli.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Many tests compile the same programs (a tiny CartPole learner, PPO's references) in different processes and
# fixtures; XLA's persistent cache lets all but the first reuse the compiled program. Subprocesses inherit it.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "jax-compilation"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
