import json
import os
import shutil

import pytest

from stillroom.core import export as ex
from stillroom.core.errors import StillroomError
from stillroom.core.events import ExportFinished

from tiny import demo_with_adapter, tiny_llama_dir, tiny_tokenizer

RUN = "20250101-000000"


@pytest.fixture
def project(tmp_path):
    return demo_with_adapter(tmp_path / "proj", RUN, max_tokens=6)


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


# Types each quant is written in on the tiny model, whose 64-wide rows K-quants cannot pack: llama.cpp's
# fallback types (Q5_0 for Q4_K, Q5_1 for Q5_K, Q8_0 for the Q6_K that the _M mixes use for some tensors).
TINY_TYPES = {"q4_k_m": {"Q5_0", "Q8_0"}, "q5_k_m": {"Q5_1", "Q8_0"}, "q6_k": {"Q8_0"}, "q8_0": {"Q8_0"},
              "f16": {"F16"}}


def _weight_types(path) -> set:
    import gguf
    return {t.tensor_type.name for t in gguf.GGUFReader(path).tensors if sum(d > 1 for d in t.shape) >= 2}


def test_every_quant_in_one_export_loads_in_llama_cpp_and_fills_the_quant_table(project):
    from stillroom.core.backends.llamacpp_load import open_gguf
    result = ex.export(project, fmt="gguf", quant=",".join(ex.QUANTS), check_limit=3)
    out = project.exports_dir / RUN
    files = [out / f"{RUN}-{q}.gguf" for q in ex.QUANTS]
    assert result.paths == files
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    for quant, path in zip(ex.QUANTS, files):
        assert _weight_types(path) == TINY_TYPES[quant], quant
        llm = open_gguf(path, n_ctx=256, verbose=False, n_threads=2)
        try:
            ids = llm.tokenize(b"my parcel is late", add_bos=False)
            llm.eval(ids)
            assert llm.n_tokens == len(ids) > 0
        finally:
            llm.close()

    table = json.loads((out / "quants.json").read_text())
    assert result.quants == {k: v for k, v in table.items() if k not in ("run", "answers")}
    assert table["run"] == RUN and table["metric"] == "accuracy" and table["examples"] == 3
    rows = table["rows"]
    assert sorted(r["quant"] for r in rows) == sorted(ex.QUANTS)
    assert [r["size_bytes"] for r in rows] == sorted(r["size_bytes"] for r in rows)       # smallest first
    for row in rows:
        path = out / row["file"]
        assert row["file"] == f"{RUN}-{row['quant']}.gguf" and row["size_bytes"] == path.stat().st_size
        assert row["tokens_per_s"] >= 0 and 0 <= row["score"] <= 1 and row["agreement"] in (0, 1 / 3, 2 / 3, 1)
        k_quant = row["quant"] in ("q4_k_m", "q5_k_m", "q6_k")
        assert row["fallback_tensors"] == (row["weight_tensors"] if k_quant else 0) and row["weight_tensors"] > 0
    assert sum(r["tokens_per_s"] for r in rows) > 0
    assert table["merged"]["size_bytes"] == (out / "merged" / "model.safetensors").stat().st_size
    assert [set(a) for a in table["answers"]] == [{"input", "reference", "merged", *ex.QUANTS}] * 3

    columns = ["quant", "size", "llama.cpp tok/s", "accuracy", "vs merged", "same answers"]
    assert ex.table_columns(table) == columns
    cells = ex.table_cells(table)
    assert [c[0] for c in cells] == ["merged"] + [r["quant"] for r in rows]
    assert all(len(c) == len(columns) for c in cells)
    first = rows[0]
    assert cells[1][1:] == [f"{first['size_bytes'] / 1e6:.1f} MB", f"{first['tokens_per_s']:.1f}",
                            f"{first['score']:.3f}", f"{first['score'] - table['merged']['score']:+.3f}",
                            f"{first['agreement'] * 100:.0f}%"]
    markdown = (out / "quants.md").read_text()
    assert "| " + " | ".join(columns) + " |" in markdown
    for c in cells:
        assert "| " + " | ".join(c) + " |" in markdown
    assert len(ex.table_notes(table)) == 3 and all(n in markdown for n in ex.table_notes(table))

    # gguf-check.json is the first type's check, the one an Ollama Modelfile would use.
    check = json.loads((out / "gguf-check.json").read_text())
    assert check["gguf_file"] == files[0].name and check["quant"] == "q4_k_m" == result.check["quant"]
    by_quant = {r["quant"]: r for r in rows}
    assert check["gguf"] == by_quant["q4_k_m"]["score"] and check["agreement"] == by_quant["q4_k_m"]["agreement"]
    assert [a["gguf"] for a in check["answers"]] == [a["q4_k_m"] for a in table["answers"]]


