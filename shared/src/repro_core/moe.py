"""Mixture-of-experts machinery shared by the MoE papers: routing, dropless dispatch, losses.

One MoE feed-forward layer is ``y = mix(Σ_{i∈S(x)} w_i(x) · E_i(x), shared(x))``:

* :class:`TopKRouter` scores each token over ``E`` experts (softmax or sigmoid, in at least
  fp32), optionally adds a per-token logit mask (``-inf``/``finfo.min`` for experts a token may
  not use), keeps the top ``k`` and optionally renormalises their weights. A router can also
  hold a fixed per-vocabulary-id mask table (``token_expert_mask``, built by
  :func:`random_token_expert_mask`), looked up by the input token ids with one gather: with one
  visible expert per id this is the Hash Layer (Roller et al., 2021); with a frequency-dependent
  number of visible experts it is MaskMoE (Su et al., 2024). :class:`TokenTableRouter` takes its
  logits from a (V, E) per-token-id score table instead of ``W x`` (the CartesianMoE code's
  top-2 Hash baseline), fixed (buffer) or trained (parameter).
* :class:`SwiGLUExperts` holds ``E`` SwiGLU experts as stacked weights and runs each expert only
  on the rows routed to it (one sort, one gather, one matmul pair per expert, one scatter-add):
  dropless, no capacity, never every expert on every token.
* :class:`MoEFeedForward` puts router, experts and an optional always-on shared expert together
  and returns ``(y, MoEAux)``; the router and the routed/shared mixing gate compute in at least
  fp32, outside autocast. The auxiliary losses (Switch load balancing, router z-loss) are
  returned, not added: the caller weights them (see :func:`report_aux`).
* Every MoE module defines ``num_activated_parameters()`` (parameters used per token), which
  the model-level ``repro_core.modeling.count_parameters`` picks up; :func:`count_block_parameters`
  does the same for a single block.
* Weight init: the stacked expert weights and the router weight are plain ``nn.Parameter``s, so
  the model's ``_init_weights`` must call ``init_parameters(std)`` on modules that define it
  (:class:`TopKRouter`, :class:`SwiGLUExperts`, :class:`MoEFeedForward`).

Shapes: N = tokens (all leading dims flattened), D = hidden size, E = routed experts,
k = experts per token, F = expert hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from repro_core.config import SCORE_FUNCS, SHARED_MIXES
from repro_core.layers import SwiGLUMLP

# Logit added for an expert a token may not use. Finite, so that a row never becomes all -inf
# (NaN after softmax) and so that it stays finite when a model is cast to bf16; exp(-1e9) is
# exactly 0 in fp32 and fp64, so a masked expert gets exactly zero probability and gradient.
MASKED_LOGIT = -1.0e9


# --------------------------------------------------------------------------------------------
# Routing


@dataclass
class RouterOutput:
    """What a router decided for N tokens.

    Attributes:
        logits: (N, E) router logits after the logit mask, in the routing dtype (>= fp32).
        scores: (N, E) softmax probabilities or sigmoid scores of ``logits``; masked experts
            have exactly 0.
        weights: (N, k) combination weights of the selected experts (renormalised when the
            router renormalises); 0 where ``indices`` is -1.
        indices: (N, k) selected expert ids, -1 where a slot selects no expert (the token has
            fewer than k experts with a non-zero score, e.g. because of the logit mask).
    """

    logits: torch.Tensor
    scores: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor


class TopKRouter(nn.Module):
    """Linear router: ``scores = softmax|sigmoid(W x + mask)``, keep the top-k.

    Args:
        hidden_size: D.
        num_experts: E.
        top_k: k, experts per token (1 <= k <= E).
        score_func: "softmax" (over all E experts, then top-k on the probabilities) or
            "sigmoid" (independent per-expert scores).
        renormalize: divide the top-k weights by their sum. None means "when k > 1" (the rule
            of the CartesianMoE code and GShard); for k = 1 the weight is the raw score.
        top_p: dynamic (top-p) routing (Huang et al. 2024, as the CartesianMoE code's TopP
            baseline): of the top-k experts in descending score, keep those until the running
            sum of scores reaches ``top_p``, the crossing expert included, so a token uses a
            variable 1..k experts; ``top_k`` is then the cap (E for no cap). None = plain top-k.
            The weights stay raw probabilities unless ``renormalize`` is True.
        token_expert_mask: optional (V, E) table, row t added to the logits of every token
            whose input id is t (0 = visible, :data:`MASKED_LOGIT` = hidden): fixed per-token
            routing constraints (Hash Layer, MaskMoE; see :func:`random_token_expert_mask`).
            Stored as a non-trainable buffer (saved in the state dict); ``forward`` then needs
            ``token_ids``. A token with fewer visible experts than k routes to its visible
            ones only (k_eff = min(k, visible), see :class:`RouterOutput`).

    Attributes:
        weight: (E, D) router weight (the name and shape of HF Mixtral's router).
        token_expert_mask: the (V, E) buffer above, or None.
        disable_top1: evaluation switch: zero each token's highest score before the top-k, so the
            token is routed to its next-best k experts (routing-robustness experiment).

    Routing runs in ``promote_types(x.dtype, float32)`` and outside autocast, so bf16 models
    route in fp32 and fp64 tests route in fp64.
    """

    def __init__(
        self,
        hidden_size: int,
        num_experts: int,
        top_k: int,
        score_func: str = "softmax",
        renormalize: bool | None = None,
        top_p: float | None = None,
        token_expert_mask: torch.Tensor | None = None,
    ):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k={top_k} must be in [1, num_experts={num_experts}]")
        if score_func not in SCORE_FUNCS:
            raise ValueError(f"score_func={score_func!r}; allowed: {SCORE_FUNCS}")
        if top_p is not None and not (0 < top_p <= 1 and score_func == "softmax"):
            raise ValueError(
                f"top_p={top_p} must be in (0, 1] with score_func='softmax' (got {score_func!r})"
            )
        self.num_experts = num_experts
        self.top_k = top_k
        self.score_func = score_func
        self.top_p = top_p
        if renormalize is None:
            renormalize = top_k > 1 and top_p is None
        self.renormalize = renormalize
        self.disable_top1 = False
        self.register_buffer("token_expert_mask", None)
        self.build_scorer(hidden_size)
        if token_expert_mask is not None:
            self.set_token_expert_mask(token_expert_mask)
        self.init_parameters(std=0.02)

    def build_scorer(self, hidden_size: int) -> None:
        """Create what :meth:`router_logits` reads: here the (E, D) linear weight. A subclass
        with another logit source overrides both (see :class:`TokenTableRouter`)."""
        self.weight = nn.Parameter(torch.empty(self.num_experts, hidden_size))

    def router_logits(self, x: torch.Tensor, token_ids: torch.Tensor | None) -> torch.Tensor:
        """(N, E) logits before any mask, in ``x.dtype`` (the routing dtype): ``W x``."""
        return F.linear(x, self.weight.to(x.dtype))

    def init_parameters(self, std: float) -> None:
        nn.init.normal_(self.weight, std=std)

    def _device(self) -> torch.device:
        tensor = next(iter(self.parameters()), None)
        if tensor is None:
            tensor = next(t for t in self.buffers())
        return tensor.device

    def set_token_expert_mask(self, table: torch.Tensor) -> None:
        """Install (or replace) the (V, E) per-token-id logit mask (a copy, as a buffer)."""
        if table.ndim != 2 or table.shape[1] != self.num_experts:
            raise ValueError(
                f"token_expert_mask has shape {tuple(table.shape)}; it needs (vocab_size, "
                f"num_experts={self.num_experts})"
            )
        if bool((table.max(-1).values < 0).any()):
            raise ValueError("token_expert_mask has a row with no visible (0) expert")
        device = self._device() if self._device().type != "meta" else table.device
        self.token_expert_mask = table.detach().to(device=device, dtype=torch.float32).clone()

    def token_logit_mask(self, token_ids: torch.Tensor | None) -> torch.Tensor:
        """Rows of ``token_expert_mask`` for ``token_ids`` (any shape, N ids) -> (N, E): one
        gather, no loop over tokens."""
        if token_ids is None:
            raise ValueError(
                "this router holds a per-token expert mask (Hash Layer / MaskMoE): pass the input "
                "token ids (token_ids=...), e.g. call the model with input_ids, not inputs_embeds"
            )
        return self.token_expert_mask.index_select(0, token_ids.reshape(-1))

    def forward(
        self,
        x: torch.Tensor,
        logit_mask: torch.Tensor | None = None,
        token_ids: torch.Tensor | None = None,
    ) -> RouterOutput:
        """Route ``x`` (N, D); ``logit_mask`` (N, E) is added to the logits before scoring, and
        so is ``token_expert_mask[token_ids]`` when the router holds a table (token_ids: N ids)."""
        if self.token_expert_mask is not None:
            table_mask = self.token_logit_mask(token_ids)  # (N, E)
            logit_mask = table_mask if logit_mask is None else logit_mask + table_mask
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = self.router_logits(x.to(dtype), token_ids)  # (N, E)
            if logit_mask is not None:
                logits = logits + logit_mask.to(dtype)
            if self.score_func == "softmax":
                scores = logits.softmax(dim=-1)
            else:
                scores = torch.sigmoid(logits)
            selectable = scores
            if self.disable_top1:
                selectable = scores.scatter(-1, scores.argmax(-1, keepdim=True), 0.0)
            weights, indices = selectable.topk(self.top_k, dim=-1)  # (N, k), descending
            if self.top_p is not None:
                # keep slot j while the scores before it sum to < p (the crossing one stays)
                before = weights.cumsum(-1) - weights
                weights = weights.masked_fill(before >= self.top_p, 0.0)
            if self.renormalize:
                denom = weights.sum(-1, keepdim=True).clamp_min(torch.finfo(dtype).eps)
                weights = weights / denom
            # A slot whose score is exactly 0 (masked, disabled, or underflowed) contributes
            # nothing and has no gradient; drop it from dispatch and statistics (k_eff <= k).
            unused = (selectable.gather(-1, indices) == 0) | (weights == 0)
            indices = indices.masked_fill(unused, -1)
            weights = weights.masked_fill(unused, 0.0)
        return RouterOutput(logits=logits, scores=scores, weights=weights, indices=indices)

    def extra_repr(self) -> str:
        top_p = "" if self.top_p is None else f", top_p={self.top_p}"
        table = self.token_expert_mask
        table = "" if table is None else f", token_expert_mask={tuple(table.shape)}"
        return (
            f"{self.scorer_repr()} -> {self.num_experts}, top_k={self.top_k}{top_p}, "
            f"score_func={self.score_func}, renormalize={self.renormalize}{table}"
        )

    def scorer_repr(self) -> str:
        return str(self.weight.shape[1])


class TokenTableRouter(TopKRouter):
    """Router whose logits are a row of a (V, E) per-token-id score table, not a function of
    the hidden state: ``logits = T[token_id]``, then softmax and top-k as :class:`TopKRouter`.

    This is the "Hash Layer" baseline of the CartesianMoE code (an ``nn.Embedding(vocab, E)``
    whose row replaces the router logits, top-2): a token's experts, and their weights, depend
    only on its input id. (The classic one-expert Hash Layer is a ``token_expert_mask`` with one
    visible expert instead, see :func:`hash_token_expert_mask`.)

    Args:
        vocab_size: V, rows of the table.
        num_experts, top_k, score_func, renormalize, top_p: as :class:`TopKRouter`.
        trainable: True: the table is an ``nn.Parameter`` (learned with the model, e.g. through
            the load-balancing loss and the routing weights); False: a buffer (saved in the
            state dict, never updated).
        seed: the table is drawn N(0, std²) once, when the router is built, from a CPU
            generator seeded with ``seed``, so routers built with one seed share one table (as
            the single model-level table of the CartesianMoE code) and re-initialising a model
            keeps it. None: drawn from the global RNG by :meth:`init_parameters`, as any weight.
        std: standard deviation of the seeded draw (with ``seed=None``, the std handed to
            :meth:`init_parameters` is used).

    Attributes:
        table: the (V, E) table (parameter or buffer). ``forward`` needs ``token_ids``.
    """

    def __init__(
        self,
        vocab_size: int,
        num_experts: int,
        top_k: int,
        score_func: str = "softmax",
        renormalize: bool | None = None,
        top_p: float | None = None,
        *,
        trainable: bool = False,
        seed: int | None = 0,
        std: float = 0.02,
    ):
        if vocab_size < 1:
            raise ValueError(f"vocab_size={vocab_size} must be >= 1 for a token-table router")
        # plain attributes, read by build_scorer() inside TopKRouter.__init__
        self.trainable = trainable
        self.seed = seed
        self.std = std
        super().__init__(vocab_size, num_experts, top_k, score_func, renormalize, top_p)

    def build_scorer(self, vocab_size: int) -> None:
        if self.seed is None:
            table = torch.empty(vocab_size, self.num_experts)
        else:  # on the CPU even inside a meta-device context (HF from_pretrained)
            generator = torch.Generator().manual_seed(int(self.seed))
            table = torch.randn(
                vocab_size, self.num_experts, generator=generator, device="cpu"
            ) * float(self.std)
        if self.trainable:
            self.table = nn.Parameter(table)
        else:
            self.register_buffer("table", table)

    def init_parameters(self, std: float) -> None:
        """Seeded tables are drawn at construction; otherwise N(0, std²) (guarded by
        transformers against overwriting a table loaded from a checkpoint)."""
        if self.seed is None:
            with torch.no_grad():
                nn.init.normal_(self.table, std=std)

    def router_logits(self, x: torch.Tensor, token_ids: torch.Tensor | None) -> torch.Tensor:
        """``T[token_ids]`` (N, E) in ``x.dtype``: one gather, no loop over tokens."""
        if token_ids is None:
            raise ValueError(
                "a token-table router (Hash baseline) routes by input id: pass token_ids=..., "
                "e.g. call the model with input_ids, not inputs_embeds"
            )
        return self.table.index_select(0, token_ids.reshape(-1)).to(x.dtype)

    def num_activated_parameters(self) -> int:
        """One row of the table per token (trainable), else nothing."""
        return self.num_experts if self.trainable else 0

    def scorer_repr(self) -> str:
        kind = "trainable" if self.trainable else "fixed"
        return f"token table {tuple(self.table.shape)} ({kind}, seed={self.seed})"


def random_token_expert_mask(
    visible_experts: torch.Tensor, num_experts: int, seed: int
) -> torch.Tensor:
    """A fixed random per-token-id logit mask: row t has ``visible_experts[t]`` zeros at expert
    indices drawn uniformly without replacement and :data:`MASKED_LOGIT` elsewhere.

    The draw ranks E independent uniform keys per row and keeps the ``visible_experts[t]``
    smallest (a uniform random subset), with a generator seeded by ``seed`` on the CPU, so the
    table depends only on (visible_experts, num_experts, seed). For one seed, the visible set of
    a token with V experts contains its visible set with fewer.

    Args:
        visible_experts: (V,) integers in [1, E], visible experts per vocabulary id.
    Returns:
        (V, E) float32 table of 0 (visible) and :data:`MASKED_LOGIT` (hidden).
    """
    # Built on the CPU even inside a meta-device context (HF from_pretrained), so the draw
    # does not depend on where the model is being built.
    visible_experts = torch.as_tensor(visible_experts, dtype=torch.long, device="cpu")
    if visible_experts.ndim != 1:
        raise ValueError(
            f"visible_experts must be 1-D (vocab,), got {tuple(visible_experts.shape)}"
        )
    if visible_experts.numel() and not (
        1 <= int(visible_experts.min()) and int(visible_experts.max()) <= num_experts
    ):
        raise ValueError(f"visible_experts must lie in [1, num_experts={num_experts}]")
    generator = torch.Generator().manual_seed(int(seed))
    keys = torch.rand(
        visible_experts.numel(), num_experts, generator=generator, device="cpu"
    )  # (V, E)
    rank = keys.argsort(-1).argsort(-1)  # rank of each expert's key within its row
    visible = rank < visible_experts[:, None]  # (V, E), V_t True per row
    return torch.zeros(visible.shape, device="cpu").masked_fill(~visible, MASKED_LOGIT)


def hash_token_expert_mask(vocab_size: int, num_experts: int, seed: int) -> torch.Tensor:
    """Hash Layer routing table (Roller et al., 2021): one fixed random expert per token id,
    drawn uniformly (not balanced), i.e. :func:`random_token_expert_mask` with one visible
    expert everywhere. With it a softmax router gives that expert weight exactly 1.0, so the
    output does not depend on the router weights. (The CartesianMoE code's "Hash" baseline is a
    different thing: a score table that replaces the logits, with top-2; see
    :class:`TokenTableRouter`.)"""
    return random_token_expert_mask(torch.ones(vocab_size, dtype=torch.long), num_experts, seed)


# --------------------------------------------------------------------------------------------
# Experts and dispatch


class SwiGLUExperts(nn.Module):
    """E SwiGLU experts stored as stacked weights (HF Mixtral layout).

    ``E_e(x) = down_e( silu(gate_e x) * up_e x )`` with

    * ``gate_up_proj``: (E, 2F, D); rows [0, F) are gate_e, rows [F, 2F) are up_e;
    * ``down_proj``: (E, D, F).
    """

    def __init__(self, num_experts: int, hidden_size: int, expert_hidden_size: int):
        super().__init__()
        self.num_experts = num_experts
        self.hidden_size = hidden_size
        self.expert_hidden_size = expert_hidden_size
        e, d, f = num_experts, hidden_size, expert_hidden_size
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * f, d))
        self.down_proj = nn.Parameter(torch.empty(e, d, f))
        self.init_parameters(std=0.02)

    def init_parameters(self, std: float) -> None:
        nn.init.normal_(self.gate_up_proj, std=std)
        nn.init.normal_(self.down_proj, std=std)

    def expert_forward(self, expert: int, x: torch.Tensor) -> torch.Tensor:
        """Apply expert ``expert`` to rows ``x`` (n, D) -> (n, D)."""
        gate, up = F.linear(x, self.gate_up_proj[expert]).chunk(2, dim=-1)  # (n, F) each
        return F.linear(F.silu(gate) * up, self.down_proj[expert])

    def forward(
        self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Dropless dispatch: ``out[t] = Σ_j weights[t, j] · E_{indices[t, j]}(x[t])``.

        Args:
            x: (N, D) tokens.
            indices: (N, k) expert ids; -1 means "no expert" for that slot.
            weights: (N, k) combination weights.
        Returns:
            (N, D) in x's dtype.
        """
        n_tokens, k = indices.shape
        flat = indices.reshape(-1)  # (N*k,) slot s belongs to token s // k
        flat = torch.where(flat < 0, self.num_experts, flat)  # unused slots sort last
        order = flat.argsort(stable=True)  # slots grouped by expert
        counts = torch.bincount(flat, minlength=self.num_experts + 1)
        counts = counts[: self.num_experts].tolist()
        order = order[: sum(counts)]
        token_of_slot = order // k  # (n_used,)
        x_sorted = x.index_select(0, token_of_slot)  # (n_used, D), contiguous per expert
        # Every expert runs, on zero rows if none are routed to it, so that each expert weight
        # is in the graph (DDP without find_unused_parameters) and gets a zero gradient.
        y_sorted = torch.cat(
            [self.expert_forward(e, rows) for e, rows in enumerate(x_sorted.split(counts, dim=0))]
        )  # (n_used, D)
        slot_weights = weights.reshape(-1).index_select(0, order).to(y_sorted.dtype)
        y_sorted = y_sorted * slot_weights[:, None]
        out = x.new_zeros(n_tokens, x.shape[-1])
        return out.index_add(0, token_of_slot, y_sorted.to(x.dtype))

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, {self.hidden_size} -> {self.expert_hidden_size}"


def swiglu_mlp(hidden_size: int, intermediate_size: int) -> SwiGLUMLP:
    """The core's dense SwiGLU MLP (HF Llama names) without bias, built from two integers."""
    shape = SimpleNamespace(
        hidden_size=hidden_size, intermediate_size=intermediate_size, mlp_bias=False
    )
    return SwiGLUMLP(shape)


# --------------------------------------------------------------------------------------------
# Losses and statistics


def load_balancing_loss(
    scores: torch.Tensor,
    indices: torch.Tensor,
    num_experts: int,
    token_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Switch-Transformer balancing loss ``E · Σ_i f_i · P_i``.

    ``f_i`` is the fraction of routed (token, expert) assignments that went to expert i (no
    gradient), ``P_i`` the mean over tokens of the router's probability for expert i (sigmoid
    scores are first normalised to sum to 1 per token). Perfectly uniform routing gives 1.0;
    everything on one expert with probability 1 gives E.

    Args:
        scores: (N, E) router scores; indices: (N, k) selected ids, -1 = unused slot;
        token_mask: (N,) bool, False for tokens to ignore (padding).
    """
    probs = scores / scores.sum(-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
    # Masks are multiplied in, not used to index: no host synchronisation (on a GPU, boolean
    # indexing and bincount wait for the device).
    tok = (
        token_mask.to(probs.dtype)
        if token_mask is not None
        else torch.ones(probs.shape[0], dtype=probs.dtype, device=probs.device)
    )
    counts = _assignments_per_expert(indices, num_experts, token_mask).to(probs.dtype)
    f = counts / counts.sum().clamp_min(1.0)  # (E,), all 0 when nothing is routed
    p = (probs * tok[:, None]).sum(0) / tok.sum().clamp_min(1.0)  # (E,)
    return num_experts * (f * p).sum()


def _assignments_per_expert(
    indices: torch.Tensor, num_experts: int, token_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """(E,) float32 count of (token, expert) assignments; -1 slots and masked tokens skipped."""
    valid = indices >= 0
    if token_mask is not None:
        valid = valid & token_mask.reshape(-1, 1).bool()
    slot = torch.where(valid, indices, num_experts).reshape(-1)  # invalid -> an extra bin
    counts = torch.zeros(num_experts + 1, dtype=torch.float32, device=indices.device)
    counts.scatter_add_(0, slot, torch.ones_like(slot, dtype=torch.float32))
    return counts[:num_experts]


def router_z_loss(logits: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """ST-MoE router z-loss ``mean_t (logsumexp_i logits[t, i])^2``; logits (N, E)."""
    z = torch.logsumexp(logits, dim=-1)  # (N,)
    if z.numel() == 0:
        return logits.sum() * 0.0
    if token_mask is None:
        return z.pow(2).mean()
    m = token_mask.to(z.dtype)
    return (z.pow(2) * m).sum() / m.sum().clamp_min(1.0)  # no boolean indexing: no host sync


@dataclass
class ExpertLoad:
    """Per-layer expert-load statistics (no gradient), for logging.

    Attributes:
        tokens_per_expert: (E,) number of (token, expert) assignments per expert; sums to the
            number of routed tokens times k (minus slots left unused by a logit mask).
        fraction: (E,) tokens_per_expert / its sum.
        cv: coefficient of variation std/mean of tokens_per_expert (0 = perfectly balanced).
        max_over_mean: max/mean of tokens_per_expert (1 = perfectly balanced).
    """

    tokens_per_expert: torch.Tensor
    fraction: torch.Tensor
    cv: torch.Tensor
    max_over_mean: torch.Tensor


@torch.no_grad()
def expert_load(
    indices: torch.Tensor, num_experts: int, token_mask: torch.Tensor | None = None
) -> ExpertLoad:
    """Load statistics of one routing decision; indices (N, k) with -1 for unused slots."""
    counts = _assignments_per_expert(indices, num_experts, token_mask)  # (E,), no host sync
    total = counts.sum().clamp_min(1.0)
    mean = counts.mean().clamp_min(torch.finfo(torch.float32).tiny)
    return ExpertLoad(
        tokens_per_expert=counts,
        fraction=counts / total,
        cv=counts.std(unbiased=False) / mean,
        max_over_mean=counts.max() / mean,
    )


@dataclass
class MoEAux:
    """What one routed MoE layer reports besides its output.

    Attributes:
        load_balancing_loss: scalar, Switch loss (:func:`load_balancing_loss`), unweighted;
            differentiable w.r.t. the router.
        z_loss: scalar, router z-loss (:func:`router_z_loss`), unweighted.
        load: :class:`ExpertLoad` statistics.
        router: the :class:`RouterOutput` (indices, weights, scores, logits), e.g. to compare
            routes or measure routing changes.
    """

    load_balancing_loss: torch.Tensor
    z_loss: torch.Tensor
    load: ExpertLoad
    router: RouterOutput

    def log_dict(self, prefix: str) -> dict[str, float]:
        """Scalars for a logger: ``{prefix}/load_balancing_loss``, ``.../load_cv``, ..."""
        return {
            f"{prefix}/load_balancing_loss": float(self.load_balancing_loss),
            f"{prefix}/z_loss": float(self.z_loss),
            f"{prefix}/load_cv": float(self.load.cv),
            f"{prefix}/load_max_over_mean": float(self.load.max_over_mean),
        }


def report_aux(
    state,
    aux: MoEAux,
    load_balancing_coef: float = 0.0,
    z_loss_coef: float = 0.0,
) -> None:
    """Hand one layer's aux to the decoder's per-forward ``state``.

    Adds ``coef * loss`` under the names "moe_load_balancing" and "moe_z_loss" (summed over
    layers by ``state.add_loss``) when the coefficient is non-zero, and appends ``aux`` to
    ``state.shared["moe_aux"]`` so a trainer can log per-layer load statistics.
    """
    if load_balancing_coef:
        state.add_loss("moe_load_balancing", load_balancing_coef * aux.load_balancing_loss)
    if z_loss_coef:
        state.add_loss("moe_z_loss", z_loss_coef * aux.z_loss)
    state.shared.setdefault("moe_aux", []).append(aux)


# --------------------------------------------------------------------------------------------
# The MoE feed-forward layer


class MoEFeedForward(nn.Module):
    """Routed SwiGLU experts plus an optional shared expert: (..., D) -> (..., D).

    Args:
        hidden_size: D.
        num_experts: E routed experts.
        expert_hidden_size: F, intermediate size of each routed expert.
        top_k: experts per token (with ``top_p``: the most experts per token).
        score_func, renormalize, top_p: see :class:`TopKRouter`.
        shared_expert_hidden_size: intermediate size of the always-on shared SwiGLU expert;
            0 = no shared expert. Several shared experts of width w that are summed are one
            expert of width m·w (SwiGLU is separable over hidden units).
        shared_expert_scale: the shared expert's output is multiplied by this (0.5 with a
            width-2w shared expert = the mean of two width-w experts, as in the CartesianMoE
            code's fine-grained baseline).
        shared_mix: how routed and shared outputs combine: "add" (``r + s``) or "coef"
            (DeepSpeed residual MoE: ``c = softmax(Linear(D, 2)(x))``, ``c0·r + c1·s``).
        init_std: std of the normal initialisation of router and expert weights.
        token_expert_mask: (V, E) per-token-id logit mask of the router (Hash Layer, MaskMoE;
            see :class:`TopKRouter`); ``forward`` then needs ``token_ids``.
        router: a router built by the caller, used instead of the linear :class:`TopKRouter`
            (e.g. a :class:`TokenTableRouter`); it must route over ``num_experts`` with
            ``top_k``, and ``score_func``, ``renormalize``, ``top_p`` and
            ``token_expert_mask`` are then the router's own.

    Submodules: ``router`` (:class:`TopKRouter`), ``experts`` (:class:`SwiGLUExperts`),
    ``shared_expert`` (core ``SwiGLUMLP``) and ``coefficient`` (Linear(D, 2)) when used.
    """

    def __init__(
        self,
        hidden_size: int,
        num_experts: int,
        expert_hidden_size: int,
        top_k: int,
        *,
        score_func: str = "softmax",
        renormalize: bool | None = None,
        top_p: float | None = None,
        shared_expert_hidden_size: int = 0,
        shared_expert_scale: float = 1.0,
        shared_mix: str = "add",
        init_std: float = 0.02,
        token_expert_mask: torch.Tensor | None = None,
        router: TopKRouter | None = None,
    ):
        super().__init__()
        if shared_mix not in SHARED_MIXES:
            raise ValueError(f"shared_mix={shared_mix!r}; allowed: {SHARED_MIXES}")
        if expert_hidden_size < 1 or shared_expert_hidden_size < 0:
            raise ValueError(
                f"expert_hidden_size={expert_hidden_size} must be >= 1 and "
                f"shared_expert_hidden_size={shared_expert_hidden_size} >= 0"
            )
        self.num_experts = num_experts
        self.top_k = top_k
        self.shared_expert_scale = shared_expert_scale
        self.shared_mix = shared_mix
        if router is None:
            router = TopKRouter(
                hidden_size, num_experts, top_k, score_func, renormalize, top_p, token_expert_mask
            )
        elif (router.num_experts, router.top_k) != (num_experts, top_k):
            raise ValueError(
                f"router routes over {router.num_experts} experts with top_k={router.top_k}; "
                f"this layer has num_experts={num_experts}, top_k={top_k}"
            )
        self.router = router
        self.experts = SwiGLUExperts(num_experts, hidden_size, expert_hidden_size)
        self.shared_expert = None
        self.coefficient = None
        if shared_expert_hidden_size:
            self.shared_expert = swiglu_mlp(hidden_size, shared_expert_hidden_size)
            if shared_mix == "coef":
                self.coefficient = nn.Linear(hidden_size, 2)
        self.init_parameters(init_std)

    def init_parameters(self, std: float) -> None:
        """Normal(0, std) weights, zero biases (called by the model's weight init)."""
        self.router.init_parameters(std)
        self.experts.init_parameters(std)
        for module in (self.shared_expert, self.coefficient):
            if module is None:
                continue
            for name, param in module.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(param)
                else:
                    nn.init.normal_(param, std=std)

    def forward(
        self,
        x: torch.Tensor,
        logit_mask: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
        token_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, MoEAux]:
        """Args:
            x: (..., D) tokens.
            logit_mask: (..., E) additive router-logit mask, e.g. 0 / ``-inf`` per expert.
            token_mask: (...) bool, False for tokens (padding) left out of losses and stats.
            token_ids: (...) input token ids, needed when the router holds a
                ``token_expert_mask`` (its rows for these ids are added to the logits).
        Returns:
            y (..., D) and :class:`MoEAux`.
        """
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # (N, D)
        if logit_mask is not None:
            logit_mask = logit_mask.reshape(tokens.shape[0], self.num_experts)
        if token_mask is not None:
            token_mask = token_mask.reshape(-1).bool()
        route = self.router(tokens, logit_mask, token_ids)
        y = self.experts(tokens, route.indices, route.weights)  # (N, D)
        if self.shared_expert is not None:
            shared = self.shared_expert(tokens) * self.shared_expert_scale
            if self.coefficient is not None:
                coef = self.mix_coefficients(tokens).to(y.dtype)  # (N, 2), computed in fp32
                y = y * coef[:, :1] + shared * coef[:, 1:]
            else:
                y = y + shared
        aux = MoEAux(
            load_balancing_loss=load_balancing_loss(
                route.scores, route.indices, self.num_experts, token_mask
            ),
            z_loss=router_z_loss(route.logits, token_mask),
            load=expert_load(route.indices, self.num_experts, token_mask),
            router=route,
        )
        return y.reshape(shape), aux

    def mix_coefficients(self, tokens: torch.Tensor) -> torch.Tensor:
        """``shared_mix="coef"``: ``softmax(C x + b)`` (N, 2), a gate like the router, so it too
        runs in ``promote_types(x.dtype, float32)`` outside autocast."""
        dtype = torch.promote_types(tokens.dtype, torch.float32)
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            logits = F.linear(
                tokens.to(dtype),
                self.coefficient.weight.to(dtype),
                self.coefficient.bias.to(dtype),
            )
            return logits.softmax(dim=-1)

    def num_activated_parameters(self) -> int:
        """Parameters one token uses: router, shared expert, mixing layer, k routed experts
        (with top-p routing k varies per token: this is the most, at ``top_k``; the mean is
        measured by :func:`expert_load`). A router that defines ``num_activated_parameters``
        (a token table: one row per token) is counted by it."""
        routed = sum(p.numel() for p in self.experts.parameters())
        router = sum(p.numel() for p in self.router.parameters())
        total = sum(p.numel() for p in self.parameters())
        return (
            total
            - routed
            - router
            + count_block_parameters(self.router, activated=True)
            + routed * self.top_k // self.num_experts
        )


# --------------------------------------------------------------------------------------------
# Helpers


def count_block_parameters(module: nn.Module, activated: bool = False) -> int:
    """Total parameters of one block, or (``activated=True``) parameters used per token.

    The block-level twin of ``repro_core.modeling.count_parameters`` (which counts a whole model
    and skips the embedding; it treats the model it is given as a container). A module that
    defines ``num_activated_parameters()`` is counted by it; every other module
    counts its own parameters and recurses into its children.
    """
    if activated and hasattr(module, "num_activated_parameters"):
        return int(module.num_activated_parameters())
    if not activated:
        return sum(p.numel() for p in module.parameters())
    own = sum(p.numel() for p in module.parameters(recurse=False))
    return own + sum(count_block_parameters(child, activated=True) for child in module.children())


def set_disable_top1(module: nn.Module, enabled: bool) -> int:
    """Switch the routing-robustness evaluation on or off in every router under ``module``.

    Returns the number of routers changed (0 means the module has no router: a likely mistake
    the caller may want to report).
    """
    routers = [m for m in module.modules() if isinstance(m, TopKRouter)]
    for router in routers:
        router.disable_top1 = enabled
    return len(routers)


__all__ = [
    "MASKED_LOGIT",
    "SCORE_FUNCS",
    "SHARED_MIXES",
    "RouterOutput",
    "TopKRouter",
    "TokenTableRouter",
    "random_token_expert_mask",
    "hash_token_expert_mask",
    "SwiGLUExperts",
    "swiglu_mlp",
    "load_balancing_loss",
    "router_z_loss",
    "ExpertLoad",
    "expert_load",
    "MoEAux",
    "report_aux",
    "MoEFeedForward",
    "count_block_parameters",
    "set_disable_top1",
]
