"""canvit-eval's name for the one rollout loop, `canvit_model.rollout` (shared with training-time
validation); see its docstring. Policies: `canvit_eval.policies.make_policy`."""

from canvit_model.rollout import RolloutStep, autocast, glimpse_step, no_autocast, rollout

__all__ = ["RolloutStep", "autocast", "glimpse_step", "no_autocast", "rollout"]
