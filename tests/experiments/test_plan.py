"""``mgrpo plan``: the memory plan of the Qwen3-30B-A3B preset on the meta device (issue 12,
item 4), its LoRA count against peft, and the command's exit codes; ``benchmarks/gpu_smoke.py``
(item 5) without a GPU."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from experiments import plan as plan_cmd
from experiments.api import from_config
from experiments.plan import GIB, memory_plan, resolve_lora_targets
from tests.experiments.conftest import run_inprocess

torch.set_num_threads(1)

L, H, E, R = 48, 2048, 128, 32
"""Qwen3-30B-A3B: layers, hidden, experts; the preset's LoRA rank"""


@pytest.fixture(scope="module")
def cfg():
    return from_config("qwen3_30b")


@pytest.fixture(scope="module")
def plan8(cfg):
    return memory_plan(cfg, gpus=8, gpu_mem_gb=80)


def test_preset_is_the_papers_setting(cfg):
    p = cfg.policy
    assert (p.kind, p.model, p.dtype, p.mode) == ("lm", "qwen3-30b-a3b", "bfloat16", "generate")
    assert (p.max_seq_len, p.max_new_tokens, p.lora_rank, p.share_base) == (8192, 1024, 32, True)
    assert (cfg.algo.group_size, cfg.algo.align_target) == (8, 8)
    assert (cfg.loss.eps_low, cfg.loss.eps_high) == (0.2, 0.28)
    assert cfg.reward.alpha == (0.1, 0.9) and cfg.reward.beta == (0.1, 0.4, 0.5)


def test_30b_parameter_counts(plan8):
    n = plan8.counts
    assert abs(n["total_params"] - 30.5e9) < 0.1e9
    assert abs(n["active_params"] - 3.35e9) < 0.05e9
    # LoRA: r * (in + out) per attention projection; E * r * (a + b) per fused expert parameter
    attn = R * ((H + 32 * 128) + 2 * (H + 4 * 128) + (32 * 128 + H))
    experts = E * R * ((2 * 768 + H) + (H + 768))
    assert n["lora_params"] == L * (attn + experts)
    assert n["trainable_params"] == 2 * n["lora_params"]  # main and sub adapters
    assert (n["models"], n["adapters"], n["reference_models"]) == (1, 2, 0)
    assert plan8.roles == ("main", "sub") and plan8.fits is True


def test_lora_count_matches_peft():
    peft = pytest.importorskip("peft")
    from policies.qwen import tiny_qwen3

    model = tiny_qwen3(moe=True, vocab_size=64)
    match = resolve_lora_targets(model, ("q_proj", "k_proj", "v_proj", "o_proj", "experts"), 4)
    assert match.target_parameters == ("experts.down_proj", "experts.gate_up_proj")
    cfg = peft.LoraConfig(
        r=4,
        target_modules=list(match.target_modules),
        target_parameters=list(match.target_parameters),
    )
    wrapped = peft.get_peft_model(model, cfg)
    assert match.params == sum(p.numel() for p in wrapped.parameters() if p.requires_grad)


def test_more_gpus_fewer_bytes_per_gpu(cfg, plan8):
    one, sixteen = memory_plan(cfg, gpus=1), memory_plan(cfg, gpus=16)
    assert one.per_gpu > plan8.per_gpu > sixteen.per_gpu
    for k in ("weights", "gradients", "optimizer", "activations"):
        assert one.parts[k] > plan8.parts[k] > sixteen.parts[k]
    assert one.parts["gathered"] == 0 < plan8.parts["gathered"]


