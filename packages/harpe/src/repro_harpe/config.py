"""``model`` section of a HARPE run: the RoPE scheme of the arm and the base-selection switches.

Arms of the paper (Section 4.1) as settings of one config:

    ABF single stage    rope_scheme=single       rope_theta=b_big
    ABF multi stage     rope_scheme=single       rope_theta=b_big   stages=["1e6:256", "2e6:512"]
    PI                  rope_scheme=single       rope_theta=b0      rope_scaling=linear  scaling_factor=8
    YaRN                rope_scheme=single       rope_theta=b0      rope_scaling=yarn    scaling_factor=8
    HARPE uniform       rope_scheme=uniform      base_min, base_max, descending
    HARPE peak-valley   rope_scheme=peak_valley  base_min, base_max, pv_step, pv_* switches
"""

from __future__ import annotations

from dataclasses import dataclass, field

from repro_core.config import ConfigError, ModelConfig, check, resolve_base

from .bases import PeakValleySettings, peak_valley_bases, uniform_bases

SCHEMES = ("single", "uniform", "peak_valley")
SCALINGS = ("none", "linear", "yarn")
GROUPINGS = ("per_head", "per_kv_group")


def parse_stage(text: str, seq_len: int | None = None) -> tuple[float, int]:
    """``"1e6:256"`` -> (1e6, 256); ``"1e6:0.25"`` -> (1e6, a quarter of ``seq_len``)."""
    try:
        base, length = text.split(":")
        if "." in length:
            share = float(length)
            if not 0 < share <= 1:
                raise ValueError(share)
            return float(base), max(2, round(share * (seq_len or 1)))
        return float(base), int(length)
    except ValueError as exc:
        raise ConfigError(
            f"model.stages entry {text!r} is invalid: allowed 'base:seq_len' (e.g. '1e6:256') or "
            "'base:fraction of data.seq_len' (e.g. '1e6:0.25')"
        ) from exc


