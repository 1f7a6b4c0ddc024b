"""Check that checkpoints round-trip both ways between canvit-model and canvit-pytorch (not run in CI).

    /tmp/ref/bin/python packages/canvit-model/tests/parity/check_roundtrip.py   # env as in make_fixtures.py

ours.save_pretrained -> canvit_pytorch from_pretrained, and back, for CanViT-B and the +QKVO ablation;
prints the largest output difference over a rollout (expected: 0.0).
"""

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

import canvit_pytorch  # noqa: E402
import scenario  # noqa: E402

import canvit_model  # noqa: E402


def main() -> None:
    for name in ("canvitb16", "qkvo-dcan256"):
        ours = canvit_model.CanViTForPretraining(canvit_model.CanViTConfig(**scenario.VARIANTS[name])).eval()
        scenario.fill_(ours)
        a = scenario.run(ours, canvit_model.Viewpoint, canvit_model.sample_at_viewpoint, "abl", name)
        with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
            ours.save_pretrained(d1)
            theirs = canvit_pytorch.CanViTForPretraining.from_pretrained(d1).eval()
            b = scenario.run(theirs, canvit_pytorch.Viewpoint, canvit_pytorch.sample_at_viewpoint, "abl", name)
            theirs.save_pretrained(d2)
            back = canvit_model.CanViTForPretraining.from_pretrained(d2)
            c = scenario.run(back, canvit_model.Viewpoint, canvit_model.sample_at_viewpoint, "abl", name)
        print(f"{name}: ours->canvit-pytorch max diff {max(float((a[k] - b[k]).abs().max()) for k in a)}; "
              f"canvit-pytorch->ours {max(float((a[k] - c[k]).abs().max()) for k in a)}")


if __name__ == "__main__":
    main()
