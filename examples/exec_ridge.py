#!/usr/bin/env python3
"""A learner as an external program, for `occam run --learner exec:"python3 exec_ridge.py"`.

Reads one task as JSON on stdin: {"train_x": [[...], ...], "train_y": [...], "test_x": [[...], ...]},
fits ridge regression without intercept, w = (X^T X + lam I)^{-1} X^T y, and prints
{"test_y": [...]}. Plain Python, no numpy: replace the body with your own model or rig.
"""
import json
import sys

LAMBDA = float(sys.argv[1]) if len(sys.argv) > 1 else 1e-3


def solve(a, b):
    """Gaussian elimination with partial pivoting: a x = b for a small dense a."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        if m[piv][col] == 0.0:
            sys.exit("exec_ridge.py: singular system")
        m[col], m[piv] = m[piv], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= f * m[col][c]
    x = [0.0] * n
    for r in reversed(range(n)):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


task = json.load(sys.stdin)
X, y, Xt = task["train_x"], task["train_y"], task["test_x"]
d = len(X[0])
xtx = [[sum(row[i] * row[j] for row in X) + (LAMBDA if i == j else 0.0) for j in range(d)] for i in range(d)]
xty = [sum(row[i] * t for row, t in zip(X, y)) for i in range(d)]
w = solve(xtx, xty)
json.dump({"test_y": [sum(wi * xi for wi, xi in zip(w, row)) for row in Xt]}, sys.stdout)
