"""The device / backend plan of a process (samacore.distributed.plan_device): a pure function of the requested
device, the launcher's environment and the visible CUDA devices, so every GPU and cluster layout is checked here
without a GPU."""
import itertools

import pytest

from samacore.distributed import plan_device
from samacore.options import OptionError
from samacore.utils import pick_device


def env(world=1, local_rank=0, local_world=None):
    e = {"WORLD_SIZE": str(world), "LOCAL_RANK": str(local_rank)}
    if local_world is not None:
        e["LOCAL_WORLD_SIZE"] = str(local_world)
    return e


@pytest.mark.parametrize("requested", [None, "", "cpu", "CPU"])
def test_single_process_without_cuda_is_cpu_without_process_group(requested):
    assert plan_device(requested, {}, 0) == ("cpu", None)


def test_cpu_is_honoured_on_a_gpu_host_and_uses_gloo_under_torchrun():
    # the fault: --device cpu under torchrun on a GPU host got NCCL (CUDA existed) and failed at the first collective
    assert plan_device("cpu", env(world=4, local_rank=2, local_world=4), 8) == ("cpu", "gloo")
    assert plan_device("cpu", {}, 8) == ("cpu", None)
    assert plan_device(None, env(world=2, local_rank=1, local_world=2), 0) == ("cpu", "gloo")


@pytest.mark.parametrize("requested", [None, "cuda"])
def test_automatic_and_cuda_take_the_local_ranks_gpu_with_nccl(requested):
    for local_rank, count in itertools.product(range(4), (4, 8)):
        assert plan_device(requested, env(world=8, local_rank=local_rank, local_world=4), count) == \
            (f"cuda:{local_rank}", "nccl")
    assert plan_device(requested, {}, 3) == ("cuda:0", None)


def test_one_visible_gpu_per_task_is_that_tasks_gpu():
    # Slurm binds one GPU to each task: LOCAL_RANK 3 sees one device, which is its own (no "invalid device ordinal")
    assert plan_device(None, env(world=4, local_rank=3), 1) == ("cuda:0", "nccl")
    assert plan_device("cuda", env(world=4, local_rank=3), 1) == ("cuda:0", "nccl")


def test_more_processes_than_gpus_is_one_line():
    with pytest.raises(OptionError, match=r"LOCAL_RANK 2 but only 2 CUDA devices are visible"):
        plan_device(None, env(world=4, local_rank=2, local_world=4), 2)


def test_torchrun_with_more_workers_than_visible_gpus_is_refused_on_every_rank():
    # the fault: one visible GPU counted as Slurm's per-task binding, so torchrun's 2 workers both took cuda:0 and
    # NCCL failed at the first collective ("Duplicate GPU detected") with a traceback
    torchrun = dict(TORCHELASTIC_RUN_ID="none")
    for local_rank in range(2):
        with pytest.raises(OptionError, match=r"^torchrun started 2 processes on this node but only 1 CUDA device\(s\) "
                                              r"are visible: use --nproc_per_node 1 at most, or --device cpu$"):
            plan_device(None, dict(env(world=2, local_rank=local_rank, local_world=2), **torchrun), 1)
    for local_rank in range(3):  # every rank says so, not only the one without a GPU
        with pytest.raises(OptionError, match=r"torchrun started 3 processes on this node but only 2"):
            plan_device("cuda", dict(env(world=3, local_rank=local_rank, local_world=3), **torchrun), 2)
    assert plan_device(None, dict(env(world=2, local_rank=0, local_world=1), **torchrun), 1) == ("cuda:0", "nccl")
    assert plan_device("cpu", dict(env(world=4, local_rank=3, local_world=4), **torchrun), 1) == ("cpu", "gloo")


@pytest.mark.parametrize("capability, arch_list, supported", [
    ((7, 0), ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], False),  # V100 with a CUDA 13 build
    ((7, 5), ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], True),   # T4
    ((8, 9), ["sm_75", "sm_80", "sm_86", "sm_90"], True),                        # L4: sm_86 cubins run on 8.9
    ((9, 0), ["sm_75", "sm_80", "sm_86"], False),                                # no sm_9x cubin, no PTX
    ((9, 0), ["sm_80", "compute_80"], True),                                     # PTX is compiled for newer GPUs
    ((9, 0), ["sm_90a"], True),
    ((9, 1), ["sm_90a"], False),                                                 # "a" cubins: exactly 9.0
    ((12, 1), ["sm_100", "sm_120"], True),
    ((6, 1), ["sm_75"], False),
    ((8, 0), [], True),                                                          # unknown: not refused
])
def test_which_gpus_a_pytorch_build_runs_on(capability, arch_list, supported):
    from samacore.distributed import gpu_supported

    assert gpu_supported(capability, arch_list) is supported


