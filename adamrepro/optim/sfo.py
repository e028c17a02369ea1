"""SFO, the Sum-of-Functions Optimizer of Sohl-Dickstein, Poole & Ganguli (2014).

The update rule, its symbols and the reference: the docstring of `SFO`.

Where this implementation deliberately differs from the authors' reference code (sfo.py in
github.com/Sohl-Dickstein/Sum-of-Functions-Optimizer), besides being deterministic (see `SFO`):

- A rejected step always goes back to the previous point. The reference backs off toward it
  up to 10 times and keeps the new point if its value is below the previous point's.
- A curvature pair is skipped in the BFGS update when sᵀHs or |yᵀs| is at most 1e-12. The
  reference still applies the exact update when sᵀHs < 0 and skips only non-finite terms.
- The default `selection` is "distance" (the summed-Hessian distance), the older reference's
  default. The newer reference defaults to "distance both": each step a coin flip between the
  summed-Hessian distance and the distance in the subfunction's own Hessian. Every other
  default is the newer reference's.
- A subfunction without history starts at β = the median eigenvalue of the mean model Hessian
  of the other evaluated subfunctions. The reference takes the median eigenvalue of the whole
  summed Hessian divided by the active count, in which both starting subfunctions carry
  hessian_init from the start, evaluated or not.
- A subfunction takes part in the summed model once it has been evaluated. In the reference
  the `init_active` starting subfunctions take part from the first step, an unevaluated one
  as a model centred at the initial point with zero gradient and Hessian hessian_init·I: a
  pull back to the initial point, which makes its first step half as long as this one's and
  keeps its second one about as short, until both starting subfunctions have been evaluated
  (the third step); here the second step is already the Newton step of the first
  subfunction's own model.
- The subspace collapses to 2N+3 directions (the reference: 2N+2): it also keeps the previous
  point, where a rejected step goes back to.
- Small safeguards: the outlier test on a subfunction's first evaluation uses the unbiased
  standard deviation and needs at least two known values (the reference: the population one,
  from a single value too, whose deviation is 0); the active set grows after a stall one step
  earlier; medians take the lower middle value (numpy's median averages the two).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from adamrepro.optim.base import check_range
from adamrepro.optim.capabilities import Capabilities

SELECTIONS = ("distance", "cyclic")

# "very small" for lengths of unit vectors and correlations: below it a direction or a
# curvature pair is round-off, not information (the reference code's eps)
TINY = 1e-12


def subspace_size(num_subfunctions: int, dim: int) -> tuple[int, int]:
    """(K_min, K_max): the directions a collapse keeps, and the count that triggers one."""
    k_min = min(2 * num_subfunctions + 3, dim)
    return k_min, min(math.ceil(1.5 * k_min), dim)


def check_int(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


class SFO(torch.optim.Optimizer):
    """SFO, the Sum-of-Functions Optimizer of Sohl-Dickstein, Poole & Ganguli (2014).

    The objective is a sum of N subfunctions F(θ) = Σ_i f_i(θ), one per fixed minibatch. SFO
    keeps, for every subfunction i, the point x_i where it was last evaluated, its value f_i and
    gradient g_i there, and a positive definite Hessian approximation H_i, i.e. the quadratic model

        q_i(x) = f_i + g_iᵀ(x − x_i) + ½ (x − x_i)ᵀ H_i (x − x_i).

    One step (one call of the closure, two when a step is rejected):

        j ← argmax_i (x − x_i)ᵀ H (x − x_i),  H = Σ_i H_i    (the model evaluated farthest away)
        f_j, g_j ← closure(j) at the current x;  add g_j to the subspace
        if the step to x was bad: step_scale ← step_scale / 2, store the bad point in j's history,
            go back to the previous point and evaluate f_j there
        else: step_scale ← 1/N + (1 − 1/N)·step_scale
        (s, y) ← (x − x_j, g_j − g_j,old) joins j's history (the last `max_history` pairs)
        H_j ← BFGS through j's history from β_j·I; eigenvalues below λ_max/hess_max_dev are
            replaced by the median positive one
        x ← x − step_scale · H⁻¹ Σ_i ∇q_i(x)                 (Newton step on the summed model)

    A step is bad when f_j or g_j is not finite; when j is evaluated for the first time and
    f_j exceeds the mean of the other subfunctions' last values by 3 standard deviations; or
    when f_j rose since x_j and exceeds its model's prediction q_j(x) by more than the summed
    model predicted the other subfunctions would gain (½ΔᵀHΔ of the last step minus j's share).
    Steps shorter than `minimum_step_length` are lengthened to it (so that y stays above round-
    off); after the first pass a step longer than `max_step_length_ratio` times the mean step so
    far is shortened to that length. β_j, the scale of BFGS's initial identity, is the smallest
    of the top m singular values of the least-squares fit Y = Q S to j's m history pairs, at least
    its largest over hess_max_dev; a subfunction without history gets the median eigenvalue of the
    mean model Hessian of the others (`hessian_init` for the very first).

    Active set (as in the paper): only `init_active` subfunctions take part at first, since
    early on a few minibatches estimate the gradient well; the next one (in index order) joins
    when the standard error of the mean of the active gradients reaches `max_gradient_noise` times
    its length (both in the H⁻¹ norm), after a rejected step, or when no subfunction joined for
    a number of steps equal to the active count; only once every active subfunction has two
    evaluations. A subfunction with fewer than two evaluations is evaluated first, so that it
    has a curvature pair.

    Memory: everything about the subfunctions lives in coordinates of one shared subspace, an
    orthonormal basis P (dim × K) spanned by the subfunctions' last points and gradients. Each new
    gradient adds one direction; when K reaches K_max = ⌈1.5·K_min⌉ the subspace collapses to
    K_min = 2N + 3 directions holding every last point and gradient, the current and previous
    point and the new gradient, so that all models stay exact where they were last evaluated.
    The state is O(dim·K) for P, O(N·K·max_history) for the subfunctions and K² for their summed
    model, never O(N·dim²); `memory_bytes()` reports it. With K_max ≥ dim the basis is the
    identity and never changes.

    Hyperparameters (defaults are those of the authors' reference code, except `selection`:
    see the module docstring):
        max_history=10            curvature pairs kept per subfunction
        hessian_init=1e5          β of the first subfunction (a large value: a short first step)
        init_active=2             subfunctions active at the start
        max_gradient_noise=1.0    standard error / length of the mean gradient that grows the set
        hess_max_dev=1e8          largest allowed eigenvalue ratio of each H_i
        max_step_length_ratio=10  longest step relative to the mean step length
        minimum_step_length=1e-8  shortest step (in parameter units)
        selection="distance"      "distance" (the paper's rule above) or "cyclic" (the active
                                  subfunction whose last evaluation is the oldest)
        allow_stochastic=False    stored only: SFO's models assume that f_i(θ) is the same every
                                  time it is evaluated, so the runner refuses stochastic models
                                  (dropout) unless this is True

    The subspace linear algebra is done in float64 whatever the parameters' dtype: it keeps the
    basis orthonormal over many collapses. A step's cost is then mostly memory traffic, reads of
    the dim × K float64 basis: five per step (Gram-Schmidt of the new gradient, twice, which also
    gives its coordinates; the move to the new point). θ's coordinates are kept, not projected;
    the summed model Σ H_i is updated as each H_i changes, its gradient summed in batched products,
    and the Newton system solved by Cholesky; nothing else costs O(dim·K), O(N·K²) or a Python
    loop over the subfunctions. Pᵀ is stored, one direction per row, so that the first `rank`
    directions are one contiguous block.

    Host syncs: SFO decides on the host what each step does (which subfunction, whether a step
    was bad, whether the subspace grows, collapses or the active set grows), from values its
    step has just computed, as the reference does in NumPy. A step reads some tens of scalars
    back from the device: unlike the grid optimizers' steps, an SFO step is not free of host
    syncs and is never captured in a CUDA graph (`capabilities`: graphable False). Its
    bookkeeping of the subfunctions (`host_state`) stays on the host, where reading it costs
    no sync, a resumed run's included (`scripts/bench_sfo.py` times a whole step).

    Unlike the reference, which picks new active subfunctions and collapse padding at random,
    this one is deterministic: subfunctions join in index order, and the collapse pads the
    basis with the old basis directions.

    Reference: J. Sohl-Dickstein, B. Poole, S. Ganguli, "Fast large-scale optimization by unifying
    stochastic gradient and quasi-Newton methods", ICML 2014 (arXiv:1311.2115).
    """

    capabilities = Capabilities(batchable=False, needs_closure=True, graphable=False,
                                subfunctions=True)
    # the state read with int()/bool() at every step: on the host, that reading it costs no
    # device sync (a checkpoint's loader keeps them there too, `runner/checkpoint.py`)
    host_state = frozenset({"hist_len", "active", "eval_count", "last_eval_step"})

    def __init__(
        self,
        params,
        num_subfunctions: int,
        max_history: int = 10,
        hessian_init: float = 1e5,
        init_active: int = 2,
        max_gradient_noise: float = 1.0,
        hess_max_dev: float = 1e8,
        max_step_length_ratio: float = 10.0,
        minimum_step_length: float = 1e-8,
        selection: str = "distance",
        allow_stochastic: bool = False,
    ) -> None:
        check_int("num_subfunctions", num_subfunctions, 1)
        check_int("max_history", max_history, 1)
        check_int("init_active", init_active, 1)
        check_range("hessian_init", hessian_init, 0.0, low_open=True)
        check_range("max_gradient_noise", max_gradient_noise, 0.0, low_open=True)
        check_range("hess_max_dev", hess_max_dev, 1.0, low_open=True)
        check_range("max_step_length_ratio", max_step_length_ratio, 1.0, low_open=True)
        check_range("minimum_step_length", minimum_step_length, 0.0)
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, "
                             f"got {selection!r}")
        if not isinstance(allow_stochastic, bool):
            raise ValueError(f"allow_stochastic must be true or false, got {allow_stochastic!r}")
        defaults = dict(
            max_history=max_history, hessian_init=hessian_init, init_active=init_active,
            max_gradient_noise=max_gradient_noise, hess_max_dev=hess_max_dev,
            max_step_length_ratio=max_step_length_ratio,
            minimum_step_length=minimum_step_length, selection=selection)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            # one flat vector: per-group settings would have no meaning
            raise ValueError("SFO doesn't support per-parameter options (parameter groups)")
        self.num_subfunctions = num_subfunctions
        self.allow_stochastic = allow_stochastic
        self._params: list[Tensor] = self.param_groups[0]["params"]
        self.last_index: int | None = None

    # ------------------------------------------------------------ flat parameter vector

    @property
    def _state(self) -> dict:
        # everything lives under the first parameter, as in torch.optim.LBFGS, so that
        # state_dict() / load_state_dict() carry it
        return self.state[self._params[0]]

    def _flat_params(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1).double() for p in self._params])

    def _flat_grad(self) -> Tensor:
        return torch.cat([
            (p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device))
            .double() for p in self._params])

    def _write_params(self, theta: Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for p in self._params:
                p.copy_(theta[offset:offset + p.numel()].view_as(p))
                offset += p.numel()

    # ------------------------------------------------------------ state

    def _init_state(self) -> None:
        group = self.param_groups[0]
        n, history = self.num_subfunctions, group["max_history"]
        theta = self._flat_params()
        dim = theta.numel()
        k_min, k_max = subspace_size(n, dim)
        f64 = dict(dtype=torch.float64, device=theta.device)
        state = self._state
        state["theta"] = theta
        state["prior_theta"] = theta.clone()
        if k_max == dim:
            # the subspace would be the whole space: use it as is
            state["basis"] = torch.eye(dim, **f64)
            state["rank"] = dim
            x_theta = theta.clone()
        else:
            state["basis"] = torch.zeros(k_max, dim, **f64)  # Pᵀ
            norm = theta.norm()
            state["rank"] = 0
            x_theta = torch.zeros(k_max, **f64)
            if norm > 0:
                state["basis"][0] = theta / norm
                state["rank"] = 1
                x_theta[0] = norm
        # θ and the previous point stay inside the subspace (a collapse keeps both): their
        # coordinates are kept up to date instead of projecting θ, a read of the whole
        # basis, each time they are needed
        state["x_theta"] = x_theta
        state["x_prior"] = x_theta.clone()
        state["k_min"], state["k_max"] = k_min, k_max
        state["last_x"] = torch.zeros(n, k_max, **f64)
        state["last_g"] = torch.zeros(n, k_max, **f64)
        state["last_f"] = torch.zeros(n, **f64)
        state["hist_s"] = torch.zeros(n, history, k_max, **f64)
        state["hist_y"] = torch.zeros(n, history, k_max, **f64)
        state["hist_len"] = torch.zeros(n, dtype=torch.long)
        # H_i = beta_i·I + W_i diag(d_i) W_iᵀ in subspace coordinates
        state["beta"] = torch.zeros(n, **f64)
        state["hess_w"] = torch.zeros(n, k_max, 2 * history, **f64)
        state["hess_d"] = torch.zeros(n, 2 * history, **f64)
        # Σ H_i over the evaluated subfunctions, kept up to date as each H_i changes: summing
        # N models of K² each step would cost more than the rest of the step at N = 468
        state["hess_sum"] = torch.zeros(k_max, k_max, **f64)
        state["active"] = torch.zeros(n, dtype=torch.bool)
        state["active"][: group["init_active"]] = True
        state["eval_count"] = torch.zeros(n, dtype=torch.long)
        state["last_eval_step"] = torch.full((n,), -1, dtype=torch.long)
        state["step"] = 0
        state["evaluations"] = 0
        state["step_scale"] = 1.0
        state["total_distance"] = 0.0
        state["predicted_improvement"] = 0.0
        state["steps_since_growth"] = 0
        state["collapses"] = 0
        state["rejected_steps"] = 0

    def load_state_dict(self, state_dict: dict) -> None:
        # torch casts floating state to the parameters' dtype (and flags to it too); SFO's
        # state is float64, long and bool whatever the parameters are: keep it as saved,
        # the host's bookkeeping on the host (`host_state`)
        saved = state_dict["state"].get(0, {})
        super().load_state_dict(state_dict)
        if saved:
            device = self._params[0].device
            self.state[self._params[0]] = {
                key: value.to("cpu" if key in self.host_state else device, copy=True)
                if isinstance(value, Tensor) else value for key, value in saved.items()}

    def memory_bytes(self) -> int:
        """Bytes held by SFO's state tensors (0 before the first step)."""
        return sum(v.numel() * v.element_size() for v in self._state.values()
                   if isinstance(v, Tensor))

    # ------------------------------------------------------------ subspace

    def _coords(self, vector: Tensor) -> Tensor:
        """Coordinates (length K_max, zero past the current rank) of a full-space vector."""
        state = self._state
        basis, rank = state["basis"], state["rank"]
        # the columns past the rank are zero: skip them (the basis is the memory traffic of
        # every projection, dim·K float64)
        out = torch.zeros(basis.shape[0], dtype=basis.dtype, device=basis.device)
        out[:rank] = basis[:rank] @ vector
        return out

    def _add_direction(self, vector: Tensor) -> Tensor:
        """Grow the subspace by the part of `vector` outside it, collapse it when full, and
        return vector's coordinates in the basis that results."""
        state = self._state
        basis, rank = state["basis"], state["rank"]
        length = vector.norm()
        if rank >= basis.shape[1] or not torch.isfinite(vector).all() or length < TINY:
            return self._coords(vector)
        # Gram-Schmidt twice: once loses orthogonality when `vector` lies nearly inside,
        # and it mostly does (the part outside is typically a tenth of a new gradient). The
        # first projection is vector's coordinates: each pass reads the basis twice, and
        # every read of it is the cost of a step
        coords = torch.zeros(basis.shape[0], dtype=basis.dtype, device=basis.device)
        coords[:rank] = basis[:rank] @ vector
        new = torch.addmv(vector, basis[:rank].T, coords[:rank], alpha=-1) / length
        outside = new.norm()
        if outside < TINY:
            return coords
        new = new / outside
        new = torch.addmv(new, basis[:rank].T, basis[:rank] @ new, alpha=-1)
        outside = new.norm()
        if outside < TINY:
            return coords
        new = new / outside
        basis[rank] = new
        coords[rank] = new @ vector
        state["rank"] = rank + 1
        if state["rank"] == state["k_max"]:
            coords = self._collapse(coords)
        return coords

    def _collapse(self, new_direction: Tensor) -> Tensor:
        """Shrink the subspace to K_min directions that keep every model exact where it was
        last evaluated: the last points and gradients, the current and previous points, and
        the gradient just added (not yet in any history), whose coordinates in the new basis
        it returns."""
        state = self._state
        k_min = state["k_min"]
        seen = state["eval_count"] > 0
        keep = torch.cat([
            new_direction[:, None],
            state["x_theta"][:, None],
            state["x_prior"][:, None],
            state["last_g"][seen].T,
            state["last_x"][seen].T,
        ], dim=1)
        k = state["rank"]
        # Householder QR: the first c columns of Q span the first c columns of the input, so
        # the kept vectors come first and the old directions only pad the basis to K_min
        padded = torch.cat([keep[:k], torch.eye(k, dtype=keep.dtype, device=keep.device)], 1)
        rotation = torch.linalg.qr(padded)[0][:, :k_min]
        new_direction = self._change_basis(rotation.T @ state["basis"][:k], rotation,
                                           new_direction)
        state["collapses"] += 1
        # the basis is a product of many rotations: restore orthonormality lost to round-off
        basis = state["basis"][:k_min]
        gram = basis @ basis.T
        if (gram - torch.eye(k_min, dtype=gram.dtype, device=gram.device)).abs().max() > 1e-10:
            q, r = torch.linalg.qr(basis.T)
            # P = Q·R: coordinates c in the old basis are R·c in the new one
            new_direction = self._change_basis(q.T, r.T, new_direction)
        return new_direction

    def _change_basis(self, new_basis: Tensor, coord_map: Tensor, vector: Tensor) -> Tensor:
        """Replace the first k basis directions by the c rows of `new_basis`; every stored
        coordinate vector v (length k) becomes v·coord_map (k × c), and so does `vector`,
        returned. For an orthonormal rotation R (new basis P·R) coord_map is R itself: exact
        inside the span of P·R."""
        state = self._state
        k, c = coord_map.shape
        k_max = state["k_max"]

        def pad(t: Tensor) -> Tensor:
            out = torch.zeros(*t.shape[:-1], k_max, dtype=t.dtype, device=t.device)
            out[..., :c] = t[..., :k] @ coord_map
            return out

        basis = state["basis"]
        basis[:c] = new_basis
        basis[c:].zero_()
        state["rank"] = c
        for name in ("last_x", "last_g", "hist_s", "hist_y", "x_theta", "x_prior"):
            state[name] = pad(state[name])
        state["hess_w"] = pad(state["hess_w"].transpose(1, 2)).transpose(1, 2).contiguous()
        # summed afresh in the new coordinates, which also drops the round-off that the
        # updates since the last change of basis accumulated
        state["hess_sum"] = self._summed_hessian()
        return pad(vector)

    # ------------------------------------------------------------ models

    def _hessian_times(self, index: int, delta: Tensor) -> Tensor:
        state = self._state
        w = state["hess_w"][index]
        return state["beta"][index] * delta + w @ (state["hess_d"][index] * (w.T @ delta))

    def _summed_hessian(self) -> Tensor:
        """Σ H_i over all subfunctions (K_max × K_max). H_i is zero until subfunction i is
        evaluated, so this is the sum over the evaluated ones."""
        state = self._state
        w, d = state["hess_w"], state["hess_d"]
        total = torch.einsum("nkh,nh,nlh->kl", w, d, w)
        total.diagonal().add_(state["beta"].sum())
        return total

    def _add_to_sum(self, index: int, sign: float) -> None:
        """hess_sum ± H_index (as stored now)."""
        state = self._state
        w = state["hess_w"][index]
        state["hess_sum"].addmm_(w * state["hess_d"][index], w.T, alpha=sign)
        state["hess_sum"].diagonal().add_(sign * state["beta"][index])

    def _model(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Value and gradient (coordinates) of subfunction `index`'s model at coordinates x."""
        state = self._state
        delta = x - state["last_x"][index]
        h_delta = self._hessian_times(index, delta)
        value = state["last_f"][index] + state["last_g"][index] @ delta + 0.5 * delta @ h_delta
        return value, state["last_g"][index] + h_delta

    def predict(self, index: int, theta: Tensor) -> tuple[float, Tensor]:
        """Value and full-space gradient of subfunction `index`'s quadratic model at the flat
        parameter vector `theta` (the model sees only theta's part inside the subspace)."""
        value, gradient = self._model(index, self._coords(theta.double()))
        return float(value), gradient @ self._state["basis"]

    def last_point(self, index: int) -> Tensor:
        """The flat parameter vector where subfunction `index` was last evaluated."""
        state = self._state
        return state["last_x"][index] @ state["basis"]

    def _record(self, index: int, f: float, grad_coords: Tensor) -> None:
        """Make the current point subfunction `index`'s last evaluation; keep the curvature
        pair (s, y) unless it is round-off."""
        state = self._state
        x = state["x_theta"]
        if state["eval_count"][index] > 0:
            s = x - state["last_x"][index]
            y = grad_coords - state["last_g"][index]
            s_len, y_len = s.norm(), y.norm()
            if s_len > TINY and y_len > TINY and (s @ y).abs() / (s_len * y_len) > TINY:
                state["hist_s"][index] = state["hist_s"][index].roll(1, 0)
                state["hist_y"][index] = state["hist_y"][index].roll(1, 0)
                state["hist_s"][index, 0] = s
                state["hist_y"][index, 0] = y
                history = state["hist_s"].shape[1]
                state["hist_len"][index] = min(int(state["hist_len"][index]) + 1, history)
        state["last_x"][index] = x
        state["last_g"][index] = grad_coords
        state["last_f"][index] = f
        state["eval_count"][index] += 1
        state["last_eval_step"][index] = state["step"]

    def _update_hessian(self, index: int) -> None:
        state = self._state
        max_dev = self.param_groups[0]["hess_max_dev"]
        m = int(state["hist_len"][index])
        self._add_to_sum(index, -1.0)
        state["hess_w"][index].zero_()
        state["hess_d"][index].zero_()
        if m == 0:
            # no curvature pair yet: the median curvature of the mean model of the others
            others = int(((state["eval_count"] > 0) & state["active"]).sum()) - 1
            if others == 0:
                state["beta"][index] = self.param_groups[0]["hessian_init"]
            else:
                # the summed model is block diagonal: its rank × rank block, and Σβ·I past
                # the rank; the eigenvalues of the block and K_max − rank copies of Σβ
                rank, k_max = state["rank"], state["k_max"]
                mean = state["hess_sum"][:rank, :rank] / others
                outside = state["hess_sum"][k_max - 1, k_max - 1] / others
                eigvals = torch.cat([torch.linalg.eigvalsh(mean), outside.expand(k_max - rank)])
                state["beta"][index] = eigvals.median()
            self._add_to_sum(index, 1.0)
            return
        s = state["hist_s"][index, :m].T  # K_max × m, newest first
        y = state["hist_y"][index, :m].T
        # all the BFGS algebra happens in the ≤ 2m-dimensional span of the pairs
        q = torch.linalg.qr(torch.cat([s, y], 1))[0]
        s_q, y_q = q.T @ s, q.T @ y
        # β: the curvature the pairs show, from the least-squares fit Y = A S; only the top m
        # singular values of A are determined by m pairs
        fit = y_q @ torch.linalg.pinv(s_q)
        singular = torch.linalg.svdvals(fit)[:m]
        if not torch.isfinite(singular).all() or singular.min() <= 0:
            # the counts live on the host (bookkeeping), β beside the parameters
            evaluated = (state["eval_count"] > 0).to(state["beta"].device)
            positive = state["beta"][evaluated & (state["beta"] > 0)]
            singular = positive.max().expand(1) if positive.numel() else \
                torch.full((1,), self.param_groups[0]["hessian_init"], dtype=torch.float64)
        beta = max(float(singular.min()), float(singular.max()) / max_dev)
        h = beta * torch.eye(q.shape[1], dtype=torch.float64, device=q.device)
        for i in reversed(range(m)):  # oldest pair first
            si, yi = s_q[:, i], y_q[:, i]
            # scale the pair to unit step: BFGS is invariant to it, round-off is not
            scale = si.norm()
            si, yi = si / scale, yi / scale
            hs = h @ si
            shs, ys = si @ hs, yi @ si
            if not (abs(float(ys)) > TINY and float(shs) > TINY):
                continue
            h = h - torch.outer(hs, hs) / shs + torch.outer(yi, yi) / ys
        # positive definiteness: eigenvalues below λ_max/hess_max_dev (negative ones from
        # pairs with yᵀs < 0 included) become the median positive eigenvalue
        eigvals, eigvecs = torch.linalg.eigh(0.5 * (h + h.T))
        if eigvals.max() <= 0:
            eigvals = torch.full_like(eigvals, float(singular.max()))
        median = eigvals[eigvals > 0].median()
        eigvals = torch.where(eigvals < eigvals.abs().max() / max_dev, median, eigvals)
        width = q.shape[1]
        state["beta"][index] = beta
        state["hess_w"][index, :, :width] = q @ eigvecs
        state["hess_d"][index, :width] = eigvals - beta
        self._add_to_sum(index, 1.0)

    def _summed_gradient(self, x: Tensor) -> Tensor:
        """Σ_i ∇q_i(x) in coordinates, over all subfunctions at once (batched matrix
        products; one not yet evaluated has g_i, x_i and H_i zero and adds nothing)."""
        state = self._state
        rank = state["rank"]
        delta = x[None, :rank] - state["last_x"][:, :rank]
        w = state["hess_w"][:, :rank]
        along = torch.matmul(delta[:, None, :], w) * state["hess_d"][:, None, :]  # N × 1 × 2m
        low_rank = torch.matmul(w, along.transpose(1, 2)).sum(0)[:, 0]
        gradient = torch.zeros_like(x)
        gradient[:rank] = state["last_g"][:, :rank].sum(0) + state["beta"] @ delta + low_rank
        return gradient

    @staticmethod
    def _solver(total: Tensor) -> Callable[[Tensor], Tensor]:
        """B ↦ total⁻¹ B. Each H_i is positive definite, so their sum has a Cholesky factor,
        a few times cheaper than the eigendecomposition it replaces (on a GPU, tens of
        times); should round-off make it indefinite, the eigendecomposition takes over."""
        factor, info = torch.linalg.cholesky_ex(total)
        if int(info) == 0:
            return lambda rhs: torch.cholesky_solve(rhs, factor)
        eigvals, eigvecs = torch.linalg.eigh(total)
        return lambda rhs: (eigvecs / eigvals) @ (eigvecs.T @ rhs)

    # ------------------------------------------------------------ the step

    def _choose(self) -> int:
        state = self._state
        active, count = state["active"], state["eval_count"]
        # a subfunction needs two evaluations for a curvature pair: get them first
        for wanted in (count == 1, count == 0):
            candidates = torch.nonzero(active & wanted).flatten()
            if candidates.numel():
                return int(candidates[0])
        if self.param_groups[0]["selection"] == "cyclic":
            oldest = torch.where(active, state["last_eval_step"], state["step"] + 1)
            return int(oldest.argmin())
        rank = state["rank"]
        # coordinates past the rank are zero for every point
        delta = state["x_theta"][None, :rank] - state["last_x"][:, :rank]
        distance = ((delta @ state["hess_sum"][:rank, :rank]) * delta).sum(1)
        distance[~active] = -1.0
        index = int(distance.argmax())
        if distance[index] < TINY and not active.all():
            # every active model is exact here: bring in a new subfunction instead
            index = int(torch.nonzero(~active).flatten()[0])
            active[index] = True
        return index

    def _evaluate(self, closure: Callable[[int], Tensor], index: int) -> tuple[float, Tensor]:
        state = self._state
        self._write_params(state["theta"])
        with torch.enable_grad():
            loss = closure(index)
        state["evaluations"] += 1
        return float(loss.detach()), self._add_direction(self._flat_grad())

    def _is_bad_step(self, index: int, f: float, grad_coords: Tensor) -> bool:
        state = self._state
        if not math.isfinite(f) or not torch.isfinite(grad_coords).all():
            return True
        count = state["eval_count"]
        if count[index] == 0:
            known = state["last_f"][count > 1]
            return known.numel() > 1 and f > float(known.mean() + 3 * known.std())
        last_f = float(state["last_f"][index])
        if f <= last_f:
            return False
        predicted = float(self._model(index, state["x_theta"])[0])
        others_gain = state["predicted_improvement"] - (last_f - predicted)
        return f - predicted > others_gain

    def _grow_active_set(self, h_solve: Callable[[Tensor], Tensor], failed: bool) -> None:
        state = self._state
        group = self.param_groups[0]
        active = state["active"]
        state["steps_since_growth"] += 1
        if active.all() or bool((state["eval_count"][active] < 2).any()):
            return
        grads = state["last_g"][active, :state["rank"]]
        n_active = grads.shape[0]
        mean = grads.mean(0)
        power_mean = mean @ h_solve(mean[:, None])[:, 0]
        spread = (grads - mean).T
        power_error = (spread * h_solve(spread)).sum()
        power_error = power_error / n_active / max(n_active - 1, 1)
        if (power_error >= group["max_gradient_noise"] * power_mean or failed
                or state["steps_since_growth"] > n_active):
            active[int(torch.nonzero(~active).flatten()[0])] = True
            state["steps_since_growth"] = 0

    @torch.no_grad()
    def step(self, closure: Callable[[int], Tensor]) -> Tensor:  # type: ignore[override]
        """Evaluate one subfunction (SFO picks which: `last_index`) and step. `closure(i)`
        must zero the gradients, compute subfunction i's loss, call backward and return the
        loss. Returns the loss of the evaluation the models now hold."""
        if closure is None:
            raise ValueError("SFO needs a closure(index) that evaluates subfunction index")
        state = self._state
        if not state:
            self._init_state()
        group = self.param_groups[0]
        n = self.num_subfunctions
        index = self._choose()
        self.last_index = index
        f, grad_coords = self._evaluate(closure, index)
        failed = self._is_bad_step(index, f, grad_coords)
        if failed:
            state["rejected_steps"] += 1
            state["step_scale"] /= 2
            if math.isfinite(f) and torch.isfinite(grad_coords).all():
                # the bad point still tells the model about the curvature
                self._record(index, f, grad_coords)
            state["theta"] = state["prior_theta"].clone()
            state["x_theta"] = state["x_prior"].clone()
            f, grad_coords = self._evaluate(closure, index)
        else:
            state["step_scale"] = 1 / n + state["step_scale"] * (1 - 1 / n)
        # the reference's floor: shorter steps give no usable curvature information
        state["step_scale"] = max(state["step_scale"], 1e-5)
        self._record(index, f, grad_coords)
        self._update_hessian(index)
        # the basis is orthonormal: lengths in coordinates are lengths in parameters
        state["total_distance"] += float((state["x_theta"] - state["x_prior"]).norm())

        # Newton step on the sum of the models, inside the rank (past it every gradient and
        # point is zero and the summed model is diagonal: the step is zero there)
        x, rank = state["x_theta"], state["rank"]
        total = state["hess_sum"][:rank, :rank]
        gradient = self._summed_gradient(x)[:rank]
        h_solve = self._solver(total)
        delta = torch.zeros_like(x)
        delta[:rank] = -state["step_scale"] * h_solve(gradient[:, None])[:, 0]
        length = float(delta.norm())
        if 0 < length < group["minimum_step_length"]:
            delta *= group["minimum_step_length"] / length
            length = group["minimum_step_length"]
        if state["evaluations"] > n and length > 0:
            longest = group["max_step_length_ratio"] * state["total_distance"] / state[
                "evaluations"]
            if length > longest:
                delta *= longest / length
        state["predicted_improvement"] = float(0.5 * delta[:rank] @ total @ delta[:rank])
        state["prior_theta"] = state["theta"].clone()
        state["x_prior"] = x.clone()
        state["theta"] = torch.addmv(state["theta"], state["basis"][:rank].T, delta[:rank])
        state["x_theta"] = x + delta
        self._write_params(state["theta"])
        self._grow_active_set(h_solve, failed)
        state["step"] += 1
        # in the parameters' dtype: a float32 tensor rounded a float64 run's loss
        return torch.tensor(f, dtype=state["theta"].dtype)
