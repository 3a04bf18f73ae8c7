#!/usr/bin/python3
"""PyTorch 1.13 references for engine/train_loss and engine/optim.

Writes, next to this script:
  train_loss_ref.json  losses and gradients (autograd, float64) of cross-entropy,
                       distillation (KL * T^2 blended with CE) and MSE on fixed
                       float32 logits, including extreme ones (|x| ~ 1e3)
  optim_ref.json       parameter trajectories of torch.optim.SGD / Adam / AdamW /
                       LBFGS (float32, as training runs) on a fixed softmax
                       regression and on Rosenbrock, with masks and weight decay
                       on the weight only; learning-rate sequences of torch's
                       schedulers (StepLR, CosineAnnealingLR, LinearLR warm-up
                       through SequentialLR), per epoch and per iteration.

The optimizer JSON of each case is the spec object nncd parses
(optim_params_parse), so the C test replays exactly what a job spec says.
Run: /usr/bin/python3 tests/unit/data/make_optim_ref.py
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)


def f32list(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


# ---------------------------------------------------------------- losses
def loss_cases():
    rng = np.random.default_rng(6)
    cases = []

    def logits(n, k, scale):
        return (rng.standard_normal((n, k)) * scale).astype(np.float32)

    def extreme(n, k):
        x = logits(n, k, 3.0)
        x[0] = np.array([1000, -1000, 999.5, 0, -3][:k], dtype=np.float32)
        x[1] = np.float32(-1000.0)            # all equal, all very negative
        x[2, :] = np.float32(1e3)
        x[2, 1] = np.float32(-1e3)
        return x

    def ce(x, y):
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        loss = F.cross_entropy(t, torch.tensor(y))
        loss.backward()
        return loss.item(), t.grad.numpy()

    def kd(s, t, y, T, alpha):
        ts = torch.tensor(s, dtype=torch.float64, requires_grad=True)
        tt = torch.tensor(t, dtype=torch.float64)
        soft = F.kl_div(F.log_softmax(ts / T, dim=1), F.softmax(tt / T, dim=1),
                        reduction='batchmean') * T * T
        loss = alpha * soft
        if alpha < 1:
            loss = loss + (1 - alpha) * F.cross_entropy(ts, torch.tensor(y))
        loss.backward()
        return loss.item(), ts.grad.numpy()

    for name, x in [('ce_random', logits(7, 5, 3.0)), ('ce_extreme', extreme(5, 5)),
                    ('ce_one_class', logits(3, 1, 2.0)), ('ce_wide', logits(4, 100, 10.0))]:
        n, k = x.shape
        y = rng.integers(0, k, n)
        l, g = ce(x, y)
        cases.append({'name': name, 'kind': 'ce', 'n': n, 'k': k, 'logits': f32list(x),
                      'labels': [int(v) for v in y], 'loss': l, 'grad': [float(v) for v in g.reshape(-1)]})

    for name, s, t, T, alpha in [
            ('kd_T4_a07', logits(8, 10, 3.0), logits(8, 10, 5.0), 4.0, 0.7),
            ('kd_T8_a09', logits(8, 10, 3.0), logits(8, 10, 5.0), 8.0, 0.9),
            ('kd_T1_a05_extreme', extreme(5, 5), extreme(5, 5)[::-1].copy(), 1.0, 0.5),
            ('kd_T2_a1_nolabels', logits(6, 7, 4.0), logits(6, 7, 4.0), 2.0, 1.0),
            ('kd_T3_a0_hard_only', logits(4, 6, 2.0), logits(4, 6, 2.0), 3.0, 0.0),
            ('kd_T05_extreme_teacher', logits(5, 5, 1.0), extreme(5, 5), 0.5, 0.8)]:
        n, k = s.shape
        y = rng.integers(0, k, n)
        l, g = kd(s, t, y, T, alpha)
        c = {'name': name, 'kind': 'kd', 'n': n, 'k': k, 'student': f32list(s), 'teacher': f32list(t),
             'T': T, 'alpha': alpha, 'loss': l, 'grad': [float(v) for v in g.reshape(-1)]}
        if alpha < 1:
            c['labels'] = [int(v) for v in y]
        cases.append(c)

    a = logits(6, 9, 2.0)
    b = logits(6, 9, 2.0)
    ta = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    loss = F.mse_loss(ta, torch.tensor(b, dtype=torch.float64)) * 0.3
    loss.backward()
    cases.append({'name': 'mse_w03', 'kind': 'mse', 'count': a.size, 'a': f32list(a), 'b': f32list(b),
                  'weight': 0.3, 'loss': loss.item(), 'grad': [float(v) for v in ta.grad.numpy().reshape(-1)]})
    return cases


# ---------------------------------------------------------- optimizers
N_SAMPLES, N_FEAT, N_CLASS = 32, 6, 4
prng = np.random.default_rng(2026)
X = prng.standard_normal((N_SAMPLES, N_FEAT)).astype(np.float32)
Y = prng.integers(0, N_CLASS, N_SAMPLES)
W0 = (prng.standard_normal((N_CLASS, N_FEAT)) * 0.5).astype(np.float32)
B0 = (prng.standard_normal(N_CLASS) * 0.1).astype(np.float32)
MASK = (prng.random((N_CLASS, N_FEAT)) > 0.4).astype(np.float32)
ROSEN0 = np.array([-1.2, 1.0], dtype=np.float32)


def make_optimizer(spec, w, b):
    """torch optimizer for the nncd spec object; decay only on w."""
    name = spec['name']
    wd = spec.get('weight_decay')
    groups = [{'params': [w]}] + ([{'params': [b], 'weight_decay': 0.0}] if b is not None else [])
    if wd is not None:
        groups[0]['weight_decay'] = wd
    if name == 'sgd':
        return torch.optim.SGD(groups, lr=spec['lr'], momentum=spec.get('momentum', 0),
                               dampening=spec.get('dampening', 0), nesterov=spec.get('nesterov', False))
    if name in ('adam', 'adamw'):
        kw = {'lr': spec['lr']}
        if 'betas' in spec:
            kw['betas'] = tuple(spec['betas'])
        if 'eps' in spec:
            kw['eps'] = spec['eps']
        if wd is None and name == 'adamw':
            groups[0]['weight_decay'] = 0.01
        return (torch.optim.Adam if name == 'adam' else torch.optim.AdamW)(groups, **kw)
    if name == 'lbfgs':
        params = [w] + ([b] if b is not None else [])
        kw = {k: spec[k] for k in ('lr', 'max_iter', 'max_eval', 'history_size', 'tolerance_grad',
                                   'tolerance_change', 'line_search_fn') if k in spec}
        return torch.optim.LBFGS(params, **kw)
    raise ValueError(name)


def softmax_regression_case(name, spec, steps, masked=False, schedule=None, epochs=None, ipe=None):
    w = torch.tensor(W0 * MASK if masked else W0, requires_grad=True)
    b = torch.tensor(B0, requires_grad=True)
    x, y = torch.tensor(X), torch.tensor(Y)
    mask = torch.tensor(MASK)
    opt = make_optimizer(spec, w, b)
    sched = make_scheduler(schedule, opt, epochs, ipe) if schedule else None

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.t() + b, y)
        loss.backward()
        if masked:
            w.grad.mul_(mask)
        return loss

    traj = {'name': name, 'problem': 'softmax_regression', 'optimizer': spec, 'masked': masked,
            'w': [], 'b': [], 'loss': [], 'lr': [], 'func_evals': [], 'n_iter': []}
    if schedule:
        traj.update({'schedule': schedule, 'epochs': epochs, 'iters_per_epoch': ipe})
    for k in range(steps):
        traj['lr'].append(opt.param_groups[0]['lr'])
        loss = opt.step(closure)
        with torch.no_grad():
            if masked:
                w.mul_(mask)
        traj['w'].append(f32list(w.detach().numpy()))
        traj['b'].append(f32list(b.detach().numpy()))
        traj['loss'].append(float(loss))
        if spec['name'] == 'lbfgs':
            st = opt.state[opt._params[0]]
            traj['func_evals'].append(st['func_evals'])
            traj['n_iter'].append(st['n_iter'])
        if sched is not None and (schedule.get('per_iteration') or (k + 1) % ipe == 0):
            sched.step()
    return traj


def rosenbrock_case(name, spec, steps):
    p = torch.tensor(ROSEN0, requires_grad=True)
    opt = make_optimizer(spec, p, None)

    def closure():
        opt.zero_grad()
        loss = (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2
        loss.backward()
        return loss

    traj = {'name': name, 'problem': 'rosenbrock', 'optimizer': spec, 'masked': False,
            'w': [], 'b': [], 'loss': [], 'lr': [], 'func_evals': [], 'n_iter': []}
    for _ in range(steps):
        traj['lr'].append(opt.param_groups[0]['lr'])
        loss = opt.step(closure)
        traj['w'].append(f32list(p.detach().numpy()))
        traj['loss'].append(float(loss))
        st = opt.state[opt._params[0]]
        traj['func_evals'].append(st['func_evals'])
        traj['n_iter'].append(st['n_iter'])
    return traj


# ----------------------------------------------------------- schedules
def make_scheduler(s, opt, epochs, ipe):
    """torch schedulers for nncd's schedule s (see optim.h): warm-up by LinearLR
    from 1/(W+1) to W/(W+1), then StepLR / CosineAnnealingLR, chained by
    SequentialLR; per_iteration counts iterations instead of epochs."""
    unit = ipe if s.get('per_iteration') else 1
    w = s.get('warmup_epochs', 0) * unit
    rest = (epochs - s.get('warmup_epochs', 0)) * unit
    lrs = torch.optim.lr_scheduler
    if s['name'] == 'constant':
        main = lrs.LambdaLR(opt, lambda e: 1.0)
    elif s['name'] == 'step':
        size = s.get('step_size') or math.ceil((epochs - s.get('warmup_epochs', 0)) / 3)
        main = lrs.StepLR(opt, step_size=size * unit, gamma=s.get('gamma', 0.1))
    else:
        main = lrs.CosineAnnealingLR(opt, T_max=rest, eta_min=s.get('eta_min', 0))
    if w == 0:
        return main
    warm = lrs.LinearLR(opt, start_factor=1 / (w + 1), end_factor=w / (w + 1),
                        total_iters=max(w - 1, 1) if w > 1 else 1)
    if w == 1:  # a single warm-up position: factor 1/2 throughout
        warm = lrs.LambdaLR(opt, lambda e: 0.5)
    return lrs.SequentialLR(opt, [warm, main], milestones=[w])


def schedule_cases():
    out = []
    for s, base, epochs, ipe in [
            ({'name': 'constant'}, 0.1, 4, 3),
            ({'name': 'constant', 'warmup_epochs': 2}, 0.1, 5, 2),
            ({'name': 'step', 'step_size': 2, 'gamma': 0.5}, 0.2, 7, 2),
            ({'name': 'step'}, 0.3, 10, 1),
            ({'name': 'step', 'step_size': 3, 'gamma': 0.1, 'warmup_epochs': 1}, 0.2, 9, 2),
            ({'name': 'cosine'}, 0.05, 10, 3),
            ({'name': 'cosine', 'eta_min': 0.001}, 0.05, 6, 2),
            ({'name': 'cosine', 'warmup_epochs': 3}, 0.1, 12, 2),
            ({'name': 'cosine', 'per_iteration': True}, 0.05, 4, 5),
            ({'name': 'cosine', 'per_iteration': True, 'warmup_epochs': 1, 'eta_min': 0.01}, 0.1, 5, 4),
            ({'name': 'constant', 'per_iteration': True, 'warmup_epochs': 2}, 0.1, 4, 3)]:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=base)
        sched = make_scheduler(s, opt, epochs, ipe)
        lrs = []
        for e in range(epochs):
            for i in range(ipe):
                lrs.append(opt.param_groups[0]['lr'])
                opt.step()
                if s.get('per_iteration'):
                    sched.step()
            if not s.get('per_iteration'):
                sched.step()
        out.append({'schedule': s, 'lr': base, 'epochs': epochs, 'iters_per_epoch': ipe, 'lrs': lrs})
    return out


def main():
    import warnings
    warnings.filterwarnings('ignore')  # SequentialLR's "step before optimizer.step" noise
    with open(os.path.join(HERE, 'train_loss_ref.json'), 'w') as f:
        json.dump({'generator': 'make_optim_ref.py', 'torch': torch.__version__,
                   'cases': loss_cases()}, f)
        f.write('\n')

    cases = [
        softmax_regression_case('sgd_plain', {'name': 'sgd', 'lr': 0.5}, 25),
        softmax_regression_case('sgd_momentum_wd', {'name': 'sgd', 'lr': 0.2, 'momentum': 0.9,
                                                     'weight_decay': 0.05}, 25),
        softmax_regression_case('sgd_nesterov_wd', {'name': 'sgd', 'lr': 0.2, 'momentum': 0.9,
                                                    'nesterov': True, 'weight_decay': 0.01}, 25),
        softmax_regression_case('sgd_dampening', {'name': 'sgd', 'lr': 0.3, 'momentum': 0.8,
                                                  'dampening': 0.3}, 25),
        softmax_regression_case('adam', {'name': 'adam', 'lr': 0.05}, 25),
        softmax_regression_case('adam_l2_betas_eps', {'name': 'adam', 'lr': 0.05, 'weight_decay': 0.1,
                                                      'betas': [0.8, 0.99], 'eps': 1e-6}, 25),
        softmax_regression_case('adamw', {'name': 'adamw', 'lr': 0.05, 'weight_decay': 0.5}, 25),
        softmax_regression_case('adamw_default_decay', {'name': 'adamw', 'lr': 0.02}, 25),
        softmax_regression_case('sgd_nesterov_masked', {'name': 'sgd', 'lr': 0.2, 'momentum': 0.9,
                                                        'nesterov': True, 'weight_decay': 0.01}, 25,
                                masked=True),
        softmax_regression_case('adam_masked', {'name': 'adam', 'lr': 0.05, 'weight_decay': 0.1}, 25,
                                masked=True),
        softmax_regression_case('adamw_masked', {'name': 'adamw', 'lr': 0.05, 'weight_decay': 0.3}, 25,
                                masked=True),
        softmax_regression_case('sgd_nesterov_cosine_warmup',
                                {'name': 'sgd', 'lr': 0.3, 'momentum': 0.9, 'nesterov': True},
                                18, schedule={'name': 'cosine', 'warmup_epochs': 1}, epochs=6, ipe=3),
        softmax_regression_case('adam_step_per_epoch', {'name': 'adam', 'lr': 0.05},
                                16, schedule={'name': 'step', 'step_size': 2, 'gamma': 0.5}, epochs=8, ipe=2),
        softmax_regression_case('sgd_cosine_per_iteration', {'name': 'sgd', 'lr': 0.4, 'momentum': 0.5},
                                20, schedule={'name': 'cosine', 'per_iteration': True, 'eta_min': 0.01},
                                epochs=4, ipe=5),
        # L-BFGS cases stop short of the optimum: there the float32 loss stops
        # changing and tolerance_change decides on rounding noise.
        softmax_regression_case('lbfgs', {'name': 'lbfgs', 'lr': 1, 'max_iter': 5, 'history_size': 3}, 3),
        softmax_regression_case('lbfgs_masked', {'name': 'lbfgs', 'lr': 0.8, 'max_iter': 4,
                                                 'history_size': 4}, 4, masked=True),
        softmax_regression_case('lbfgs_strong_wolfe', {'name': 'lbfgs', 'lr': 1, 'max_iter': 6,
                                                       'history_size': 3,
                                                       'line_search_fn': 'strong_wolfe'}, 2),
        softmax_regression_case('lbfgs_tolerance_change', {'name': 'lbfgs', 'lr': 1, 'max_iter': 10,
                                                           'tolerance_change': 1e-4}, 3),
        softmax_regression_case('lbfgs_tolerance_grad', {'name': 'lbfgs', 'lr': 1, 'max_iter': 10,
                                                         'tolerance_grad': 2e-3}, 3),
        softmax_regression_case('lbfgs_strong_wolfe_max_eval',
                                {'name': 'lbfgs', 'lr': 1, 'max_iter': 10, 'max_eval': 7,
                                 'line_search_fn': 'strong_wolfe'}, 2),
        # a small lr makes the line search extrapolate (bounded cubic steps),
        # a large one makes it zoom into a bracket
        softmax_regression_case('lbfgs_strong_wolfe_extrapolate',
                                {'name': 'lbfgs', 'lr': 0.02, 'max_iter': 4, 'history_size': 5,
                                 'line_search_fn': 'strong_wolfe'}, 2),
        softmax_regression_case('lbfgs_strong_wolfe_zoom',
                                {'name': 'lbfgs', 'lr': 20, 'max_iter': 4, 'history_size': 5,
                                 'line_search_fn': 'strong_wolfe'}, 2),
        # (one step: in the second, torch's own float32 and float64 runs part by 0.5%)
        rosenbrock_case('lbfgs_rosenbrock_strong_wolfe_both',
                        {'name': 'lbfgs', 'lr': 5, 'max_iter': 4, 'history_size': 5,
                         'line_search_fn': 'strong_wolfe'}, 1),
        # Rosenbrock's valley is ill-conditioned: torch's own float32 and float64
        # runs part by more than 1e-5 after ~17 fixed-step / ~8 strong-Wolfe
        # iterations from (-1.2, 1), so the comparison stops before that.
        rosenbrock_case('lbfgs_rosenbrock', {'name': 'lbfgs', 'lr': 0.5, 'max_iter': 5,
                                             'history_size': 5}, 3),
        rosenbrock_case('lbfgs_rosenbrock_strong_wolfe', {'name': 'lbfgs', 'lr': 1, 'max_iter': 3, 'max_eval': 10,
                                                          'history_size': 10,
                                                          'line_search_fn': 'strong_wolfe'}, 2),
    ]
    with open(os.path.join(HERE, 'optim_ref.json'), 'w') as f:
        json.dump({'generator': 'make_optim_ref.py', 'torch': torch.__version__,
                   'problem': {'n': N_SAMPLES, 'features': N_FEAT, 'classes': N_CLASS,
                               'x': f32list(X), 'labels': [int(v) for v in Y], 'w0': f32list(W0),
                               'b0': f32list(B0), 'mask': [int(v) for v in MASK.reshape(-1)],
                               'rosenbrock0': f32list(ROSEN0)},
                   'cases': cases, 'schedules': schedule_cases()}, f)
        f.write('\n')


if __name__ == '__main__':
    main()
