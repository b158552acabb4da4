"""deterministic: true means it on GPUs too (samacore.precision.set_deterministic): strict deterministic algorithms,
the math attention kernel, no TF32, and cuBLAS's workspace setting made before CUDA starts (or a one-line
refusal when CUDA already started under another value). The switches are checked here without a GPU; the GPU
check (benchmarks/gpu_check.py) compares two deterministic runs bit for bit on a CUDA machine."""
import os

import pytest
import torch

from samacore import precision
from samacore.options import OptionError


@pytest.fixture
def restore_torch_flags():
    kept = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision(), torch.backends.cuda.flash_sdp_enabled(),
            torch.backends.cuda.mem_efficient_sdp_enabled(), torch.backends.cuda.cudnn_sdp_enabled(),
            torch.backends.cuda.math_sdp_enabled())
    yield
    torch.use_deterministic_algorithms(kept[0], warn_only=kept[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32 = kept[2:5]
    torch.set_float32_matmul_precision(kept[5])
    torch.backends.cuda.enable_flash_sdp(kept[6])
    torch.backends.cuda.enable_mem_efficient_sdp(kept[7])
    torch.backends.cuda.enable_cudnn_sdp(kept[8])
    torch.backends.cuda.enable_math_sdp(kept[9])


def test_strict_and_cublas_set_before_cuda(monkeypatch, restore_torch_flags):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    precision.set_deterministic(True)
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_cuda_switches_pick_math_attention_and_no_tf32(monkeypatch, restore_torch_flags):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the other deterministic value is kept
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    precision.set_deterministic(True)
    assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
    assert torch.backends.cuda.math_sdp_enabled()
    assert not (torch.backends.cuda.flash_sdp_enabled() or torch.backends.cuda.mem_efficient_sdp_enabled()
                or torch.backends.cuda.cudnn_sdp_enabled())
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_cpu_only_machine_keeps_its_kernels(monkeypatch, restore_torch_flags):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    flash, precision_before = torch.backends.cuda.flash_sdp_enabled(), torch.get_float32_matmul_precision()
    precision.set_deterministic(True)
    assert torch.backends.cuda.flash_sdp_enabled() == flash
    assert torch.get_float32_matmul_precision() == precision_before


def test_cuda_started_under_another_workspace_is_refused(monkeypatch, restore_torch_flags):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(OptionError, match=r"needs CUBLAS_WORKSPACE_CONFIG=:4096:8 before CUDA starts, but this "
                                          r"process started CUDA with it set to ':0:0'"):
        precision.set_deterministic(True)


def test_a_wrong_workspace_is_replaced_with_a_warning_before_cuda(monkeypatch, restore_torch_flags):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    with pytest.warns(UserWarning, match="':0:0' replaced by ':4096:8'"):
        precision.set_deterministic(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_disabled_changes_nothing(monkeypatch, restore_torch_flags):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(False)
    precision.set_deterministic(False)
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ and not torch.are_deterministic_algorithms_enabled()


def test_resuming_a_run_on_cuda_sets_cublas_before_cuda_starts(monkeypatch, restore_torch_flags, tmp_path):
    """``--resume RUN`` without ``-o`` starts CUDA (the device of the process group) before the run's own options,
    read through that group, can say ``deterministic: true``; the workspace setting must be in place by then, or
    every resumed deterministic run on a GPU was refused. CUDA's start is simulated: the planned device is cuda:0
    and starting the process group marks CUDA as started."""
    from argparse import Namespace

    from samacore import distributed as D
    from samacore import runs

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "unset")  # recorded, so what the test sets is undone
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    seen = {}

    def start_cuda(device, backend):
        seen.update(device=device, workspace=os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)

    monkeypatch.setattr(D, "plan_this_process", lambda requested: ("cuda:0", None))
    monkeypatch.setattr(D, "init_distributed", start_cuda)
    monkeypatch.setattr(runs, "run_options_text", lambda path, *what: "name: resumed\ndeterministic: true\n")
    path = runs.options_file(Namespace(opt=None, resume=str(tmp_path), default_opt="unused.yml"))
    assert seen == {"device": "cuda:0", "workspace": ":4096:8"}
    precision.set_deterministic(True)  # CUDA started with the deterministic workspace: no refusal
    assert torch.are_deterministic_algorithms_enabled()
    with open(path, encoding="utf-8") as f:
        assert "deterministic: true" in f.read()


def test_resuming_keeps_a_workspace_the_user_set(monkeypatch, tmp_path):
    from argparse import Namespace

    from samacore import distributed as D
    from samacore import runs

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    monkeypatch.setattr(D, "plan_this_process", lambda requested: ("cuda:0", None))
    monkeypatch.setattr(D, "init_distributed", lambda device, backend: None)
    monkeypatch.setattr(runs, "run_options_text", lambda path, *what: "name: resumed\n")
    runs.options_file(Namespace(opt=None, resume=str(tmp_path), default_opt="unused.yml"))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_bf16_on_a_gpu_without_native_bfloat16_warns_once(monkeypatch):
    """Below compute capability 8.0 (T4, V100) PyTorch emulates bfloat16: ``--bf16`` runs slower than fp32 there,
    which a user should hear once, not find out from the timings. CUDA is simulated (capability and name)."""
    import warnings

    monkeypatch.setattr(precision, "_BF16_CHECKED", set())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tesla T4")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            precision.autocast("cuda:0", "bf16")
        precision.autocast("cuda:0", None)
    said = [str(w.message) for w in seen if "emulated" in str(w.message)]
    assert said == ["bf16 on GPU 0 (Tesla T4, compute capability 7.5 < 8.0) is emulated: slower than fp32 there; "
                    "leave out --bf16 / amp: bf16 on this GPU"]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (8, 0))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        precision.autocast("cuda:1", "bf16")  # an A100: native
    assert not [w for w in seen if "emulated" in str(w.message)]
