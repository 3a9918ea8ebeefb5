#!/usr/bin/env python3
"""The `occam bench` workloads written in PyTorch (eager, CPU, double precision), for the
side-by-side comparison in bench/compare.sh. Same sizes and the same algorithm as occam's
presets: one meta-step = draw a task, label it with the meta-learner, train the learner,
test it, add the label-distribution term, backpropagate, take one optimiser step.

Sinkhorn follows geomloss (epsilon-scaling with symmetric updates, debiased, gradient through
the last extrapolation step only); geomloss itself is not a Debian package.

The evolution workload is one DES generation of fig8 with the population as a batch (the
members' weights as batched tensors, torch.bmm for every layer, no autograd): the side-by-side
for `occam bench --workload evolution --population N`.

Usage: python3 bench/torch_ref.py [--workload all|kernel|ridge|unrolled|connectome|evolution|spiking|mnist]
                                  [--population N] [--repeats N] [--json]
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch

torch.set_default_dtype(torch.float64)


def mlp(widths, gen):
    """PyTorch's default Linear initialisation, as a list of (W, b) leaves."""
    params = []
    for i, o in zip(widths[:-1], widths[1:]):
        bound = 1.0 / math.sqrt(i)
        params.append((torch.empty(o, i).uniform_(-bound, bound, generator=gen).requires_grad_(),
                       torch.empty(o).uniform_(-bound, bound, generator=gen).requires_grad_()))
    return params


def forward(params, x, output="identity", mask=None):
    h = x
    for k, (w, b) in enumerate(params):
        if k == 0 and mask is not None:
            w = w * mask
        h = h @ w.T + b
        if k + 1 < len(params):
            h = torch.relu(h)
    return torch.cos(h) if output == "cos" else h


def flat(params):
    return [t for wb in params for t in wb]


def sphere(n, d, gen):
    x = torch.randn(n, d, generator=gen)
    return x / x.norm(dim=1, keepdim=True)


def disk(n, gen):
    r = torch.rand(n, generator=gen).sqrt()
    t = 2 * math.pi * torch.rand(n, generator=gen)
    return torch.stack([r * torch.cos(t), r * torch.sin(t)], dim=1)


def sinkhorn(x, y, blur=0.05, scaling=0.5):
    """geomloss SamplesLoss("sinkhorn", p=2, blur, scaling, debias=True) for 1-D samples."""
    x, y = x.reshape(-1, 1), y.reshape(-1, 1)
    a_log = torch.full((x.shape[0],), -math.log(x.shape[0]))
    b_log = torch.full((y.shape[0],), -math.log(y.shape[0]))
    cost = lambda u, v: (u - v.T) ** 2 / 2
    C_xy, C_yx, C_xx, C_yy = cost(x, y), cost(y, x), cost(x, x), cost(y, y)
    with torch.no_grad():
        lo, hi = torch.min(x.min(), y.min()), torch.max(x.max(), y.max())
        diameter = max((hi - lo).item(), blur)
    eps_list = [diameter ** 2] + [math.exp(e) for e in
                                  torch.arange(2 * math.log(diameter), 2 * math.log(blur), 2 * math.log(scaling)).tolist()] + [blur ** 2]
    softmin = lambda eps, C, h: -eps * torch.logsumexp(h.view(1, -1) - C / eps, dim=1)
    with torch.no_grad():
        Cd = [c.detach() for c in (C_xy, C_yx, C_xx, C_yy)]
        eps = eps_list[0]
        g_ab, f_ba = softmin(eps, Cd[1], a_log), softmin(eps, Cd[0], b_log)
        f_aa, g_bb = softmin(eps, Cd[2], a_log), softmin(eps, Cd[3], b_log)
        for eps in eps_list:
            ft_ba, gt_ab = softmin(eps, Cd[0], b_log + g_ab / eps), softmin(eps, Cd[1], a_log + f_ba / eps)
            ft_aa, gt_bb = softmin(eps, Cd[2], a_log + f_aa / eps), softmin(eps, Cd[3], b_log + g_bb / eps)
            f_ba, g_ab, f_aa, g_bb = (f_ba + ft_ba) / 2, (g_ab + gt_ab) / 2, (f_aa + ft_aa) / 2, (g_bb + gt_bb) / 2
    eps = eps_list[-1]
    f_ba, g_ab = softmin(eps, C_xy, b_log + g_ab / eps), softmin(eps, C_yx, a_log + f_ba / eps)
    f_aa, g_bb = softmin(eps, C_xx, a_log + f_aa / eps), softmin(eps, C_yy, b_log + g_bb / eps)
    return (a_log.exp() * (f_ba - f_aa)).sum() + (b_log.exp() * (g_ab - g_bb)).sum()


