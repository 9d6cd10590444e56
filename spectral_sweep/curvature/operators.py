"""Curvature operators: the Hessian and the generalised Gauss-Newton matrix as matrix-free products.

An operator is an object with ``dim`` (the number of trainable parameters) and ``matvec(v)``,
where ``v`` is a flat vector in the order of ``model.parameters()`` (only those with
``requires_grad``). It is built from (model, loss_fn, data):

* ``loss_fn(outputs, targets)`` is the *mean* loss over a batch, e.g. ``nn.CrossEntropyLoss()``,
  without weight decay. An L2 penalty ``wd/2 |w|^2`` adds ``wd`` to every eigenvalue; add it to
  the result rather than to the loss.
* ``data`` is one ``(x, y)`` batch or a re-iterable of ``(x, y)`` chunks (a list, or an object whose
  ``__iter__`` starts over). With chunks, the product is the chunk-size-weighted average of the
  chunk products, which equals the product of the mean loss over all chunks together while only
  one chunk's autograd graph is alive at a time.

BatchNorm (``bn_mode``): ``"train"`` normalises with each batch's own statistics, the matrix the
optimiser actually sees and the paper's choice; ``"eval"`` uses the running statistics. In train
mode a sample's output depends on the rest of its batch, so splitting the data into chunks changes
the matrix: the chunked operator is the average of the per-chunk Hessians (each with its own batch
statistics), not the Hessian of the whole set normalised by whole-set statistics. Chunked and
one-shot products agree exactly only in eval mode or for networks without BatchNorm.

A measurement never changes the model: dropout is switched off (the operator must be a fixed
matrix for Lanczos), BatchNorm in train mode runs with ``track_running_stats`` off so its running
statistics are not updated, and every module's train/eval flag is restored afterwards.

Cost accounting: ``operator.products`` counts matrix-vector products. ``GRADIENTS_PER_PRODUCT``
converts them to gradient-equivalents with a nominal count of passes (forward+backward = 1
gradient); ``scripts/bench_spectrum.py`` measures the real ratio on the machine at hand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp

from spectral_sweep.config.spectrum import BNMode, Product
from spectral_sweep.errors import UsageError
from spectral_sweep.trial.timing import ProductChoice, device_clock

LossFn = Callable[[Tensor, Tensor], Tensor]

METHODS = tuple(Product.__members__)   # the choices live in config/spectrum.py
BN_MODES = tuple(BNMode.__members__)

# Nominal cost of one product in gradients (one forward + one backward pass = 1). A Hessian-vector
# product by double backward is a gradient with graph plus a backward through it (~2 gradients of
# arithmetic); forward-over-reverse is a gradient carried with tangents (~2 as well). The GGN
# product is a forward with tangents plus one backward (~2). Measured wall-clock ratios on CPU are
# higher (about 3, see scripts/bench_spectrum.py) because of graph bookkeeping.
GRADIENTS_PER_PRODUCT = {"hessian": 2.0, "ggn": 2.0}


# ----------------------------------------------------------------------------------------------
# Parameter vectors


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the operator differentiates: those with ``requires_grad``, in model order."""
    return [p for p in model.parameters() if p.requires_grad]


def flatten(tensors: Iterable[Tensor]) -> Tensor:
    """One flat vector from a list of tensors (parameters, gradients, products)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Views of ``vector`` shaped like each tensor of ``like`` (the inverse of ``flatten``)."""
    sizes = [t.numel() for t in like]
    if vector.numel() != sum(sizes):
        raise ValueError(f"vector has {vector.numel()} entries, parameters have {sum(sizes)}")
    return [piece.view_as(t) for piece, t in zip(vector.split(sizes), like)]


# ----------------------------------------------------------------------------------------------
# Model state during a measurement


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