def test_quants_without_f16_keep_no_f16_and_ollama_reuses_the_first_type(project):
    result = ex.export(project, fmt="gguf", quant=["q8_0", "q4_k_m"], check=False)
    out = project.exports_dir / RUN
    q8, q4 = out / f"{RUN}-q8_0.gguf", out / f"{RUN}-q4_k_m.gguf"
    assert result.paths == [q8, q4] and result.check is None and result.quants is None
    assert sorted(p.name for p in out.iterdir()) == sorted(["merged", q8.name, q4.name])
    written = q4.stat().st_mtime_ns
    result = ex.export(project, fmt="ollama", quant="q4_k_m,q8_0", check=False)
    assert result.paths == [q4, q8, out / "Modelfile"]
    assert q4.stat().st_mtime_ns == written                     # newer than the merged model: reused
    assert ex.parse_modelfile((out / "Modelfile").read_text())["from"] == f"./{q4.name}"


def test_quant_types_parse_from_the_cli_and_an_unknown_one_is_a_one_line_error(project):
    from clitools import run_cli
    from stillroom.tui.cli import build_parser
    assert ex.parse_quants(None) == ("q4_k_m",)
    assert ex.parse_quants("Q4_K_M, q8_0") == ("q4_k_m", "q8_0")
    assert ex.parse_quants(["q8_0,f16", "q8_0", "q6_k"]) == ("q8_0", "f16", "q6_k")
    with pytest.raises(ex.ExportError, match="unknown GGUF type 'q4_0'; expected one or more of q4_k_m, "):
        ex.parse_quants("q4_k_m,q4_0")
    args = build_parser().parse_args(["export", str(project.root), "-f", "gguf", "--quant", "q4_k_m,q8_0",
                                      "--quant", "f16"])
    assert ex.parse_quants(args.quant) == ("q4_k_m", "q8_0", "f16")
    bad = run_cli("export", project.root, "--format", "gguf", "--quant", "q4_k_m,q3_k")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "unknown GGUF type 'q3_k'" in bad.stderr
    assert not (project.exports_dir / RUN).exists()


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
    assert f"{RUN}-q4_k_m.gguf" in done.stdout                 # the default type
    done = run_cli("export", project.root, "--format", "gguf", "--quant", "q8_0", "--check-limit", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    table = json.loads((project.exports_dir / RUN / "quants.json").read_text())
    assert [r["quant"] for r in table["rows"]] == ["q8_0"]
    for header in ("quant", "size", "llama.cpp tok/s", "accuracy", "vs merged", "same answers"):
        assert header in done.stdout
    assert "merged" in done.stdout and "quants.md" in done.stdout
    bad = run_cli("export", project.root, "--run", "nope", "--format", "gguf")
    assert bad.returncode == 2 and "no such run" in bad.stderr


@pytest.mark.slow
def test_k_quants_of_the_bundled_student_load_and_answer(tmp_path):
    """SmolLM2-135M (the bundled student): its FFN down-projection rows (1536 = 6 × 256) take real K-quant
    blocks, its 576-wide rows the fallback type; every type loads in llama.cpp and answers, smaller first."""
    from stillroom.core.backends.llamacpp_load import open_gguf
    from stillroom.core.models import bundled_path
    from stillroom.core.student import student_folder
    folder = student_folder(str(bundled_path("smollm2-135m-instruct")))
    f16 = ex.convert_to_gguf(folder, tmp_path / "smollm2-f16.gguf", "f16")
    sizes = {"f16": f16.stat().st_size}
    for quant, k_type in (("q4_k_m", "Q4_K"), ("q5_k_m", "Q5_K"), ("q6_k", "Q6_K"), ("q8_0", "Q8_0")):
        path = ex.quantize_gguf(f16, tmp_path / f"smollm2-{quant}.gguf", quant, n_threads=2)
        assert k_type in _weight_types(path), quant
        sizes[quant] = path.stat().st_size
        llm = open_gguf(path, n_ctx=512, verbose=False, n_threads=2)
        try:
            answer = llm.create_chat_completion([{"role": "user", "content": "Say hello in one word."}],
                                                max_tokens=8, temperature=0.0)
        finally:
            llm.close()
        assert answer["choices"][0]["message"]["content"].strip(), quant
        path.unlink()
    assert sizes["q4_k_m"] < sizes["q5_k_m"] < sizes["q6_k"] < sizes["q8_0"] < sizes["f16"]
