"""Knowledge-base schema, loading and label resolution (no model needed)."""

from __future__ import annotations

import copy

import pytest
import yaml

from merl.core.tasks import TASKS
from merl.knowledge.kb import KnowledgeBase, UnknownLabelError, load_entries
from merl.knowledge.schema import KnowledgeBaseError, KnowledgeEntry

LBBB = {
    "id": "complete_lbbb",
    "name": "Complete left bundle branch block",
    "category": "conduction",
    "synonyms": ["left bundle branch block", "LBBB"],
    "codes": {"scp": ["CLBBB"], "ptbxl_subclass": ["CLBBB"], "cpsc": ["CLBBB"], "csn": ["LBBB"], "snomed": [164909002]},
    "definition": "Delayed left ventricular activation through the right bundle.",
    "criteria": ["QRS duration >= 120 ms in adults", "Broad notched or slurred R wave in leads I, aVL, V5 and V6"],
    "related": ["complete_rbbb"],
    "provenance": "AHA/ACCF/HRS 2009, Part III",
}
RBBB = {
    "id": "complete_rbbb",
    "name": "Complete right bundle branch block",
    "category": "conduction",
    "synonyms": ["RBBB"],
    "codes": {"scp": ["CRBBB"], "csn": ["RBBB"]},
    "definition": "Delayed right ventricular activation.",
    "criteria": ["rsR' in V1"],
    "related": ["complete_lbbb"],
    "provenance": "AHA/ACCF/HRS 2009, Part III",
}


def write_entries(root, entries):
    by_cat: dict[str, list] = {}
    for e in entries:
        by_cat.setdefault(e["category"], []).append(e)
    root.mkdir(parents=True, exist_ok=True)
    for cat, items in by_cat.items():
        (root / f"{cat}.yaml").write_text(yaml.safe_dump(items, sort_keys=False))
    return root


def test_fixture_entries_load_and_resolve(tmp_path):
    kb = load_entries(write_entries(tmp_path, [LBBB, RBBB]))
    assert kb.resolve("CLBBB", "scp").id == "complete_lbbb"
    assert kb.resolve("LBBB", "csn").id == "complete_lbbb"
    assert kb.resolve("164909002").id == "complete_lbbb"  # YAML int -> string code
    assert kb.resolve("complete_rbbb").id == "complete_rbbb"  # entry id without ontology
    assert [e.id for e in kb.lookup_term("left bundle-branch  BLOCK")] == ["complete_lbbb"]


def test_bad_category_is_a_clear_error(tmp_path):
    bad = {**LBBB, "category": "conductionn"}
    (tmp_path / "conduction.yaml").write_text(yaml.safe_dump([bad]))
    with pytest.raises(KnowledgeBaseError, match=r"conduction.yaml entry #1 \(complete_lbbb\)[\s\S]*category.*'conductionn'"):
        load_entries(tmp_path)


def test_category_must_match_file(tmp_path):
    (tmp_path / "rhythm.yaml").write_text(yaml.safe_dump([LBBB]))
    with pytest.raises(KnowledgeBaseError, match="does not match its file 'rhythm.yaml'"):
        load_entries(tmp_path)


def test_dangling_related_id(tmp_path):
    with pytest.raises(
        KnowledgeBaseError, match="complete_lbbb \\(conduction.yaml\\): related id 'complete_rbbb' does not exist"
    ):
        load_entries(write_entries(tmp_path, [LBBB]))


def test_duplicate_code_within_ontology(tmp_path):
    rbbb = copy.deepcopy(RBBB)
    rbbb["codes"]["scp"] = ["CRBBB", "CLBBB"]
    with pytest.raises(KnowledgeBaseError, match="code 'CLBBB' in ontology 'scp' is claimed by several entries"):
        load_entries(write_entries(tmp_path, [LBBB, rbbb]))
    # The same code in two different ontologies is fine.
    rbbb["codes"] = {"scp": ["CRBBB"], "csn": ["CLBBB"]}
    load_entries(write_entries(tmp_path / "ok", [LBBB, rbbb]))


def test_bad_id_and_unknown_field():
    with pytest.raises(ValueError, match="id"):
        KnowledgeEntry.model_validate({**LBBB, "id": "Complete LBBB"})
    with pytest.raises(ValueError, match="colour"):
        KnowledgeEntry.model_validate({**LBBB, "colour": "red"})


def test_unknown_label_and_ambiguity(tmp_path):
    rbbb = copy.deepcopy(RBBB)
    rbbb["codes"]["cpsc"] = ["LBBB"]  # LBBB means complete_lbbb in csn, complete_rbbb in cpsc (contrived)
    kb = load_entries(write_entries(tmp_path, [LBBB, rbbb]))
    with pytest.raises(UnknownLabelError, match="'CLBB' .*ontology 'scp'.*did you mean CLBBB"):
        kb.resolve("CLBB", "scp")
    with pytest.raises(UnknownLabelError, match="ambiguous"):
        kb.resolve("LBBB")
    assert kb.resolve("LBBB", "cpsc").id == "complete_rbbb"
    with pytest.raises(UnknownLabelError, match="2 label\\(s\\) do not resolve"):
        kb.resolve_labels(["CLBBB", "XX", "YY"], "scp")


def test_kb_json_round_trip(tmp_path):
    kb = load_entries(write_entries(tmp_path, [LBBB, RBBB]))
    again = KnowledgeBase.from_json(kb.to_json())
    assert [e.model_dump() for e in again] == [e.model_dump() for e in kb]


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_label_resolves_to_one_entry(task):
    """On the bundled entries: fails (naming the labels) if any label of a task is unresolvable."""
    kb = load_entries()
    mapping = kb.for_task(task)
    assert list(mapping) == list(TASKS[task].labels)
    for label, entry in mapping.items():
        assert label in getattr(entry.codes, TASKS[task].ontology)