@contextlib.contextmanager
def curvature_mode(model: nn.Module, bn_mode: str = "train"):
    """Put ``model`` into the state a curvature measurement needs, and restore it afterwards.

    Everything goes to eval (dropout off); in ``bn_mode="train"`` BatchNorm layers go back to
    training behaviour (batch statistics) with ``track_running_stats`` off, which makes PyTorch
    skip the running-statistics update: nothing in the model is written, and in-place buffer
    updates (which torch.func transforms reject) never happen.
    """
    if bn_mode not in BN_MODES:
        raise UsageError(f"bn_mode must be one of {', '.join(BN_MODES)}, got '{bn_mode}'")
    flags = [(m, m.training) for m in model.modules()]
    tracking = [(m, m.track_running_stats) for m in model.modules() if _is_batchnorm(m)]
    model.eval()
    if bn_mode == "train":
        for m, _ in tracking:
            m.train()
            m.track_running_stats = False
    try:
        yield model
    finally:
        for m, was_tracking in tracking:
            m.track_running_stats = was_tracking
        for m, was_training in flags:
            m.training = was_training


# ----------------------------------------------------------------------------------------------
# Data: one batch or chunks


def _is_batch(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor)


def as_chunks(data) -> Iterable[tuple[Tensor, Tensor]]:
    """``data`` as a re-iterable of (x, y) chunks; one batch becomes a one-chunk list."""
    if _is_batch(data):
        return [tuple(data)]
    if iter(data) is data:
        raise UsageError("curvature data must be one (x, y) batch or a re-iterable of chunks "
                         "(a list, or an object whose __iter__ starts over), not a one-shot iterator")
    return data


class Chunks:
    """A re-iterable view of a function that returns a fresh iterator of chunks on every call.

    ``Chunks(lambda: loader.epoch(0))`` turns a loader's epoch into data for a chunked operator.
    """

    def __init__(self, make_iterator: Callable[[], Iterable]):
        self.make_iterator = make_iterator

    def __iter__(self):
        return iter(self.make_iterator())


# ----------------------------------------------------------------------------------------------
# Operators


def _grad(outputs, inputs, **kwargs):
    """torch.autograd.grad with zeros (not an error) for inputs the outputs do not depend on,
    e.g. a parameter that a particular batch never reaches."""
    return torch.autograd.grad(outputs, inputs, allow_unused=True, materialize_grads=True, **kwargs)


