"""Viewing policies: where each glimpse of an evaluation rollout looks (paper §6, Appendix F.1).

    policy = make_policy("c2f", batch_size=B, num_glimpses=T, generator=torch.Generator().manual_seed(0))
    for t in range(T):
        vp = policy.next(t)                      # canvit_model.Viewpoint, one viewpoint per batch element
        # EG-C2F instead: vp = policy.next(t, seg_logits)  with the probe's current logits [B, C, G, G]

Names (canonical; paper names in brackets):
- `r-iid`  [R-IID]: i.i.d. crops from the pretraining law (`canvit_model.random_viewpoints`, s_min 0.05,
  p(s) ∝ 1 - s) at every step, t = 0 included.
- `f-iid`  [F-IID]: the full scene at t = 0, then i.i.d. crops from the same law.
- `c2f`    [C2F]: quadtree levels l = 0, 1, 2, ... (scale 2^-l, `canvit_model.quadtree_tiles`), each level's
  tiles in an independent per-sample random order; the concatenation truncated to T. For T > 21 it simply
  continues with the next levels (85 = 1 + 4 + 16 + 64, ...).
- `f2c`    [F2C]: C2F's levels reversed, finest first: the fewest levels whose tile counts (1, 4, 16, ...)
  sum to at least T, each in an independent per-sample random order, concatenated finest to coarsest and
  truncated to T (the authors' definition: T = 6 gives six scale-0.25 tiles). At T = 21 (= 1 + 4 + 16) it
  visits exactly C2F's tiles in reverse level order, which is the paper's C2F vs. F2C comparison.
- `eg-c2f` [Entropy-guided C2F]: C2F's levels in order; within a level, the unvisited tile whose canvas
  cells (cells whose centres fall inside the tile) have the highest mean predictive entropy (nats) under
  the segmentation probe's current logits. Deterministic (ties: lowest row-major tile index); any number
  of levels; any canvas grid (a tile that contains no cell centre, i.e. G < 2^l, uses the cell under its
  centre). Needs `seg_logits` at every step except t = 0 (level 0 has one tile).
- `rfs`    [Repeated Full-Scene]: the full scene (0, 0, 1) at every step.

Randomness: all draws use `generator` (on the CPU, then moved to `device`), so the same seed gives the
same viewpoints on every device; the authors' unseeded permutations cost up to 0.5 pp of run-to-run
noise at t = 20. `generator=None` draws from torch's global RNG (seed it with `torch.manual_seed`).
Stochastic schedules (c2f, f2c) are drawn once, at construction; i.i.d. policies draw at each `next`
(call `next` for t = 0, 1, ... in order). Every returned viewpoint is valid (inside the scene).
"""

from __future__ import annotations

import torch

from canvit_model import Viewpoint, iid_viewpoint, quadtree_viewpoint

POLICY_NAMES = ("r-iid", "f-iid", "c2f", "f2c", "eg-c2f", "rfs")
# Policies whose viewpoints do not depend on a random draw (one evaluation run suffices).
DETERMINISTIC = frozenset({"rfs", "eg-c2f"})
# Policies whose `next` needs the segmentation probe's logits.
NEEDS_LOGITS = frozenset({"eg-c2f"})


def level_sizes(num_glimpses: int) -> list[int]:
    """How many tiles of each quadtree level a C2F sequence of `num_glimpses` visits: [1, 4, 16, ...]."""
    sizes, left, level = [], num_glimpses, 0
    while left > 0:
        n = min(4**level, left)
        sizes.append(n)
        left -= n
        level += 1
    return sizes