def test_full_fine_tuning_and_separate_models(cfg):
    full = memory_plan(from_config("qwen3_30b", **{"policy.lora.rank": 0}), gpus=8)
    n = full.counts
    assert n["trainable_params"] == 2 * n["total_params"] and n["models"] == 2
    # bf16 weight 2 bytes + fp32 gradient, m, v, master 16 bytes per parameter, two models
    assert full.parts["weights"] + full.parts["gradients"] + full.parts["optimizer"] == (
        pytest.approx(2 * n["total_params"] * 18 / 8, rel=1e-6)
    )
    own = memory_plan(from_config("qwen3_30b", **{"policy.share_base": False}), gpus=8)
    shared = memory_plan(cfg, gpus=8)
    assert (own.counts["models"], shared.counts["models"]) == (2, 1)
    base = shared.counts["total_params"] * 2  # bf16 bytes of one base model
    assert own.parts["weights"] - shared.parts["weights"] == pytest.approx(base / 8, abs=1)


def test_cli_prints_the_table_and_fits(capsys):
    rc = run_inprocess(plan_cmd, ["plan", "qwen3_30b", "--gpus", "8", "--gpu-mem", "80"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "total parameters" in out and "30.532B" in out and "3.353B" in out
    assert "verdict: fits" in out


def test_small_gpu_does_not_fit_and_require_fit_exits_1(capsys):
    argv = ["plan", "qwen3_30b", "--gpus", "8", "--gpu-mem", "10"]
    assert run_inprocess(plan_cmd, argv) == 0
    assert "does not fit" in capsys.readouterr().out
    assert run_inprocess(plan_cmd, [*argv, "--require-fit"]) == 1
    assert "--require-fit" in capsys.readouterr().err


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "no_model"
    argv = ["plan", "qwen3_30b", "--set", f'policy.model="{missing}"']
    assert run_inprocess(plan_cmd, argv) == 2
    err = capsys.readouterr().err
    assert "no_model" in err and "not a built-in model" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    argv = ["plan", "qwen3_30b", "--set", f'policy.model="{tmp_path / "empty"}"']
    assert run_inprocess(plan_cmd, argv) == 2
    assert "config.json" in capsys.readouterr().err
    dense = ["--set", 'policy.model="tiny-qwen3"', "--set", "policy.max_seq_len=2048"]
    assert run_inprocess(plan_cmd, ["plan", "qwen3_30b", *dense]) == 2  # no experts to wrap
    assert "['experts'] match no module or parameter of Qwen3ForCausalLM" in (
        capsys.readouterr().err
    )
    assert run_inprocess(plan_cmd, ["plan", "quick"]) == 2  # an MLP preset
    assert "policy.kind = 'mlp'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_inprocess(plan_cmd, ["plan", "qwen3_30b", "--gpus", "0"])
    assert e.value.code == 2
    assert "--gpus: expected an integer > 0, got '0'" in capsys.readouterr().err


def test_local_folder_and_log_plan(tmp_path):
    from experiments.plan import log_plan
    from policies.qwen import tiny_qwen3

    tiny_qwen3(moe=True, vocab_size=64).config.save_pretrained(tmp_path)
    cfg = from_config("qwen3_30b", **{"policy.model": str(tmp_path), "policy.max_seq_len": 2048})
    logged = log_plan(cfg, gpus=2)
    json.dumps(logged)
    assert logged["plan/architecture"] == "Qwen3MoeForCausalLM"
    assert logged["plan/total_params"] < 1e6 and logged["plan/lora_params"] > 0
    assert logged["plan/per_gpu"] < GIB


SMOKE = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_smoke.py"


def test_gpu_smoke_imports_only_torch_hf_peft_accelerate_and_stdlib():
    allowed = {"torch", "transformers", "peft", "accelerate", "vllm", "__future__"}
    names = set()
    for node in ast.walk(ast.parse(SMOKE.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names - allowed - set(sys.stdlib_module_names) == set()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device runs the whole smoke test")
def test_gpu_smoke_without_cuda_says_why_and_exits_0(capsys):
    spec = importlib.util.spec_from_file_location("gpu_smoke", SMOKE)
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    assert smoke.main([]) == 0
    assert "skipped: no CUDA device" in capsys.readouterr().out