class CurvatureOperator:
    """A symmetric curvature matrix of ``loss_fn`` over ``data``, applied without forming it.

    ``matvec`` accepts a flat vector of any float dtype and returns one in the parameters' dtype.
    For a single batch with ``method="double_backward"`` and ``cache_graph=True`` the first
    product keeps its autograd graph, so later products skip the forward and the first backward
    pass (memory: one training step's activations, held until ``release()`` or the operator dies).
    The cached graph belongs to the parameters at the first product: an operator is a snapshot of
    one point in parameter space; build a new one after the parameters change.

    ``method="auto"`` (or a shared ``autotune.ProductChoice``) times both methods on the first
    products and keeps the cheaper for each number of samples; ``product`` says which was used.
    """

    kind = "curvature"

    def __init__(self, model: nn.Module, loss_fn: LossFn, data, bn_mode: str = "train",
                 method: str | ProductChoice = "auto", cache_graph: bool = True):
        if not isinstance(method, ProductChoice) and method not in METHODS:
            raise UsageError(f"method must be one of {', '.join(METHODS)}, got '{method}'")
        if bn_mode not in BN_MODES:
            raise UsageError(f"bn_mode must be one of {', '.join(BN_MODES)}, got '{bn_mode}'")
        self.model = model
        self.loss_fn = loss_fn
        self.chunks = as_chunks(data)
        self.single = _is_batch(data)
        self.bn_mode = bn_mode
        self.params = trainable_parameters(model)
        if not self.params:
            raise UsageError("the model has no parameters with requires_grad=True")
        self.dim = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.choice = method if isinstance(method, ProductChoice) else (
            _shared_choice(self) if method == "auto" else None)
        self.method = "auto" if self.choice is not None else method
        self.clock = (self.choice.clock or device_clock(self.device)) if self.choice else None
        self.cache_graph = cache_graph and self.single and self.method != "forward_over_reverse"
        self.products = 0  # matrix-vector products (one per matvec)
        self.chunk_products = 0  # products of single chunks: the cost unit for chunked data
        self.samples = 0  # samples processed over all products (for costs across batch sizes)
        self._graph = None

    @property
    def gradient_cost(self) -> float:
        """The work so far in nominal gradient-equivalents (see ``GRADIENTS_PER_PRODUCT``): each
        chunk's product counts as one product at that chunk's size."""
        return self.chunk_products * GRADIENTS_PER_PRODUCT[self.kind]

    def matvec(self, v: Tensor) -> Tensor:
        """The matrix times the flat vector ``v``."""
        if v.numel() != self.dim:
            raise ValueError(f"vector has {v.numel()} entries, operator dimension is {self.dim}")
        v = v.detach().to(device=self.device, dtype=self.dtype).reshape(-1)
        vs = unflatten(v, self.params)
        total, count = None, 0
        with curvature_mode(self.model, self.bn_mode):
            for x, y in self.chunks:
                n = len(y)
                part = flatten(self._chunk_product(x, y, vs)) * n
                self.chunk_products += 1
                self.samples += n
                total = part if total is None else total.add_(part)
                count += n
        if total is None:
            raise UsageError("curvature data yielded no chunks")
        self.products += 1
        return total.div_(count)

    __matmul__ = matvec

    def release(self) -> None:
        """Drop a cached autograd graph (see ``cache_graph``)."""
        self._graph = None

    @property
    def product(self) -> dict:
        """Which product this operator used: the method asked for, and with ``auto`` the method
        chosen for each number of samples and the timings behind it."""
        return self.choice.summary() if self.choice is not None else {"asked": self.method}

    def _chunk_product(self, x: Tensor, y: Tensor, vs: list[Tensor]) -> Sequence[Tensor]:
        """One chunk's product by the fixed method, or by the one ``choice`` says (timed)."""
        if self.choice is None:
            return self._product(self.method, x, y, vs)
        n = len(y)
        method = self.choice.method(n)
        start = self.clock()
        out = self._product(method, x, y, vs)
        self.choice.observe(n, method, self.clock() - start)
        if self.choice.chosen.get(n) == "forward_over_reverse":
            self._graph = None   # a cached double-backward graph will not be used again
        return out

    def _product(self, method: str, x: Tensor, y: Tensor, vs: list[Tensor]) -> Sequence[Tensor]:
        raise NotImplementedError

    def _named(self, tensors: Sequence[Tensor]) -> dict[str, Tensor]:
        """Map trainable parameter names to ``tensors`` (for torch.func.functional_call)."""
        names = [name for name, p in self.model.named_parameters() if p.requires_grad]
        return dict(zip(names, tensors))

    def _functional(self, x: Tensor) -> Callable[[dict[str, Tensor]], Tensor]:
        """The model's outputs on ``x`` as a function of its trainable parameters."""
        def outputs(params: dict[str, Tensor]) -> Tensor:
            return functional_call(self.model, params, (x,), strict=False)
        return outputs


_CHOICES: dict[tuple, ProductChoice] = {}


def _shared_choice(op: CurvatureOperator) -> ProductChoice:
    """The product choice of ``method="auto"`` operators of one network on one device, kept for
    the process: a measurement repeated during training (sharpness tracking, the learner's
    refreshes) times the two methods once, not at every measurement."""
    key = (type(op).__name__, type(op.model).__name__, op.dim, str(op.device), op.bn_mode)
    return _CHOICES.setdefault(key, ProductChoice())


