"""CartesianMoE feed-forward block and the paper's MoE baselines (arXiv 2410.16077).

CartesianMoE replaces a MoE layer by two routed MoE sub-layers applied in sequence, each with
its own router over N half-width experts, so a token's effective expert is the composition
FFN^B_j ∘ FFN^A_i of one sub-expert from each set (the Cartesian product of the two sets).
The forward pass follows the official evaluation code (spec §1.3):

    u = RMSNorm_post(h)                                       # the decoder's usual norm
    a = c_A0 · Σ_{i∈TopK(p_A)} w_A,i FFN^A_i(u) + c_A1 · FFN^A_shared(u)     # sub-layer A
    y = h + a                                                 # residual around A
    v = RMSNorm_mid(y)                                        # extra norm ("mlp_layernorm")
    b = c_B0 · Σ_{j∈TopK(p_B)} w_B,j FFN^B_j(v) + c_B1 · FFN^B_shared(v)     # sub-layer B
    out = y + b                                               # residual around B

with ``p = softmax(W_router ·)`` in fp32, top-2, weights renormalised when k > 1 and
``c = softmax(Linear(D, 2)(·))`` the learned mix of routed and shared output (DeepSpeed residual
MoE). The baselines of Table 1 are plain :class:`repro_core.moe.MoEFeedForward` layers at equal
total and activated parameters (spec §1.4), built by :func:`build_ffn`.
"""

from __future__ import annotations

import torch
from repro_core.layers import RMSNorm
from repro_core.moe import MoEAux, MoEFeedForward, TokenTableRouter, count_block_parameters
from torch import nn

from repro_cartesian_moe.config import HASH_TABLES, VARIANTS

TOP_P = 0.4  # TopP baseline threshold (paper Table 1 and the official code, spec §1.7)


class CartesianMoEFFN(nn.Module):
    """Two routed MoE sub-layers in sequence (Cartesian product routing).

    Args:
        hidden_size: D.
        num_experts: N routed sub-experts in *each* sub-layer.
        expert_hidden_size: intermediate size of each sub-expert (W/2 for a baseline of
            full-width W experts).
        top_k: experts per token in each sub-layer (the paper: 2, so 2 x 2 = 4 composite
            "virtual experts" per token).
        shared_expert_hidden_size: intermediate size of the shared expert of *each* sub-layer
            (W/2, so both together are one full-width W expert); 0 = no shared expert.
        shared_mix: "coef" (learned two-way softmax, as the official code) or "add".
        rms_norm_eps: eps of the extra norm between the sub-layers.
        init_std: std of the normal init of router and expert weights.

    Submodules: ``moe_a`` and ``moe_b`` (:class:`MoEFeedForward`), ``mid_norm`` (RMSNorm_mid,
    the official ``mlp_layernorm``). The norm in front of sub-layer A is the decoder layer's
    ``post_attention_layernorm``, so it is not part of this block.
    """

    def __init__(
        self,
        hidden_size: int,
        num_experts: int,
        expert_hidden_size: int,
        top_k: int = 2,
        *,
        shared_expert_hidden_size: int = 0,
        shared_mix: str = "coef",
        rms_norm_eps: float = 1e-6,
        init_std: float = 0.02,
    ):
        super().__init__()

        def sublayer() -> MoEFeedForward:
            return MoEFeedForward(
                hidden_size,
                num_experts,
                expert_hidden_size,
                top_k,
                shared_expert_hidden_size=shared_expert_hidden_size,
                shared_mix=shared_mix,
                init_std=init_std,
            )

        self.moe_a = sublayer()
        self.mid_norm = RMSNorm(hidden_size, eps=rms_norm_eps)
        self.moe_b = sublayer()

    def forward(
        self,
        hidden_states: torch.Tensor,
        residual: torch.Tensor,
        token_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[MoEAux]]:
        """Args:
            hidden_states: (B, T, D) ``u = RMSNorm_post(h)``, what a decoder hands its MLP.
            residual: (B, T, D) ``h``, the residual stream the MLP output is added to.
            token_mask: (B, T) bool, False for padding (left out of aux losses and stats).
        Returns:
            ``out - h = a + b`` (B, T, D), so that the decoder's usual ``h + mlp(u)`` gives the
            block output, and ``[aux_A, aux_B]`` (one :class:`MoEAux` per router).
        """
        # eqs. (1)-(2) of modeling.py: router A, top-2 of N, coef mix with shared expert A
        a, aux_a = self.moe_a(hidden_states, token_mask=token_mask)  # (B, T, D)
        y = residual + a  # eq. (3): residual around A
        # eqs. (4)-(5): the router of B sees RMSNorm_mid(h + A(u)), so B's choice depends on
        # A's output and a token's expert is the ordered pair (i, j) in S_A x S_B.
        b, aux_b = self.moe_b(self.mid_norm(y), token_mask=token_mask)  # (B, T, D)
        return a + b, [aux_a, aux_b]  # eq. (6): out = y + b = h + (a + b)

    def init_parameters(self, std: float) -> None:
        self.moe_a.init_parameters(std)
        self.moe_b.init_parameters(std)
        nn.init.ones_(self.mid_norm.weight)

    def set_disable_top1(self, enabled: bool, sublayers: tuple[str, ...] = ("a", "b")) -> None:
        """Routing-robustness switch for the chosen sub-layers. Which routers the paper
        disabled is not stated (spec §1.10); both is the default, as
        ``repro_core.moe.set_disable_top1`` does for every router of a model."""
        for name in sublayers:
            if name not in ("a", "b"):
                raise ValueError(f"sublayers={sublayers!r}; each must be 'a' or 'b'")
            getattr(self, f"moe_{name}").router.disable_top1 = enabled

    def num_activated_parameters(self) -> int:
        """Both sub-layers' activated parameters plus the mid norm."""
        return sum(count_block_parameters(child, activated=True) for child in self.children())


