"""CKEPE chain on a small fixture knowledge base: offline composer, fake-LLM path with the
grounding filter, user documents added with --add, and the `merl prompts` files."""

from __future__ import annotations

import json

import pytest
import yaml
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from typer.testing import CliRunner

from merl.cli import app
from merl.core.config import ConfigError
from merl.knowledge.ckepe import build_ckepe_chain, generate_prompts, ground
from merl.knowledge.config import KnowledgeConfig
from merl.knowledge.index import KnowledgeIndex
from merl.knowledge.retriever import KnowledgeRetriever

pytestmark = pytest.mark.xdist_group("ckepe")

ENTRIES = [
    {
        "id": "complete_lbbb", "name": "Complete left bundle branch block", "category": "conduction",
        "synonyms": ["left bundle branch block", "LBBB", "CLBBB"],
        "codes": {"scp": ["CLBBB"], "cpsc": ["CLBBB"], "csn": ["LBBB"], "snomed": ["164909002"]},
        "definition": "Delayed, abnormal left ventricular activation because conduction in the left bundle is blocked.",
        "criteria": ["QRS duration 120 ms or more in adults", "Broad notched or slurred R wave in I, aVL, V5 and V6",
                     "Absent q waves in I, V5 and V6"],
        "related": ["complete_rbbb"], "provenance": "AHA/ACCF/HRS 2009 recommendations, Part III",
    },
    {
        "id": "complete_rbbb", "name": "Complete right bundle branch block", "category": "conduction",
        "synonyms": ["RBBB", "CRBBB"], "codes": {"scp": ["CRBBB"], "csn": ["RBBB"]},
        "definition": "Delayed right ventricular activation because conduction in the right bundle is blocked.",
        "criteria": ["QRS duration 120 ms or more in adults", "rsR' pattern in V1 or V2", "Wide S wave in I and V6"],
        "related": ["complete_lbbb"], "provenance": "AHA/ACCF/HRS 2009 recommendations, Part III",
    },
    {
        "id": "atrial_fibrillation", "name": "Atrial fibrillation", "category": "rhythm",
        "synonyms": ["AFIB", "A-fib"], "codes": {"scp": ["AFIB"], "cpsc": ["AFIB"], "csn": ["AFIB"]},
        "definition": "Disorganised atrial electrical activity with irregular ventricular response.",
        "criteria": ["Irregularly irregular R-R intervals", "No distinct P waves", "Fibrillatory waves best seen in V1"],
        "related": ["atrial_flutter"], "provenance": "2020 ESC guidelines for atrial fibrillation",
    },
    {
        "id": "atrial_flutter", "name": "Atrial flutter", "category": "rhythm",
        "synonyms": ["AFLT"], "codes": {"scp": ["AFLT"], "csn": ["AF"]},
        "definition": "Macro re-entrant atrial tachycardia with regular atrial activity around 300/min.",
        "criteria": ["Sawtooth flutter waves in II, III and aVF", "Atrial rate 250-350/min"],
        "related": ["atrial_fibrillation"], "provenance": "2019 ESC guidelines for supraventricular tachycardia",
    },
]

MD = "# Clinic notes\n\nThe quokka sign is a peculiar biphasic T wave in lead V3 that our clinic records.\n"
TXT = "Zebra repolarisation pattern: alternating tall and flat T waves on consecutive beats in lead II.\n"
PDF_TEXT = "Marmot criterion: a notched P wave lasting 130 ms in lead aVR, used in our registry."