class HessianOperator(CurvatureOperator):
    """The Hessian of the mean loss: products by double backward or forward-over-reverse.

    double_backward: g = dL/dw with create_graph, then Hv = d(g.v)/dw (Pearlmutter's trick by
    reverse-over-reverse). forward_over_reverse: Hv = jvp(grad L, w; v) with torch.func, which
    carries tangents through the gradient computation instead of building a second graph.
    """

    kind = "hessian"

    def _product(self, method, x, y, vs):
        if method == "forward_over_reverse":
            return self._forward_over_reverse(x, y, vs)
        graph = self._graph if self.cache_graph else None
        if graph is None:
            with torch.enable_grad():
                loss = self.loss_fn(self.model(x), y)
                graph = _grad(loss, self.params, create_graph=True)
            if self.cache_graph:
                self._graph = graph
        with torch.enable_grad():
            # a gradient that does not depend on the parameters (loss linear in them) has no
            # graph; its row of the Hessian is zero and it drops out of the sum
            live = [(g, v) for g, v in zip(graph, vs) if g.requires_grad]
            if not live:
                return [torch.zeros_like(p) for p in self.params]
            return _grad([g for g, _ in live], self.params, grad_outputs=[v for _, v in live],
                         retain_graph=self.cache_graph)

    def _forward_over_reverse(self, x, y, vs):
        outputs = self._functional(x)

        def loss(params):
            return self.loss_fn(outputs(params), y)

        primal = self._named([p.detach() for p in self.params])
        _, product = jvp(grad(loss), (primal,), (self._named(vs),))
        return list(product.values())


class GGNOperator(CurvatureOperator):
    """The generalised Gauss-Newton matrix J^T H_out J of the mean loss.

    J is the Jacobian of the network outputs (all samples of the chunk) with respect to the
    parameters and H_out the Hessian of the loss with respect to the outputs; for mean
    cross-entropy H_out is block diagonal with blocks (diag(p) - p p^T) / B. The product is
    J v by a forward-mode (or double-vjp) pass, H_out (J v) by autograd in output space (cheap),
    then J^T(.) by one backward pass. The GGN is positive semi-definite for convex losses.

    double_backward: J v via the double-vjp trick (J v = d/du [ (J^T u) . v ]), which reuses the
    one reverse graph of the outputs for both J v and J^T; forward_over_reverse: torch.func jvp
    for J v and vjp for J^T.
    """

    kind = "ggn"

    def _product(self, method, x, y, vs):
        if method == "forward_over_reverse":
            outputs = self._functional(x)
            primal = self._named([p.detach() for p in self.params])
            out, jv = jvp(outputs, (primal,), (self._named(vs),))
            _, pullback = vjp(outputs, primal)
            (product,) = pullback(self._output_hessian_product(out, y, jv))
            return list(product.values())
        graph = self._graph if self.cache_graph else None
        if graph is None:
            with torch.enable_grad():
                out = self.model(x)
                u = torch.zeros_like(out, requires_grad=True)
                jtu = _grad(out, self.params, grad_outputs=u, create_graph=True)
            graph = (out, u, jtu)
            if self.cache_graph:
                self._graph = graph
        out, u, jtu = graph
        with torch.enable_grad():
            (jv,) = _grad(jtu, [u], grad_outputs=vs, retain_graph=True)
            hjv = self._output_hessian_product(out.detach(), y, jv)
            return _grad(out, self.params, grad_outputs=hjv, retain_graph=self.cache_graph)

    def _output_hessian_product(self, out: Tensor, y: Tensor, u: Tensor) -> Tensor:
        """H_out u: the Hessian of the loss with respect to the outputs, times ``u``."""
        with torch.enable_grad():
            z = out.detach().requires_grad_(True)
            (gz,) = torch.autograd.grad(self.loss_fn(z, y), z, create_graph=True)
            (hu,) = torch.autograd.grad(gz, z, grad_outputs=u.detach())
        return hu


