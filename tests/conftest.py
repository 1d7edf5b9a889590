import os

# Tests run on the CPU, whatever the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One OpenBLAS thread: multi-threaded LAPACK inside XLA's CPU threads is up to 100x slower (see discovery/cli.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
