import json
import os
import shutil

import pytest

from stillroom.core import export as ex
from stillroom.core.errors import StillroomError
from stillroom.core.events import ExportFinished
from stillroom.core.project import Project

from tiny import tiny_adapter_dir, tiny_llama_dir, tiny_tokenizer

RUN = "20250101-000000"


@pytest.fixture
def project(tmp_path):
    project = Project.create(tmp_path / "proj", demo=True)
    config = project.config
    config.student.model = str(tiny_llama_dir())
    config.evaluation.max_tokens = 6
    project.save_config(config)
    run_dir = project.runs_dir / RUN
    tiny_adapter_dir(tiny_llama_dir(), run_dir / "adapter")
    (run_dir / "config.json").write_text(json.dumps({"student": {"model": config.student.model}}))
    return project


def _no_partials(folder):
    return [p.name for p in folder.rglob("*") if ".partial" in p.name or ".old" in p.name]


def test_adapter_export_copies_the_peft_adapter(project):
    result = ex.export(project, fmt="adapter")
    adapter = project.exports_dir / RUN / "adapter"
    assert result.paths == [adapter]
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert not _no_partials(project.exports_dir)


def test_merged_export_reloads_in_transformers_with_the_adapter_applied(project):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    ex.export(project, fmt="merged")
    merged = project.exports_dir / RUN / "merged"
    assert (merged / "model.safetensors").exists()
    assert not list(merged.glob("*.bin"))
    tok = AutoTokenizer.from_pretrained(merged)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    reloaded = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir(), dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, project.runs_dir / RUN / "adapter").eval()
    plain = AutoModelForCausalLM.from_pretrained(tiny_llama_dir(), dtype=torch.float32).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": "my parcel is late"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        a, b, c = reloaded(ids).logits, peft(ids).logits, plain(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-3)          # the adapter really changed the model
    assert reloaded.generation_config.eos_token_id in (tok.convert_tokens_to_ids("<|im_end|>"),
                                                      [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id])


def test_gguf_export_loads_in_llama_cpp_matches_merged_and_reports_the_check(project):
    import numpy as np
    import torch
    from stillroom.core.backends.llamacpp_load import open_gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer
    events = []
    result = ex.export(project, fmt="gguf", quant="f16", check_limit=4, on_event=events.append)
    out = project.exports_dir / RUN
    gguf = out / f"{RUN}-f16.gguf"
    assert result.paths == [gguf] and gguf.read_bytes()[:4] == b"GGUF"
    assert not _no_partials(out)
    check = result.check
    assert check["examples"] == 4 and check["metric"] == "accuracy"
    assert 0 <= check["merged"] <= 1 and 0 <= check["gguf"] <= 1 and len(check["answers"]) == 4
    assert json.loads((out / "gguf-check.json").read_text())["gguf_file"] == gguf.name
    assert isinstance(events[-1], ExportFinished) and events[-1].check == check

    # Same next-token logits from llama.cpp (f16) as from transformers on the merged folder.
    tok = AutoTokenizer.from_pretrained(out / "merged")
    text = tok.apply_chat_template([{"role": "user", "content": "the app crashes on login"}],
                                   add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32).eval()
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    llm = open_gguf(gguf, n_ctx=256, logits_all=True, verbose=False, n_threads=2)
    try:
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
        llm.eval(ids)
        got = np.array(llm.scores[:len(ids)])
    finally:
        llm.close()
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.9
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99


def test_ollama_modelfile_parses_back_and_matches_the_chat_template(project):
    result = ex.export(project, fmt="ollama", quant="q8_0", check=False)
    out = project.exports_dir / RUN
    gguf, modelfile = result.paths
    assert modelfile == out / "Modelfile" and gguf.exists()
    parsed = ex.parse_modelfile(modelfile.read_text())
    assert (out / parsed["from"]).resolve() == gguf.resolve()
    assert parsed["system"] == project.config.task.system_prompt
    stops = [v for k, v in parsed["parameters"] if k == "stop"]
    assert "<|im_end|>" in stops
    template = parsed["template"]
    assert "{{ range .Messages }}" in template and "{{ .Content }}" in template
    # The wrappers the Go template is made of reproduce the real chat template.
    tok = tiny_tokenizer()
    wrappers = ex.chat_wrappers(tok)
    conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert ex.render_with_wrappers(wrappers, conversation) == tok.apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=True)
    for part in wrappers.values():
        assert part in template


def test_modelfile_parser_reads_multiline_values():
    text = 'FROM ./m.gguf\nTEMPLATE """a\nb"""\nSYSTEM short\nPARAMETER stop "<|x|>"\nPARAMETER num_ctx 4096\n'
    parsed = ex.parse_modelfile(text)
    assert parsed == {"from": "./m.gguf", "template": "a\nb", "system": "short",
                      "parameters": [("stop", "<|x|>"), ("num_ctx", 4096)]}


def test_unsupported_architecture_is_a_clear_error_and_leaves_no_file(tmp_path):
    folder = tmp_path / "weird"
    shutil.copytree(tiny_llama_dir(), folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["WeirdNetForCausalLM"]
    config["model_type"] = "weirdnet"
    (folder / "config.json").write_text(json.dumps(config))
    target = tmp_path / "out.gguf"
    with pytest.raises(ex.ExportError, match="WeirdNetForCausalLM"):
        ex.convert_to_gguf(folder, target, "q8_0")
    assert not target.exists()
    assert os.listdir(tmp_path) == ["weird"]


def test_bad_format_and_full_finetune_adapter_errors(project, tmp_path):
    with pytest.raises(StillroomError, match="unknown export format"):
        ex.export(project, fmt="onnx")
    with pytest.raises(StillroomError, match="unknown GGUF type"):
        ex.export(project, fmt="gguf", quant="q4_0")
    full = project.runs_dir / "20250102-000000"
    shutil.copytree(tiny_llama_dir(), full / "model")
    with pytest.raises(StillroomError, match="full fine-tune"):
        ex.export(project, run=full.name, fmt="adapter")


def test_export_cli_writes_adapter_and_modelfile(project):
    from clitools import run_cli
    done = run_cli("export", project.root, "--format", "adapter")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote" in done.stdout and "adapter" in done.stdout
    done = run_cli("export", project.root, "--run", RUN, "--format", "ollama", "--no-check")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Modelfile" in done.stdout and "ollama create" in done.stdout
    bad = run_cli("export", project.root, "--run", "nope", "--format", "gguf")
    assert bad.returncode == 2 and "no such run" in bad.stderr