def test_a_gpu_the_build_has_no_kernels_for_is_one_line(monkeypatch):
    import torch

    from samacore import distributed as D

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tesla V100-SXM2-16GB")
    with pytest.raises(OptionError, match=r"^--device cuda:1: Tesla V100-SXM2-16GB \(compute capability 7\.0\) is not "
                                          r"supported by this PyTorch .* \(kernels for sm_75, sm_80\): install a "
                                          r"PyTorch build for it, or use --device cpu$"):
        D.refuse_unsupported_gpu("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(OptionError, match="is not supported by this PyTorch"):  # before CUDA starts on it
        pick_device("cuda:1")


def test_a_process_group_of_another_backend_is_refused(monkeypatch):
    """``--resume RUN`` under torchrun starts the group from the command line's ``--device`` before the run's
    options are read; a run whose options say another device got DDP over the wrong backend (a traceback)."""
    import torch.distributed as dist

    from samacore import distributed as D

    monkeypatch.setattr(D, "is_dist", lambda: True)  # a process group of 2, started with NCCL
    monkeypatch.setattr(D, "rank", lambda: 1)
    monkeypatch.setattr(D, "world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    with pytest.raises(OptionError, match=r"^device cpu needs the gloo backend, but this command's processes were "
                                          r"started with nccl for another device: give --device cpu on the command"):
        D.init_distributed("cpu", "gloo")
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "gloo")
    assert D.init_distributed("cpu", "gloo")[:2] == (1, 2)  # the same backend: the group is kept


def test_cuda_index_is_honoured_for_one_process_per_node():
    assert plan_device("cuda:1", {}, 2) == ("cuda:1", None)
    assert plan_device("cuda:1", env(world=2, local_rank=0, local_world=1), 2) == ("cuda:1", "nccl")  # one per node


def test_cuda_index_under_several_local_processes_is_refused():
    # the fault: --device cuda:0 put every rank on GPU 0
    with pytest.raises(OptionError, match=r"would put all 2 processes of this node on GPU 0; use --device cuda"):
        plan_device("cuda:0", env(world=2, local_rank=1, local_world=2), 2)


@pytest.mark.parametrize("requested, count, message", [
    ("cuda:7", 2, r"--device cuda:7: this process sees 2 CUDA device\(s\); allowed: cpu, cuda, cuda:0 \.\. cuda:1"),
    ("cuda", 0, r"--device cuda: CUDA is not available on this machine; use --device cpu"),
    ("cuda:0", 0, r"CUDA is not available"),
    ("gpu", 2, r"--device 'gpu' is not a device; allowed: cpu, cuda or cuda:N"),
    ("cuda:x", 2, r"is not a device"),
    ("mps", 0, r"is not a device"),
])
def test_impossible_devices_are_option_errors(requested, count, message):
    with pytest.raises(OptionError, match=message):
        plan_device(requested, {}, count)


def test_pick_device_uses_the_plan(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert pick_device(None) == "cpu" and pick_device("cpu") == "cpu"
    with pytest.raises(OptionError, match="CUDA is not available"):
        pick_device("cuda:0")


def test_a_bad_device_ends_a_command_in_one_line(tmp_path, capsys, monkeypatch):
    import torch

    from samavqa import cli

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(SystemExit) as e:
        from samacore.runs import run_command

        run_command(lambda: cli.train_main(["-o", "VQA/options/examplar-SAMA-train.yml", "--device", "cuda:7"]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --device cuda:7: CUDA is not available on this machine; use --device cpu"]


def test_loaders_pin_memory_only_when_the_process_works_on_a_gpu(monkeypatch):
    """Pinned memory belongs to the current GPU's context: a --device cpu run on a GPU host (CUDA never started)
    must not pin, which would start a context on GPU 0."""
    import torch
    from torch.utils.data import TensorDataset

    from samacore.loaders import build_loader

    data = TensorDataset(torch.zeros(4, 1))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert not build_loader(data, {}, train=False).pin_memory
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert build_loader(data, {}, train=False).pin_memory
    assert not build_loader(data, {"pin_memory": False}, train=False).pin_memory