def _write_pdf(path):
    """A one-page PDF with a text layer, via matplotlib's PDF backend (no global pyplot state)."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"pdf.fonttype": 42}):  # TrueType text stays extractable
        fig = Figure(figsize=(8, 2))
        fig.text(0.02, 0.5, PDF_TEXT, fontsize=9)
        fig.savefig(path, format="pdf")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Fixture entries + a markdown, a text and a PDF file, built by the CLI."""
    root = tmp_path_factory.mktemp("ckepe")
    ent = root / "entries"
    ent.mkdir()
    for cat in ("conduction", "rhythm"):
        (ent / f"{cat}.yaml").write_text(yaml.safe_dump([e for e in ENTRIES if e["category"] == cat], sort_keys=False))
    docs = root / "docs"
    docs.mkdir()
    (docs / "notes.md").write_text(MD)
    (docs / "zebra.txt").write_text(TXT)
    _write_pdf(docs / "marmot.pdf")
    out = root / "index"
    res = CliRunner().invoke(app, ["knowledge", "build", "--entries", str(ent), "--add", str(docs / "notes.md"),
                                   "--add", str(docs / "zebra.txt"), "--add", str(docs / "marmot.pdf"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return root, out, KnowledgeIndex.load(out)


@pytest.mark.parametrize(
    "query,source",
    [("quokka sign biphasic T wave in V3", "notes.md"), ("zebra repolarisation pattern", "zebra.txt"),
     ("marmot criterion notched P wave in aVR", "marmot.pdf")],
)
def test_user_documents_are_retrievable(built, query, source):
    _, _, index = built
    top = KnowledgeRetriever(index=index, k=3).invoke(query)[0]
    assert top.metadata["kind"] == "user" and top.metadata["source"].endswith(source)


def test_add_command_appends_documents(built, tmp_path):
    import shutil

    _, out, _ = built
    copy = tmp_path / "index"
    shutil.copytree(out, copy)
    extra = tmp_path / "extra.md"
    extra.write_text("The wombat wave is a late positive deflection after the U wave in lead V2.\n")
    res = CliRunner().invoke(app, ["knowledge", "add", str(extra), "--index", str(copy)])
    assert res.exit_code == 0, res.output
    top = KnowledgeRetriever(index=KnowledgeIndex.load(copy), k=2).invoke("wombat wave after the U wave")[0]
    assert top.metadata["source"].endswith("extra.md")


def test_offline_composer_is_deterministic_and_grounded(built):
    _, _, index = built
    a = generate_prompts(index, ["CLBBB", "AFIB"], "scp")
    b = generate_prompts(index, ["CLBBB", "AFIB"], "scp")
    assert {k: v.model_dump() for k, v in a.items()} == {k: v.model_dump() for k, v in b.items()}
    lbbb = a["CLBBB"]
    assert lbbb.prompt == (
        "Complete left bundle branch block (left bundle branch block, LBBB, CLBBB): QRS duration 120 ms or more in adults; "
        "broad notched or slurred R wave in I, aVL, V5 and V6"
    )
    # the negated criterion is dropped: an encoder reads "absent q waves" as "q waves"
    assert [(d.attribute, d.reason.split(" ")[0]) for d in lbbb.attributes_dropped] == [
        ("Absent q waves in I, V5 and V6", "negated")]
    assert lbbb.composer == "offline" and lbbb.model == "offline"
    texts = [p.text for p in lbbb.passages]
    kept, dropped = ground(lbbb.attributes_kept, texts, threshold=1.0)  # every word is in the passages
    assert kept == lbbb.attributes_kept and not dropped
    assert lbbb.passages[0].concept_id == "complete_lbbb" and lbbb.passages[0].match == "entry"


def test_fake_llm_attributes_are_grounded(built):
    _, _, index = built
    answer = json.dumps({"attributes": [
        "broad notched R wave in V5 and V6",      # supported
        "QRS duration 120 ms or more",             # supported
        "elevated cardiac troponin",               # invented: no support in the passages
        "QRS duration above 160 ms",               # invented number
    ]})
    llm = FakeListChatModel(responses=[answer])
    cfg = KnowledgeConfig()
    out = build_ckepe_chain(index, cfg, llm, model_name="fake:list").invoke({"label": "CLBBB", "ontology": "scp"})
    assert out.composer == "llm" and out.model == "fake:list"
    assert out.attributes_kept == ["broad notched R wave in V5 and V6", "QRS duration 120 ms or more"]
    dropped = {d.attribute: d.reason for d in out.attributes_dropped}
    assert set(dropped) == {"elevated cardiac troponin", "QRS duration above 160 ms"}
    assert "troponin" in dropped["elevated cardiac troponin"]
    assert "160" in dropped["QRS duration above 160 ms"]
    assert out.prompt == ("Complete left bundle branch block (left bundle branch block, LBBB, CLBBB): "
                          "broad notched R wave in V5 and V6, QRS duration 120 ms or more")


def test_llm_with_nothing_grounded_falls_back_to_offline(built):
    _, _, index = built
    llm = FakeListChatModel(responses=['{"attributes": ["elevated troponin", "chest pain radiating to the jaw"]}'])
    out = build_ckepe_chain(index, KnowledgeConfig(), llm).invoke({"label": "AFIB", "ontology": "scp"})
    assert out.composer == "offline-fallback"
    assert out.attributes_kept[0] == "Irregularly irregular R-R intervals"
    assert len(out.attributes_dropped) == 3  # the two LLM attributes + the negated "No distinct P waves"


def test_llm_output_that_is_not_json_fails_clearly(built):
    _, _, index = built
    llm = FakeListChatModel(responses=["Sure! LBBB has wide QRS."])
    from langchain_core.exceptions import OutputParserException

    with pytest.raises(OutputParserException):
        build_ckepe_chain(index, KnowledgeConfig(), llm).invoke({"label": "CLBBB", "ontology": "scp"})


def test_prompts_cli_writes_prompts_and_provenance(built, tmp_path):
    _, out, _ = built
    dest = tmp_path / "p" / "prompts.json"
    res = CliRunner().invoke(app, ["prompts", "--labels", "CLBBB,AF", "--ontology", "csn", "--index", str(out),
                                   "--out", str(dest)])
    assert res.exit_code != 0 and isinstance(res.exception, ConfigError)  # CLBBB is not a CSN code
    assert "CLBBB" in str(res.exception) and not dest.exists()
    res = CliRunner().invoke(app, ["prompts", "--labels", "LBBB,AF", "--ontology", "csn", "--index", str(out),
                                   "--out", str(dest)])
    assert res.exit_code == 0, res.output
    prompts = json.loads(dest.read_text())
    assert list(prompts) == ["LBBB", "AF"] and prompts["AF"].startswith("Atrial flutter (AFLT): sawtooth flutter waves")
    prov = json.loads((dest.parent / "prompts.provenance.json").read_text())
    lab = prov["labels"]["LBBB"]
    assert lab["concept_id"] == "complete_lbbb" and lab["model"] == "offline"
    assert [d["reason"].split(" ")[0] for d in lab["attributes_dropped"]] == ["negated"]
    assert {"id", "concept_id", "source", "score", "match", "text"} <= set(lab["passages"][0])
    assert lab["attributes_kept"] and prov["ontology"] == "csn"


def test_llm_spec_errors_are_clear(built, tmp_path):
    _, out, _ = built
    res = CliRunner().invoke(app, ["prompts", "--labels", "LBBB", "--index", str(out), "--out", str(tmp_path / "p.json"),
                                   "--llm", "gpt-4o"])
    assert isinstance(res.exception, ConfigError) and "provider:model" in str(res.exception)


def test_missing_llm_integration_is_a_clear_error():
    import importlib.util

    from merl.knowledge.config import LLMConfig
    from merl.knowledge.llm import make_chat_model

    if importlib.util.find_spec("langchain_openai") is not None:
        pytest.skip("langchain-openai is installed here")
    with pytest.raises(ConfigError, match="langchain-openai"):
        make_chat_model(LLMConfig(model="openai:gpt-4o-mini", base_url="http://localhost:8000/v1"))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_layouts_round_trip(built, tmp_path, kind):
    from merl.knowledge.config import IndexConfig

    _, _, flat = built
    docs = flat.documents()
    index = KnowledgeIndex.build(docs, flat.embeddings, IndexConfig(kind=kind), kb=flat.kb)
    index.save(tmp_path / kind)
    loaded = KnowledgeIndex.load(tmp_path / kind, embeddings=flat.embeddings)
    for q in ("sawtooth flutter waves", "zebra repolarisation pattern"):
        want = flat.search(q, k=1)[0][0].id
        assert index.search(q, k=1)[0][0].id == want and loaded.search(q, k=1)[0][0].id == want
        assert loaded.search(q, k=3, mmr=True, fetch_k=10)[0][0].id == want


def test_offline_prompts_list_subtypes_and_carry_no_negations():
    """As the paper's released prompts: a class with subtypes is described by them, in report
    words; criteria describe only classes without subtypes, and negated criteria or hedges
    ("may be inverted in aVR") never reach a prompt (bundled entries)."""
    from merl.knowledge.ckepe import compose_prompt, offline_attributes, prompt_synonyms
    from merl.knowledge.documents import entry_documents
    from merl.knowledge.kb import load_entries

    kb = load_entries()

    def prompt(label, ontology="ptbxl_superclass"):
        entry = kb.resolve(label, ontology)
        passages = [d.page_content for d in entry_documents(entry)]
        kept, dropped = ground(offline_attributes(entry, 8), passages, threshold=0.6)
        return compose_prompt(entry.name, kept, prompt_synonyms(entry)), dropped

    mi, _ = prompt("MI")
    assert mi == ("Myocardial infarction (myocardial infarct, heart attack, infarct pattern): anterior myocardial "
                  "infarction, inferior myocardial infarction, lateral myocardial infarction, posterior myocardial "
                  "infarction, acute myocardial infarction, old myocardial infarction")
    assert prompt("NORM")[0] == "Normal ECG (normal electrocardiogram, within normal limits, normal tracing): " \
                                "normal sinus rhythm"
    lbbb, dropped = prompt("CLBBB", "scp")  # no subtypes: its criteria, the negated one dropped
    assert lbbb.startswith("Complete left bundle branch block (") and "duration 120 ms" in lbbb
    assert [d.reason.split(" ")[0] for d in dropped] == ["negated"]
    hedged = ground(["T waves upright in I, II and V3-V6 (may be inverted in aVR, III and V1)"],
                    ["T waves upright in I, II and V3-V6, inverted in aVR, III and V1"], 0.6)[0]
    assert hedged == ["T waves upright in I, II and V3-V6"]