def energy(x, y):
    """geomloss "energy": mean|x-y| - 1/2 mean|x-x'| - 1/2 mean|y-y'| (distances clamped at 1e-4)."""
    d = lambda u, v: (u.reshape(-1, 1) - v.reshape(1, -1)).abs().clamp_min(1e-4)
    return d(x, y).mean() - 0.5 * d(x, x).mean() - 0.5 * d(y, y).mean()


def ridge_predict(phi, y, phi_test, lam):
    p = phi.shape[1]
    w = torch.linalg.solve(phi.T @ phi + lam * torch.eye(p), phi.T @ y)
    return phi_test @ w


class Kernel:
    """fig2c: meta 3-150-150-1 (cos) on 20 + 80 sphere points, 20 fixed ReLU features, ridge
    1e-3, Sinkhorn over the 100 labels, loss S + 10 MSE, Adagrad 0.01."""

    def __init__(self, gen):
        self.gen, self.p = gen, mlp([3, 150, 150, 1], gen)
        self.J = torch.randn(3, 20, generator=gen)
        self.opt = torch.optim.Adagrad(flat(self.p), lr=0.01)

    def step(self):
        x = sphere(100, 3, self.gen)
        z = forward(self.p, x, "cos").reshape(-1)
        phi = torch.relu(x @ self.J)
        pred = ridge_predict(phi[:20], z[:20], phi[20:], 1e-3)
        loss = sinkhorn(z, 2 * torch.rand(100, generator=self.gen) - 1) + 10 * ((pred - z[20:]) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class Ridge:
    """fig2b: meta 2-150-150-1 (cos) on 6 + 24 disk points, linear ridge 1e-3, Sinkhorn on the
    training and on the test labels, loss S_train + S_test + MSE, Adagrad 0.01."""

    def __init__(self, gen):
        self.gen, self.p = gen, mlp([2, 150, 150, 1], gen)
        self.opt = torch.optim.Adagrad(flat(self.p), lr=0.01)

    def step(self):
        x = disk(30, self.gen)
        z = forward(self.p, x, "cos").reshape(-1)
        pred = ridge_predict(x[:6], z[:6], x[6:], 1e-3)
        u = lambda n: 2 * torch.rand(n, generator=self.gen) - 1
        loss = sinkhorn(z[:6], u(6)) + sinkhorn(z[6:], u(24)) + ((pred - z[6:]) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


def unrolled_fit(x, y, xt, widths, steps, lr, gen, batch=0, mask=None):
    """The learner: re-initialised, trained by `steps` differentiable SGD steps (create_graph)."""
    p = flat(mlp(widths, gen))
    for _ in range(steps):
        if batch:
            idx = torch.randperm(x.shape[0], generator=gen)[:batch]
            xb, yb = x[idx], y[idx]
        else:
            xb, yb = x, y
        pairs = list(zip(p[0::2], p[1::2]))
        loss = ((forward(pairs, xb, mask=mask).reshape(-1) - yb) ** 2).mean()
        g = torch.autograd.grad(loss, p, create_graph=True)
        p = [w - lr * gw for w, gw in zip(p, g)]
    return forward(list(zip(p[0::2], p[1::2])), xt, mask=mask).reshape(-1)


class Unrolled:
    """fig9: 200 full-batch GD steps (lr 0.025) of a 3-20-20-1 ReLU net on 30 points, test 300,
    1000 MSE + 10000 energy distance, Adam 0.01 on the meta 3-150-150-1."""

    def __init__(self, gen):
        self.gen, self.p = gen, mlp([3, 150, 150, 1], gen)
        self.opt = torch.optim.Adam(flat(self.p), lr=0.01)

    def step(self):
        x = sphere(330, 3, self.gen)
        z = forward(self.p, x).reshape(-1)
        pred = unrolled_fit(x[:30], z[:30], x[30:], [3, 20, 20, 1], 200, 0.025, self.gen)
        loss = 1000 * ((pred - z[30:]) ** 2).mean() + 10000 * energy(z, 2 * torch.rand(330, generator=self.gen) - 1)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class Connectome:
    """fig7: 5-100-1 net with a fresh random 2-sparse input mask, 50 SGD steps (lr 0.05) on
    batches of 30 of 50 points, test 300, 1000 MSE + 500 Sinkhorn on the test labels, Adam."""

    def __init__(self, gen):
        self.gen, self.p = gen, mlp([5, 150, 150, 1], gen)
        self.opt = torch.optim.Adam(flat(self.p), lr=0.0025)

    def step(self):
        mask = torch.zeros(100, 5)
        for h in range(100):
            mask[h, torch.randperm(5, generator=self.gen)[:2]] = 1.0
        x = sphere(350, 5, self.gen)
        z = forward(self.p, x).reshape(-1)
        pred = unrolled_fit(x[:50], z[:50], x[50:], [5, 100, 1], 50, 0.05, self.gen, batch=30, mask=mask)
        loss = 1000 * ((pred - z[50:]) ** 2).mean() + 500 * sinkhorn(z[50:], 2 * torch.rand(300, generator=self.gen) - 1)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class Spike(torch.autograd.Function):
    """H(v - 1) forward; the sigmoid surrogate (beta 5) backward, written with differentiable ops
    so that create_graph records it and the meta-gradient gets its derivative."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(5.0 * x)
        return g * 5.0 * s * (1.0 - s)


def ipd_spikes(dphi, gen, fibres=16, dt=0.002, bins=50, freq=20.0, rate=400.0, power=2):
    """Two ears' Bernoulli spike trains (trials, bins, 2 * fibres) for phase differences dphi:
    theta = 2 pi (f k dt + psi) + d_j + e dphi, p = rate dt ((1 + sin theta) / 2)^power."""
    n = dphi.shape[0]
    psi = torch.rand(n, 1, 1, 1, generator=gen)
    k = torch.arange(bins).reshape(1, bins, 1, 1)
    ear = torch.arange(2).reshape(1, 1, 2, 1)
    delay = torch.linspace(0, math.pi / 2, fibres).reshape(1, 1, 1, fibres)
    theta = 2 * math.pi * (freq * k * dt + psi) + delay + ear * dphi.reshape(n, 1, 1, 1)
    p = rate * dt * ((1 + torch.sin(theta)) / 2) ** power
    return (torch.rand(p.shape, generator=gen) < p).to(torch.float64).reshape(n, bins, 2 * fibres)


def lif_output(x, w1, w2, alpha):
    """The LIF circuit (SpyTorch order, reset attached) and its leaky-integrator readout's time
    mean, y = sum_k r_k s_k W2 with r_k = (1 - alpha^(T-1-k)) / ((1 - alpha) T)."""
    trials, bins, _ = x.shape
    current = x @ w1
    v = torch.zeros(trials, w1.shape[1])
    y = torch.zeros(trials)
    for k in range(bins):
        s = Spike.apply(v - 1.0)
        y = y + (1 - alpha ** (bins - 1 - k)) / ((1 - alpha) * bins) * (s @ w2).reshape(-1)
        v = (alpha * v + current[:, k]) * (1 - s)
    return y


class Spiking:
    """fig5 (R1): a 32-16-1 LIF circuit over 50 bins of 2 ms, re-initialised (W1 ~ U(+-0.289),
    W2 ~ U(+-0.05)) and trained by 50 differentiable Adam steps (lr 0.03, sqrt(v_hat + eps^2))
    on 32 IPD trials, tested on 256; meta-learner 1-100-100-1 tanh on u = dphi / (pi/2), loss
    test MSE + 10 energy distance to U(-1, 1), Adam 0.001."""

    def __init__(self, gen):
        self.gen, self.p = gen, mlp([1, 100, 100, 1], gen)
        self.opt = torch.optim.Adam(flat(self.p), lr=0.001)
        self.alpha = math.exp(-0.002 / 0.02)

    def meta_forward(self, u):
        h = u
        for k, (w, b) in enumerate(self.p):
            h = h @ w.T + b
            if k + 1 < len(self.p):
                h = torch.tanh(h)
        return h.reshape(-1)

    def step(self):
        dphi = (torch.rand(288, generator=self.gen) - 0.5) * math.pi
        x = ipd_spikes(dphi, self.gen)
        z = self.meta_forward((dphi / (math.pi / 2)).reshape(-1, 1))
        w = [(torch.rand(32, 16, generator=self.gen) * 2 - 1) * 0.289, (torch.rand(16, 1, generator=self.gen) * 2 - 1) * 0.05]
        w = [t.requires_grad_() for t in w]
        m, v = [torch.zeros_like(t) for t in w], [torch.zeros_like(t) for t in w]
        for t in range(1, 51):
            loss = ((lif_output(x[:32], w[0], w[1], self.alpha) - z[:32]) ** 2).mean()
            g = torch.autograd.grad(loss, w, create_graph=True)
            m = [0.9 * a + 0.1 * b for a, b in zip(m, g)]
            v = [0.999 * a + 0.001 * b * b for a, b in zip(v, g)]
            w = [p - 0.03 * (a / (1 - 0.9 ** t)) / torch.sqrt(b / (1 - 0.999 ** t) + 1e-16) for p, a, b in zip(w, m, v)]
        pred = lif_output(x[32:], w[0], w[1], self.alpha)
        loss = ((pred - z[32:]) ** 2).mean() + 10 * energy(z, 2 * torch.rand(288, generator=self.gen) - 1)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


def conv_layer(cin, cout, k, gen):
    """torch.nn.Conv2d's default initialisation: W and b from U(+-1/sqrt(cin k k))."""
    bound = 1.0 / math.sqrt(cin * k * k)
    return (torch.empty(cout, cin, k, k).uniform_(-bound, bound, generator=gen).requires_grad_(),
            torch.empty(cout).uniform_(-bound, bound, generator=gen).requires_grad_())


def cnn(params, x):
    """conv (padding k // 2) - ReLU - maxpool 2 per conv layer, then linear."""
    h = x
    for w, b in params[:-1]:
        h = torch.nn.functional.conv2d(h, w, b, padding=w.shape[-1] // 2)
        h = torch.nn.functional.max_pool2d(torch.relu(h), 2)
    w, b = params[-1]
    return (h.flatten(1) @ w.T + b).reshape(-1)


class Mnist:
    """fig6: 2000 images (28 x 28 in [-1, 1]); learner conv(1->16, 5x5) - ReLU - pool - linear,
    re-initialised, 100 differentiable SGD steps (lr 0.001) on batches of 20 of the first 600;
    meta-learner conv16 - conv32 (3x3) - linear - tanh; loss MSE on images 600..2000 + 100 (std - 1)^2;
    Adam 0.001. Random pixels stand in for the digits (the time does not depend on them)."""

    def __init__(self, gen):
        self.gen = gen
        self.x = torch.rand(2000, 1, 28, 28, generator=gen) * 2 - 1
        self.p = [conv_layer(1, 16, 3, gen), conv_layer(16, 32, 3, gen), mlp([32 * 7 * 7, 1], gen)[0]]
        self.opt = torch.optim.Adam([t for wb in self.p for t in wb], lr=0.001)

    def step(self):
        z = torch.tanh(cnn(self.p, self.x))
        q = [conv_layer(1, 16, 5, self.gen), mlp([16 * 14 * 14, 1], self.gen)[0]]
        q = [t for wb in q for t in wb]
        for _ in range(100):
            idx = torch.randperm(600, generator=self.gen)[:20]
            pairs = list(zip(q[0::2], q[1::2]))
            loss = ((cnn(pairs, self.x[idx]) - z[idx]) ** 2).mean()
            g = torch.autograd.grad(loss, q, create_graph=True)
            q = [w - 0.001 * gw for w, gw in zip(q, g)]
        pred = cnn(list(zip(q[0::2], q[1::2])), self.x[600:])
        loss = ((pred - z[600:]) ** 2).mean() + 100 * (z.std() - 1) ** 2
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class Evolution:
    """fig8: one DES generation (evosax's rule, temperature 12.5, sigma 0.05) of a 3-32-32-1 ReLU
    meta-learner (1217 weights) with the population scored as a batch: 8 + 256 sphere points, 256
    ReLU features redrawn, ridge 1e-3 (its prediction map built once), fitness = test MSE +
    (std - 1)^2 + mean^2. No gradients: torch.no_grad and batched products (bmm)."""

    population = 64

    def __init__(self, gen):
        self.gen, self.n = gen, Evolution.population
        self.shapes = [(32, 3), (32,), (32, 32), (32,), (1, 32), (1,)]
        self.mean = torch.cat([t.detach().reshape(-1) for t in flat(mlp([3, 32, 32, 1], gen))])
        self.sigma = torch.full_like(self.mean, 0.05)
        c = torch.arange(self.n) / (self.n - 1) - 0.5
        w = torch.exp(-20 * torch.sigmoid(12.5 * c))
        self.weights = w / w.sum()

    def unflatten(self, x):
        out, at = [], 0
        for s in self.shapes:
            size = math.prod(s)
            out.append(x[:, at:at + size].reshape(x.shape[0], *s))
            at += size
        return out

    @torch.no_grad()
    def step(self):
        x = sphere(264, 3, self.gen)
        phi = torch.relu(x @ torch.randn(3, 256, generator=self.gen))
        # ridge in its dual form (8 x 8, as occam solves it when samples < features) with the
        # identity as labels: column j of M is the predictions for label e_j
        tr = phi[:8]
        m = phi[8:] @ tr.T @ torch.linalg.solve(tr @ tr.T + 1e-3 * torch.eye(8), torch.eye(8))  # 256 x 8
        z = torch.randn(self.n, self.mean.numel(), generator=self.gen)
        xs = self.mean + self.sigma * z
        w1, b1, w2, b2, w3, b3 = self.unflatten(xs)
        h = torch.relu(torch.matmul(x, w1.transpose(1, 2)) + b1[:, None, :])  # P x 264 x 32
        h = torch.relu(torch.baddbmm(b2[:, None, :], h, w2.transpose(1, 2)))
        h = torch.baddbmm(b3[:, None, :], h, w3.transpose(1, 2))[:, :, 0]  # P x 264
        pred = h[:, :8] @ m.T
        fitness = ((pred - h[:, 8:]) ** 2).mean(1) + (h.std(1) - 1) ** 2 + h.mean(1) ** 2
        order = torch.argsort(fitness)
        dx = xs[order] - self.mean
        self.mean = self.mean + self.weights @ dx
        self.sigma = 0.9 * self.sigma + 0.1 * (self.weights @ dx ** 2).sqrt()


WORKLOADS = {"kernel": Kernel, "ridge": Ridge, "unrolled": Unrolled, "connectome": Connectome, "evolution": Evolution,
             "spiking": Spiking, "mnist": Mnist}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="all", choices=["all"] + list(WORKLOADS))
    ap.add_argument("--repeats", type=int, default=20, help="timed meta-steps (the median is reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--population", type=int, default=64, help="members per generation (evolution)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Evolution.population = args.population
    out = []
    for name, cls in WORKLOADS.items():
        if args.workload not in ("all", name):
            continue
        gen = torch.Generator().manual_seed(1)
        w = cls(gen)
        for _ in range(3):
            w.step()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            w.step()
            times.append(time.perf_counter() - t0)
        ms = 1e3 * statistics.median(times)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.append({"workload": name, "ms_per_step": ms, "peak_rss_mb": rss})
        members = f" population={args.population}" if name == "evolution" else ""
        if name == "evolution":
            out[-1]["population"] = args.population
        if not args.json:
            print(f"workload={name}{members} ms_per_step={ms:.3f} peak_rss_mb={rss:.0f}", flush=True)
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