class Policy:
    """A viewing policy for a batch of B scenes and a horizon of T glimpses (see module docstring)."""

    name: str = ""
    needs_logits: bool = False

    def __init__(self, *, batch_size: int, num_glimpses: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> None:
        self.batch_size = batch_size
        self.num_glimpses = num_glimpses
        self.generator = generator
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def next(self, t: int, seg_logits: torch.Tensor | None = None) -> Viewpoint:
        """The viewpoints [B] for step t (0 <= t < T); `seg_logits` [B, C, G, G] only used by EG-C2F."""
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < self.num_glimpses:
            raise ValueError(f"t must be an int in [0, {self.num_glimpses}) (the policy's horizon), got {t!r}")
        return self._next(t, seg_logits)

    def _next(self, t: int, seg_logits: torch.Tensor | None) -> Viewpoint:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size}, num_glimpses={self.num_glimpses})"


class RandomIID(Policy):
    """R-IID, and F-IID below: the pretraining sequences, drawn by `canvit_model.iid_viewpoint`."""

    name = "r-iid"

    def _next(self, t: int, seg_logits: torch.Tensor | None) -> Viewpoint:
        return iid_viewpoint(self.name, t, self.batch_size, generator=self.generator, device=self.device)


class FullThenIID(RandomIID):
    name = "f-iid"


class RepeatedFullScene(Policy):
    name = "rfs"

    def _next(self, t: int, seg_logits: torch.Tensor | None) -> Viewpoint:
        return Viewpoint.full_scene(batch_size=self.batch_size, device=self.device)