def build_ffn(
    variant: str,
    hidden_size: int,
    dense_hidden_size: int,
    num_experts: int,
    *,
    shared_mix: str = "coef",
    rms_norm_eps: float = 1e-6,
    init_std: float = 0.02,
    vocab_size: int = 0,
    hash_table: str = "fixed",
    hash_table_seed: int = 0,
) -> nn.Module:
    """One MoE FFN block of the paper's Table 1 at equal parameters (spec §1.4).

    With W = ``dense_hidden_size`` and N = ``num_experts``, each parameter-matched variant holds
    N+1 "units" of 3·D·W expert parameters and activates 3 units per token:

    ==================== ================================ ===== ==============================
    variant              routed experts                   top-k shared
    ==================== ================================ ===== ==============================
    smoe_share           N x W                            2     W, coef mix
    smoe_top3            N x W(N+1)/N                     3     none (activates 3(N+1)/N)
    fine_grained         2N x W/2                         4     2 x W/2 averaged, coef mix
    cartesian            A: N x W/2, B: N x W/2           2+2   W/2 in A + W/2 in B, coef mix
    cartesian_no_shared  A: N x W/2, B: N x W/2           2+2   none (Table 3 ablation)
    smoe_topp            N x W                            p=.4  W, coef mix (TopP baseline)
    hash_share           N x W                            2     W, coef mix (Hash Layer)
    ==================== ================================ ===== ==============================

    ``hash_share`` is SMoE-Share whose router logits are a row of a (vocab_size, N) per-token-id
    score table (:class:`~repro_core.moe.TokenTableRouter`) instead of ``W_router x``: the Hash
    Layer baseline of the official code (spec §1.7). Its "router" is then V·N table entries
    instead of N·D weights; ``hash_table`` = "fixed" keeps them in a buffer (not parameters),
    "trained" makes them parameters (one row, N, activated per token). The table is drawn
    N(0, init_std²) from ``hash_table_seed``, so every MoE layer gets the same one.

    ``smoe_topp`` keeps experts until their probabilities sum to 0.4 (:data:`TOP_P`, the
    crossing one included): its activated parameters vary per token (at most all N).

    Extras (not expert parameters): routers N·D (SMoE) or 2N·D (fine-grained, Cartesian);
    mixing layers 2D+2 each (one, or two for Cartesian); the Cartesian mid norm D.

    ``shared_mix`` combines routed and shared output in every variant that has a shared expert:
    "coef" (learned two-way softmax, the official code) or "add" (plain sum, the paper prose).
    """
    d, w, n = hidden_size, dense_hidden_size, num_experts
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}; allowed: {VARIANTS}")
    if w % 2:
        raise ValueError(f"dense_hidden_size={w} must be even (half-width experts)")
    common = {"init_std": init_std}
    if variant == "smoe_share":
        return MoEFeedForward(
            d, n, w, 2, shared_expert_hidden_size=w, shared_mix=shared_mix, **common
        )
    if variant == "hash_share":
        if vocab_size < 1 or hash_table not in HASH_TABLES:
            raise ValueError(
                f"hash_share needs vocab_size >= 1 (got {vocab_size}) and hash_table in "
                f"{HASH_TABLES} (got {hash_table!r})"
            )
        router = TokenTableRouter(
            vocab_size, n, 2, trainable=hash_table == "trained", seed=hash_table_seed, std=init_std
        )
        return MoEFeedForward(
            d, n, w, 2, shared_expert_hidden_size=w, shared_mix=shared_mix, router=router, **common
        )
    if variant == "smoe_topp":
        # SMoE-Share with dynamic routing: 1..N experts per token (raw probabilities as weights)
        return MoEFeedForward(
            d, n, w, n, top_p=TOP_P, shared_expert_hidden_size=w, shared_mix=shared_mix, **common
        )
    if variant == "smoe_top3":
        if (w * (n + 1)) % n:
            raise ValueError(
                f"smoe_top3 needs dense_hidden_size * (num_experts + 1) divisible by "
                f"num_experts; got W={w}, N={n}"
            )
        return MoEFeedForward(d, n, w * (n + 1) // n, 3, **common)
    if variant == "fine_grained":
        # Official code: the shared expert is two W/2 MLPs averaged = one W MLP times 0.5.
        return MoEFeedForward(
            d,
            2 * n,
            w // 2,
            4,
            shared_expert_hidden_size=w,
            shared_expert_scale=0.5,
            shared_mix=shared_mix,
            **common,
        )
    shared = w // 2 if variant == "cartesian" else 0
    return CartesianMoEFFN(
        d,
        n,
        w // 2,
        2,
        shared_expert_hidden_size=shared,
        shared_mix=shared_mix,
        rms_norm_eps=rms_norm_eps,
        **common,
    )


def run_ffn(
    block: nn.Module,
    hidden_states: torch.Tensor,
    residual: torch.Tensor,
    token_mask: torch.Tensor | None = None,
    token_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[MoEAux]]:
    """Call any :func:`build_ffn` block the same way: returns ``(out - h, [aux per router])``.
    ``token_ids`` (B, T): the input ids, which the ``hash_share`` router routes by."""
    if isinstance(block, CartesianMoEFFN):
        return block(hidden_states, residual, token_mask=token_mask)
    out, aux = block(hidden_states, token_mask=token_mask, token_ids=token_ids)
    return out, [aux]


__all__ = ["TOP_P", "VARIANTS", "CartesianMoEFFN", "build_ffn", "run_ffn"]
