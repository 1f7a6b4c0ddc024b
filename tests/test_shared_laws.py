"""Training and evaluation draw viewpoints with one law: the pretraining F-IID / R-IID sampler
(`canvit_train.pretrain.step.plan_step`), the `f-iid` / `r-iid` evaluation policies, and training-time
validation's `IIDViewpoints` give the same viewpoints for the same generator state."""

import pytest
import torch
from canvit_eval.policies import make_policy
from canvit_model import MIN_SCALE, IIDViewpoints
from canvit_train.pretrain.config import PRESETS
from canvit_train.pretrain.step import plan_step, sample_num_chunks, step_generator


@pytest.mark.parametrize("law", ["f-iid", "r-iid"])
@pytest.mark.parametrize("step", [0, 5])
def test_training_sampler_and_eval_policy_draw_the_same_viewpoints(law, step):
    cfg = PRESETS["smoke"].replace(rollouts=(law,), seed=11)
    assert cfg.min_scale == MIN_SCALE
    plan = plan_step(cfg, step, global_batch=3)
    # the policy gets the step's generator in the state plan_step leaves it in before the viewpoints
    g = step_generator(cfg.seed, step)
    assert sample_num_chunks(cfg.stop_probability, g) == plan.num_chunks
    g_val = torch.Generator()
    g_val.set_state(g.get_state())  # the same state, for validation's sequence
    policy = make_policy(law, batch_size=3, num_glimpses=plan.num_glimpses, generator=g)
    validation = IIDViewpoints(law, batch_size=3, num_glimpses=plan.num_glimpses, generator=g_val)
    for t, vp in enumerate(plan.viewpoints[0]):
        for other in (policy.next(t), validation.next(t)):
            assert torch.equal(other.centers, vp.centers) and torch.equal(other.scales, vp.scales), (law, t)
    assert plan.num_glimpses >= 2 and not torch.equal(plan.viewpoints[0][0].scales, plan.viewpoints[0][1].scales)
    assert bool((plan.viewpoints[0][0].scales == 1).all()) == (law == "f-iid")


def test_the_laws_differ_only_at_t0():
    """F-IID's full scene draws nothing: from t = 1 on it sees R-IID's viewpoints shifted by one draw."""
    f = make_policy("f-iid", batch_size=2, num_glimpses=4, generator=torch.Generator().manual_seed(0))
    r = make_policy("r-iid", batch_size=2, num_glimpses=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(f.next(0).scales, torch.ones(2))
    r0 = r.next(0)
    f1 = f.next(1)
    assert torch.equal(f1.centers, r0.centers) and torch.equal(f1.scales, r0.scales)