class _Schedule(Policy):
    """A policy whose whole sequence is drawn up front: per step, a quadtree level and tile per sample."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.levels, self.tiles = self._schedule()  # levels: [T] ints; tiles: [T, B] long

    def _schedule(self) -> tuple[list[int], torch.Tensor]:
        levels: list[int] = []
        tiles: list[torch.Tensor] = []
        for level, n in enumerate(level_sizes(self.num_glimpses)):
            # An independent random order of this level's 4^l tiles per sample; keep the first n.
            keys = torch.rand(self.batch_size, 4**level, generator=self.generator)
            order = keys.argsort(dim=1)[:, :n]  # [B, n]
            levels += [level] * n
            tiles.append(order.T)
        return levels, torch.cat(tiles, dim=0)

    def _next(self, t: int, seg_logits: torch.Tensor | None) -> Viewpoint:
        return quadtree_viewpoint(self.levels[t], self.tiles[t], device=self.device)


class CoarseToFine(_Schedule):
    name = "c2f"


class FineToCoarse(_Schedule):
    name = "f2c"

    def _schedule(self) -> tuple[list[int], torch.Tensor]:
        top = num_levels(self.num_glimpses) - 1
        levels: list[int] = []
        tiles: list[torch.Tensor] = []
        for level in range(top, -1, -1):
            keys = torch.rand(self.batch_size, 4**level, generator=self.generator)
            levels += [level] * 4**level
            tiles.append(keys.argsort(dim=1).T)  # [4^l, B]
        return levels[: self.num_glimpses], torch.cat(tiles, dim=0)[: self.num_glimpses]


class EntropyGuidedC2F(Policy):
    name = "eg-c2f"
    needs_logits = True

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.levels = [lvl for lvl, n in enumerate(level_sizes(self.num_glimpses)) for _ in range(n)]
        self._visited: torch.Tensor | None = None  # [B, 4^l] tiles of the current level already seen
        self._level = -1
        self._last_t = -1

    def _next(self, t: int, seg_logits: torch.Tensor | None) -> Viewpoint:
        if t != self._last_t + 1:
            raise ValueError(f"eg-c2f must be stepped in order t = 0, 1, ...; expected t={self._last_t + 1}, got {t}")
        level = self.levels[t]
        n_tiles = 4**level
        if level != self._level:
            self._level = level
            self._visited = torch.zeros(self.batch_size, n_tiles, dtype=torch.bool)
        assert self._visited is not None
        if n_tiles == 1:
            choice = torch.zeros(self.batch_size, dtype=torch.long)
        else:
            if seg_logits is None:
                raise ValueError(f"eg-c2f needs seg_logits [B, C, G, G] (the probe's current logits) at t={t}")
            score = tile_entropy(seg_logits, level)  # [B, 4^l]
            score = score.masked_fill(self._visited, float("-inf"))
            choice = score.argmax(dim=1)  # first maximum: lowest tile index on ties
        self._visited[torch.arange(self.batch_size), choice] = True
        self._last_t = t
        return quadtree_viewpoint(level, choice, device=self.device)


def predictive_entropy(seg_logits: torch.Tensor) -> torch.Tensor:
    """Per-cell Shannon entropy (nats) of softmax over classes: [B, C, G, G] -> [B, G, G], float32."""
    logp = torch.log_softmax(seg_logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def tile_membership(grid: int, level: int) -> torch.Tensor:
    """[4^l, G*G] weights: row k averages the canvas cells whose centres fall in tile k of `level`.

    A cell centre on a tile border belongs to the tile below/right of it (half-open intervals); a tile
    containing no cell centre (G < 2^l) takes the cell under its own centre.
    """
    n = 2**level
    cell = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid  # cell centres in [0, 1]
    tile_of_cell = torch.clamp((cell * n).floor().long(), max=n - 1)  # [G]
    ty = tile_of_cell[:, None].expand(grid, grid)
    tx = tile_of_cell[None, :].expand(grid, grid)
    tile_id = (ty * n + tx).reshape(-1)  # [G*G]
    m = torch.zeros(n * n, grid * grid, dtype=torch.float32)
    m[tile_id, torch.arange(grid * grid)] = 1.0
    empty = m.sum(dim=1) == 0
    if bool(empty.any()):
        tc = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        cell_of_tile = torch.clamp((tc * grid).floor().long(), max=grid - 1)  # [n]
        for k in empty.nonzero().flatten().tolist():
            m[k, cell_of_tile[k // n] * grid + cell_of_tile[k % n]] = 1.0
    return m / m.sum(dim=1, keepdim=True)


def tile_entropy(seg_logits: torch.Tensor, level: int) -> torch.Tensor:
    """Mean predictive entropy of each tile of `level`: [B, C, G, G] -> [B, 4^l] (CPU, float32)."""
    if not isinstance(seg_logits, torch.Tensor) or seg_logits.ndim != 4 or seg_logits.shape[-1] != seg_logits.shape[-2]:
        shape = list(seg_logits.shape) if isinstance(seg_logits, torch.Tensor) else type(seg_logits).__name__
        raise ValueError(f"seg_logits must be [B, C, G, G] probe logits, got {shape}")
    ent = predictive_entropy(seg_logits).flatten(1).cpu()  # [B, G*G]
    return ent @ tile_membership(seg_logits.shape[-1], level).T


_POLICIES: dict[str, type[Policy]] = {
    p.name: p for p in (RandomIID, FullThenIID, CoarseToFine, FineToCoarse, EntropyGuidedC2F, RepeatedFullScene)
}


def make_policy(
    name: str,
    *,
    batch_size: int,
    num_glimpses: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Policy:
    """The policy `name` (one of POLICY_NAMES) for B scenes and T glimpses; see the module docstring."""
    if name not in _POLICIES:
        raise ValueError(f"policy {name!r} is unknown; valid names: {', '.join(POLICY_NAMES)}")
    for arg, v in (("batch_size", batch_size), ("num_glimpses", num_glimpses)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{arg} must be an int >= 1, got {v!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator (draws are made on the CPU), got {generator.device}")
    return _POLICIES[name](batch_size=batch_size, num_glimpses=num_glimpses, generator=generator, device=device)


def num_levels(num_glimpses: int) -> int:
    """Quadtree levels a C2F sequence of T glimpses touches (T = 21 -> 3)."""
    return len(level_sizes(num_glimpses))


__all__ = [
    "DETERMINISTIC",
    "NEEDS_LOGITS",
    "POLICY_NAMES",
    "Policy",
    "level_sizes",
    "make_policy",
    "num_levels",
    "predictive_entropy",
    "tile_entropy",
    "tile_membership",
]