@dataclass
class HarpeModelConfig(ModelConfig):
    """:class:`~repro_core.config.ModelConfig` plus the long-context RoPE settings.

    ``rope_scheme``: ``single`` = one base ``rope_theta`` for every head (ABF, PI, YaRN, base
    pretraining); ``uniform`` = Eq. 9 from ``base_min`` to ``base_max`` (``descending`` reverses
    the head order); ``peak_valley`` = Algorithm 1 on the grid ``base_min + i * pv_step``
    (``pv_step`` 0 = (base_max - base_min) / 40) with the switches ``pv_max_distance`` (0 = the
    target length ``data.seq_len``), ``pv_extrema``, ``pv_num_extrema``, ``pv_pairing``,
    ``pv_merge``, ``pv_order`` (see :mod:`repro_harpe.bases`).
    ``rope_base_grouping``: ``per_head`` (the paper; needs one query head per KV head, or an
    error) or ``per_kv_group`` (one base per KV group, every query head of the group shares it).
    ``rope_scaling`` / ``scaling_factor`` / ``original_length``: PI (``linear``) and YaRN
    (``yarn``) through transformers' RoPE initialisers.
    ``stages``: earlier stages of multi-stage ABF as ``"base:seq_len"`` (or ``"base:0.25"``, a
    fraction of ``data.seq_len``); the run trains them in
    order, then the final stage (``rope_theta``, ``data.seq_len``). ``stage_fractions``: the share
    of the token budget of each stage, final stage last (empty = equal shares, the paper's
    "uniform" split of its Table 1).

    Copy curriculum of the synthetic corpus (our addition, not the paper's; off by default, on in
    the ``base-*`` presets): ``copy_steps`` = the first optimizer steps of the run train on copy
    blocks only (random ids of a period drawn from ``copy_period``, tiled over the block, see
    :func:`repro_harpe.corpus.copy_block`), in the same optimizer and lr schedule as the rest;
    ``copy_fraction`` = the share of copy blocks among the blocks of the later steps. Without it
    the tiny bases learn no induction and cannot retrieve at their own length (README).
    """

    hidden_size: int = 128
    intermediate_size: int = 344
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    tie_word_embeddings: bool = True
    rope_scheme: str = "single"
    base_min: float = 1.0e6
    base_max: float = 5.0e6
    descending: bool = False
    rope_base_grouping: str = "per_head"
    pv_step: float = 0.0
    pv_max_distance: int = 0
    pv_extrema: str = "prominent"
    pv_num_extrema: int = 8
    pv_pairing: str = "nearest"
    pv_merge: str = "union"
    pv_order: str = "ascending"
    rope_scaling: str = "none"
    scaling_factor: float = 1.0
    original_length: int = 128
    stages: list[str] = field(default_factory=list)
    stage_fractions: list[float] = field(default_factory=list)
    copy_steps: int = 0
    copy_fraction: float = 0.0
    copy_period: list[int] = field(default_factory=lambda: [16, 64])

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.rope_scheme in SCHEMES, "model.rope_scheme", self.rope_scheme, " | ".join(SCHEMES)
        )
        check(
            self.rope_scaling in SCALINGS,
            "model.rope_scaling",
            self.rope_scaling,
            " | ".join(SCALINGS),
        )
        check(
            self.rope_base_grouping in GROUPINGS,
            "model.rope_base_grouping",
            self.rope_base_grouping,
            " | ".join(GROUPINGS),
        )
        check(
            0 < self.base_min <= self.base_max,
            "model.base_min",
            self.base_min,
            f"0 < value <= model.base_max={self.base_max}",
        )
        check(
            self.pv_step >= 0,
            "model.pv_step",
            self.pv_step,
            ">= 0 (0 = (base_max - base_min) / 40)",
        )
        check(self.scaling_factor >= 1, "model.scaling_factor", self.scaling_factor, ">= 1")
        check(self.original_length >= 2, "model.original_length", self.original_length, ">= 2")
        if self.rope_scaling != "none" and self.rope_scheme != "single":
            raise ConfigError(
                f"model.rope_scaling={self.rope_scaling!r} with model.rope_scheme={self.rope_scheme!r}: "
                "PI / YaRN are baselines with one base; set model.rope_scheme=single"
            )
        check(self.copy_steps >= 0, "model.copy_steps", self.copy_steps, ">= 0")
        check(
            0 <= self.copy_fraction <= 1, "model.copy_fraction", self.copy_fraction, "in [0, 1]"
        )
        check(
            len(self.copy_period) == 2 and 2 <= self.copy_period[0] <= self.copy_period[1],
            "model.copy_period",
            self.copy_period,
            "[min, max] with 2 <= min <= max (token ids per repeated unit)",
        )
        for stage in self.stages:
            parse_stage(stage)
        if self.stage_fractions:
            check(
                len(self.stage_fractions) == len(self.stages) + 1
                and all(f > 0 for f in self.stage_fractions),
                "model.stage_fractions",
                self.stage_fractions,
                f"{len(self.stages) + 1} positive shares (one per stage, the final stage last)",
            )
        kv = self.num_key_value_heads or self.num_attention_heads
        if (
            self.rope_scheme != "single"
            and self.rope_base_grouping == "per_head"
            and kv != self.num_attention_heads
        ):
            raise ConfigError(
                f"model.rope_base_grouping=per_head gives each of the {self.num_attention_heads} "
                f"query heads its own base, but num_key_value_heads={kv} makes heads share keys "
                "(rotated once per KV head): set model.rope_base_grouping=per_kv_group or "
                "model.num_key_value_heads=null (multi-head attention)"
            )

    def peak_valley_settings(self, target_length: int) -> PeakValleySettings:
        return PeakValleySettings(
            max_distance=self.pv_max_distance or target_length,
            extrema=self.pv_extrema,
            num_extrema=self.pv_num_extrema,
            pairing=self.pv_pairing,
            merge=self.pv_merge,
            order=self.pv_order,
        )

    def head_bases(self, num_heads: int, num_kv_heads: int, head_dim: int, target_length: int):
        """The head -> base map of this arm (None for one shared base)."""
        if self.rope_scheme == "single":
            return None
        n = num_heads if self.rope_base_grouping == "per_head" else num_kv_heads
        if self.rope_scheme == "uniform":
            bases = uniform_bases(self.base_min, self.base_max, n, self.descending)
        else:
            step = self.pv_step or (self.base_max - self.base_min) / 40
            bases = peak_valley_bases(
                self.base_min,
                self.base_max,
                step,
                n,
                head_dim,
                self.peak_valley_settings(target_length),
            )
            if self.descending:
                bases = bases[::-1]
        group = num_heads // n
        return [b for b in bases for _ in range(group)]  # per KV group: repeat inside the group

    def scheme_name(self) -> str:
        if self.rope_scheme == "single":
            return "single" if self.rope_scaling == "none" else self.rope_scaling
        order = "descending" if self.descending else "ascending"
        return f"{self.rope_scheme.replace('_', '-')}-{order}"

    def rope_fields(self, num_heads, num_kv_heads, head_dim, seq_len, rope_theta=None) -> dict:
        """Config fields of :class:`~repro_harpe.modeling.HarpeConfig` for this arm at
        ``seq_len`` (``rope_theta`` overrides the final base, for earlier ABF stages)."""
        scaling = None
        if self.rope_scaling != "none":
            scaling = {"rope_type": self.rope_scaling, "factor": float(self.scaling_factor)}
            if self.rope_scaling == "yarn":
                scaling["original_max_position_embeddings"] = int(self.original_length)
        return dict(
            rope_theta=float(rope_theta if rope_theta is not None else self.rope_theta),
            rope_theta_per_head=self.head_bases(num_heads, num_kv_heads, head_dim, seq_len),
            rope_scaling_params=scaling,
            max_position_embeddings=seq_len,
            harpe_scheme=self.scheme_name(),
        )

    def build(self, vocab_size: int, max_position_embeddings: int):
        """The arm's model at ``max_position_embeddings``: fresh, or the weights of
        ``init_from`` (a base checkpoint) with this arm's RoPE."""
        from repro_core.modeling import load_llama_checkpoint

        from .modeling import HarpeConfig, HarpeForCausalLM

        if self.init_from:
            model = load_llama_checkpoint(resolve_base(self.init_from), HarpeForCausalLM)
            from .modeling import set_rope

            c = model.config
            return set_rope(
                model,
                **self.rope_fields(
                    c.num_attention_heads,
                    c.num_key_value_heads,
                    c.head_dim,
                    max_position_embeddings,
                ),
            )
        kw = self.decoder_kwargs(vocab_size, max_position_embeddings)
        heads, kv = (
            kw["num_attention_heads"],
            kw["num_key_value_heads"] or kw["num_attention_heads"],
        )
        head_dim = kw["hidden_size"] // heads
        kw.update(self.rope_fields(heads, kv, head_dim, max_position_embeddings))
        return HarpeForCausalLM(HarpeConfig(**kw))

    def stage_plan(self, seq_len: int) -> list[tuple[float, int, float]]:
        """(base, seq_len, share of the token budget) of every stage, the final one last."""
        plan = [(*parse_stage(s, seq_len), 0.0) for s in self.stages] + [
            (self.rope_theta, seq_len, 0.0)
        ]
        shares = self.stage_fractions or [1.0] * len(plan)
        total = sum(shares)
        return [(b, n, s / total) for (b, n, _), s in zip(plan, shares)]


__all__ = ["GROUPINGS", "SCALINGS", "SCHEMES", "HarpeModelConfig", "parse_stage"]