class PreconditionedOperator:
    """P^-1/2 A P^-1/2 for a diagonal preconditioner P (flat, positive).

    It has the spectrum of P^-1 A, the matrix whose top eigenvalue limits the step of a
    preconditioned method such as Adam, while staying symmetric so that Lanczos applies.
    """

    def __init__(self, operator, preconditioner: Tensor):
        if preconditioner.numel() != operator.dim:
            raise ValueError(f"preconditioner has {preconditioner.numel()} entries, "
                             f"operator dimension is {operator.dim}")
        if not bool((preconditioner > 0).all()):
            raise UsageError("the preconditioner must be positive everywhere")
        self.operator = operator
        self.scale = preconditioner.detach().reshape(-1).to(operator.device, operator.dtype).rsqrt()
        self.dim, self.dtype, self.device = operator.dim, operator.dtype, operator.device
        self.kind = operator.kind

    @property
    def products(self) -> int:
        return self.operator.products

    @property
    def chunk_products(self) -> int:
        return self.operator.chunk_products

    @property
    def samples(self) -> int:
        return self.operator.samples

    @property
    def gradient_cost(self) -> float:
        return self.operator.gradient_cost

    @property
    def product(self) -> dict:
        return self.operator.product

    def matvec(self, v: Tensor) -> Tensor:
        v = v.detach().to(self.device, self.dtype).reshape(-1)
        return self.operator.matvec(v * self.scale).mul_(self.scale)

    __matmul__ = matvec

    def release(self) -> None:
        self.operator.release()


def adam_preconditioner(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> Tensor:
    """The flat diagonal P = sqrt(v_hat) + eps of an Adam/AdamW state, for ``params``.

    v_hat is the bias-corrected second-moment estimate exp_avg_sq / (1 - beta2^step); Adam's
    step is lr * m_hat / P, so P^-1 H is the curvature its learning rate meets.
    """
    groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    pieces = []
    for p in params:
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" not in state or id(p) not in groups:
            raise UsageError("the optimizer has no Adam state (exp_avg_sq) for every parameter; "
                             "take at least one Adam step before measuring the preconditioned Hessian")
        group = groups[id(p)]
        beta2, eps = group["betas"][1], group["eps"]
        step = float(state["step"])
        v_hat = state["exp_avg_sq"].detach() / (1.0 - beta2 ** step)
        pieces.append(v_hat.sqrt().add_(eps))
    return flatten(pieces)


OPERATORS = {"hessian": HessianOperator, "ggn": GGNOperator}


def curvature_operator(kind: str, model: nn.Module, loss_fn: LossFn, data, bn_mode: str = "train",
                       method="auto", preconditioner: Tensor | None = None,
                       cache_graph: bool = True):
    """The operator named ``kind`` ("hessian" or "ggn"), optionally preconditioned."""
    if kind not in OPERATORS:
        raise UsageError(f"operator must be one of {', '.join(OPERATORS)}, got '{kind}'")
    operator = OPERATORS[kind](model, loss_fn, data, bn_mode=bn_mode, method=method,
                               cache_graph=cache_graph)
    return operator if preconditioner is None else PreconditionedOperator(operator, preconditioner)


def hessian_operator(model: nn.Module, loss_fn: LossFn, data, bn_mode: str = "train",
                     method="auto", cache_graph: bool = True) -> HessianOperator:
    """The Hessian of the mean loss over ``data`` (one batch or chunks)."""
    return HessianOperator(model, loss_fn, data, bn_mode=bn_mode, method=method,
                           cache_graph=cache_graph)


def ggn_operator(model: nn.Module, loss_fn: LossFn, data, bn_mode: str = "train",
                 method="auto", cache_graph: bool = True) -> GGNOperator:
    """The generalised Gauss-Newton matrix of the mean loss over ``data``."""
    return GGNOperator(model, loss_fn, data, bn_mode=bn_mode, method=method,
                       cache_graph=cache_graph)


def gradient(model: nn.Module, loss_fn: LossFn, data, bn_mode: str = "train") -> Tensor:
    """The flat gradient of the mean loss over ``data`` (chunks weighted by size), model untouched."""
    params = trainable_parameters(model)
    total, count = None, 0
    with curvature_mode(model, bn_mode), torch.enable_grad():
        for x, y in as_chunks(data):
            n = len(y)
            part = flatten(_grad(loss_fn(model(x), y), params)) * n
            total = part if total is None else total.add_(part)
            count += n
    return total.div_(count)
