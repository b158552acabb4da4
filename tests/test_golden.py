"""Full-size faithfulness check against values computed with the original SAMA code.

CI clones the project with the team's ``shared/`` folder beside it; its ``golden/check.py`` compares temporal
indices, every VQA/IQA sampling type and the end-to-end ``demo_test`` scores (full-size Video Swin-T on 128 frames
of a real video, Swin-V2-T on a real photo) with the original's numbers. Skipped where that folder is absent.
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(os.path.dirname(REPO), "shared", "golden", "check.py")


@pytest.mark.skipif(not os.path.isfile(CHECK), reason="../shared/golden is not beside this checkout")
def test_golden_check_against_the_original_code(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    r = subprocess.run([sys.executable, CHECK, "--e2e"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "golden checks: all passed" in out, out[-3000:]
    assert "vqa e2e" in out and "iqa e2e" in out, out[-3000:]
