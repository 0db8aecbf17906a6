"""CKEPE: clinical-knowledge-enhanced prompts for zero-shot classes, as a LangChain chain.

::

    {label, ontology, task}
      -> resolve (exact code -> knowledge entry)
      -> gather passages (the entry's own passages + retriever hits on its expanded name)
      -> ChatPromptTemplate -> chat model -> structured attributes      [LLM configured]
         | offline composer: name, synonyms, subtypes (else criteria)   [no LLM]
      -> grounding filter (drops attributes the passages do not support, and negated ones)
      -> "<name> (<synonyms>): <attr1>, <attr2>, ..."   + provenance

Grounding rule (deterministic, lexical): an attribute is kept when (a) every number in it
occurs in the passages and (b) at least ``grounding_threshold`` of its content words
(``merl.knowledge.text.tokens``: lower-cased, stop words removed, spelling variants unified,
light suffix stemming) occur in the passages. Anything
else is dropped with the reason, so an LLM cannot add attributes the knowledge lacks.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Optional

from langchain_core.documents import Document
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from pydantic import BaseModel, Field

from merl.knowledge.config import KnowledgeConfig
from merl.knowledge.index import KnowledgeIndex
from merl.knowledge.retriever import KnowledgeRetriever
from merl.knowledge.schema import KnowledgeEntry
from merl.knowledge.text import tokens

log = logging.getLogger(__name__)

OFFLINE = "offline"
MAX_SYNONYMS = 3

# -- structured output ------------------------------------------------------------------


class Attributes(BaseModel):
    """What the chat model must return."""

    attributes: list[str] = Field(description="short ECG findings that characterise the class, each supported by the passages")


class Passage(BaseModel):
    id: Optional[str]
    concept_id: Optional[str]
    source: Optional[str]
    score: float
    match: str
    text: str


class DroppedAttribute(BaseModel):
    attribute: str
    reason: str
    support: float


class PromptResult(BaseModel):
    """One class prompt and how it was made (written to ``prompts.provenance.json``)."""

    label: str
    ontology: Optional[str]
    concept_id: str
    name: str
    prompt: str
    composer: str  # offline | llm | offline-fallback (the LLM's attributes were all dropped)
    model: str
    passages: list[Passage]
    attributes_kept: list[str]
    attributes_dropped: list[DroppedAttribute]


# -- grounding --------------------------------------------------------------------------

# Filler words of LLM phrasing that carry no clinical content (beyond merl.knowledge.text.STOPWORDS).
_GROUNDING_STOP = frozenset({"seen", "present", "presence", "show", "shows", "showing", "typical", "characteristic"})


def content_tokens(text: str) -> list[str]:
    return [t for t in tokens(text) if t not in _GROUNDING_STOP]


# A sentence encoder reads "no pathological Q waves" much as "pathological Q waves": a negated
# finding pulls a class prompt towards the very reports it excludes (the NORM prompt scored
# below chance on NORM records with its negated criteria). Such attributes are dropped, and
# hedges such as "(may be inverted in aVR)" are cut from the ones kept.
_NEGATED = re.compile(r"^(no|not|without|absence of|absent|never)\b", re.IGNORECASE)
_HEDGE = re.compile(r"\s*\((?:may|can|except|unless|but)\b[^)]*\)", re.IGNORECASE)


def ground(attributes: list[str], passages: list[str], threshold: float) -> tuple[list[str], list[DroppedAttribute]]:
    """Split attributes into (kept, dropped) by the lexical grounding rule in the module docstring.

    Negated attributes are dropped too (see ``_NEGATED``), and hedging asides cut."""
    vocab: set[str] = set()
    for p in passages:
        vocab.update(content_tokens(p))
    kept: list[str] = []
    dropped: list[DroppedAttribute] = []
    seen: set[str] = set()
    for raw in attributes:
        attr = _HEDGE.sub("", " ".join(str(raw).split())).strip(" .;,")
        key = attr.lower()
        if _NEGATED.match(attr):
            dropped.append(DroppedAttribute(attribute=attr, reason="negated (a text encoder ignores the negation)",
                                            support=0.0))
            continue
        toks = content_tokens(attr)
        if not toks:
            dropped.append(DroppedAttribute(attribute=attr, reason="no content words", support=0.0))
            continue
        if key in seen:
            dropped.append(DroppedAttribute(attribute=attr, reason="duplicate", support=1.0))
            continue
        found = [t for t in toks if t in vocab]
        support = round(len(found) / len(toks), 3)
        numbers = [t for t in toks if t[0].isdigit() and t not in vocab]
        missing = sorted({t for t in toks if t not in vocab})
        if numbers:
            dropped.append(
                DroppedAttribute(attribute=attr, reason=f"number(s) not in passages: {', '.join(numbers)}", support=support)
            )
        elif support < threshold:
            dropped.append(
                DroppedAttribute(
                    attribute=attr,
                    reason=f"{support:.0%} of content words in passages (< {threshold:.0%}); missing: {', '.join(missing)}",
                    support=support,
                )
            )
        else:
            kept.append(attr)
            seen.add(key)
    return kept, dropped


# -- prompt text ------------------------------------------------------------------------


def _lower_first(text: str) -> str:
    """'Broad notched R' -> 'broad notched R'; 'QRS ...', 'P wave', 'J-point' are left alone."""
    first = text.split(" ", 1)[0]
    if len(first) > 2 and first.isalpha() and first[0].isupper() and first[1:].islower():
        return text[0].lower() + text[1:]
    return text


def compose_prompt(name: str, attributes: list[str], synonyms: list[str] = ()) -> str:
    """'<name> (<syn>, <syn>): a, b, c' (attributes containing commas are separated by semicolons)."""
    head = name + (f" ({', '.join(synonyms)})" if synonyms else "")
    attrs = [_lower_first(a.strip(" .;")) for a in attributes if a.strip(" .;")]
    if not attrs:
        return head
    sep = "; " if any("," in a for a in attrs) else ", "
    return f"{head}: {sep.join(attrs)}"


def prompt_synonyms(entry: KnowledgeEntry) -> list[str]:
    """A few short synonyms for the prompt head (the entry's own words, so always grounded);
    longer ones ("AF with rapid ventricular response") name variants, not the class."""
    short = [s for s in entry.synonyms if s.lower() != entry.name.lower() and len(s.split()) <= 4]
    return short[:MAX_SYNONYMS]


def qualified_subtypes(entry: KnowledgeEntry) -> list[str]:
    """The entry's subtypes as a report would name them: a bare qualifier ("inferior", "acute")
    becomes "inferior myocardial infarction"; named subtypes ("complete and incomplete LBBB") stay."""
    name = _lower_first(entry.name)
    return [f"{s} {name}" if len(s.split()) == 1 and s.islower() else s for s in entry.subtypes]


def offline_attributes(entry: KnowledgeEntry, max_attributes: int) -> list[str]:
    """Deterministic attributes straight from the entry: its subtypes, else its criteria, else
    its definition. The paper's released CKEPE prompts list a class's subtypes in report words
    ("anterior myocardial infarction, inferior myocardial infarction, ..."); textbook criteria
    name the measurements that abnormal reports mention ("QTc below 450 ms" reads much like
    "prolonged QTc" to a sentence encoder), so they describe only classes without subtypes."""
    return (qualified_subtypes(entry) or list(entry.criteria) or [entry.definition])[:max_attributes]


# -- the chain --------------------------------------------------------------------------

SYSTEM = (
    "You are a cardiologist writing a short description of an ECG diagnostic class for a zero-shot "
    "ECG classifier. Use ONLY findings stated in the passages; never add findings, numbers or causes "
    "that the passages do not state. Return 3 to {max_attributes} short attributes (ECG findings, "
    "criteria, subtypes) that distinguish the class."
)
HUMAN = "Class: {name} (label {label} in {ontology}; task: {task})\n\nPassages:\n{passages}\n\n{format_instructions}"


def _passage_records(docs: list[Document]) -> list[Passage]:
    return [
        Passage(
            id=d.id,
            concept_id=d.metadata.get("concept_id"),
            source=d.metadata.get("source"),
            score=float(d.metadata.get("score", 0.0)),
            match=str(d.metadata.get("match", "")),
            text=d.page_content,
        )
        for d in docs
    ]


def _concept_passages(index: KnowledgeIndex, concept_id: str) -> list[Document]:
    """All passages of one entry (overview + criteria), by their stable ids."""
    out = []
    ds = index.store.docstore
    doc = ds.search(f"{concept_id}#overview")
    i = 0
    while isinstance(doc, Document):
        out.append(Document(page_content=doc.page_content, metadata={**doc.metadata, "score": 1.0, "match": "entry"}, id=doc.id))
        doc = ds.search(f"{concept_id}#criterion{i}")
        i += 1
    return out


def build_ckepe_chain(
    index: KnowledgeIndex,
    cfg: KnowledgeConfig | None = None,
    llm: Any = None,
    model_name: str | None = None,
) -> Runnable:
    """Runnable: ``{"label", "ontology"?, "task"?}`` -> :class:`PromptResult`.

    ``llm`` is any LangChain chat model (None: offline composer). The index must carry its
    knowledge entries (``entries.json``), which every index built by ``merl knowledge build`` does.
    """
    cfg = cfg or KnowledgeConfig()
    if index.kb is None:
        from merl.core.config import ConfigError

        raise ConfigError("this index holds no knowledge entries (entries.json); rebuild it with `merl knowledge build`")
    kb = index.kb
    retriever = KnowledgeRetriever.from_config(index, cfg)
    model = model_name or cfg.llm.model or (type(llm).__name__ if llm is not None else OFFLINE)

    def resolve(x: dict) -> KnowledgeEntry:
        return kb.resolve(x["label"], x.get("ontology"))

    def gather(x: dict) -> list[Document]:
        entry: KnowledgeEntry = x["entry"]
        own = _concept_passages(index, entry.id)
        seen = {d.id for d in own}
        extra = [d for d in retriever.invoke(entry.id) if d.id not in seen]
        return own + extra

    def finish(x: dict, attributes: list[str], composer: str) -> PromptResult:
        entry: KnowledgeEntry = x["entry"]
        docs: list[Document] = x["passages"]
        kept, dropped = ground(attributes, [d.page_content for d in docs], cfg.grounding_threshold)
        kept = kept[: cfg.max_attributes]
        if not kept and composer == "llm":
            log.warning("%s: every LLM attribute was dropped by grounding; using the offline composer", x["label"])
            composer = "offline-fallback"
            kept, more = ground(
                offline_attributes(entry, cfg.max_attributes), [d.page_content for d in docs], cfg.grounding_threshold
            )
            dropped += more
        return PromptResult(
            label=x["label"],
            ontology=x.get("ontology"),
            concept_id=entry.id,
            name=entry.name,
            prompt=compose_prompt(entry.name, kept, prompt_synonyms(entry)),
            composer=composer,
            model=OFFLINE if composer == "offline" else model,
            passages=_passage_records(docs),
            attributes_kept=kept,
            attributes_dropped=dropped,
        )

    offline = RunnableLambda(
        lambda x: finish(x, offline_attributes(x["entry"], cfg.max_attributes), "offline"), name="offline_composer"
    )
    prepare = RunnablePassthrough.assign(entry=RunnableLambda(resolve, name="resolve_label")) | RunnablePassthrough.assign(
        passages=RunnableLambda(gather, name="gather_passages")
    )
    if llm is None:
        return (prepare | offline).with_config(run_name="ckepe")

    parser = PydanticOutputParser(pydantic_object=Attributes)
    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", HUMAN)])
    structured: Runnable = llm | parser
    if cfg.llm.structured_output:
        try:
            structured = llm.with_structured_output(Attributes)
        except NotImplementedError:  # models without tool calling (and the fake test model): parse JSON text
            pass

    def variables(x: dict) -> dict:
        entry: KnowledgeEntry = x["entry"]
        return {
            "name": entry.name,
            "label": x["label"],
            "ontology": x.get("ontology") or "any ontology",
            "task": x.get("task") or "zero-shot ECG classification",
            "max_attributes": cfg.max_attributes,
            "passages": "\n".join(f"[{i}] {d.page_content}" for i, d in enumerate(x["passages"], 1)),
            "format_instructions": parser.get_format_instructions(),
        }

    def as_list(out: Any) -> list[str]:
        if isinstance(out, Attributes):
            return list(out.attributes)
        if isinstance(out, dict):
            return list(out.get("attributes", []))
        raise ValueError(f"unexpected structured output {type(out).__name__}")

    generate = (
        RunnableLambda(variables, name="prompt_variables") | prompt | structured | RunnableLambda(as_list, name="attributes")
    )
    with_llm = RunnablePassthrough.assign(attributes=generate) | RunnableLambda(
        lambda x: finish(x, x["attributes"], "llm"), name="grounding_filter"
    )
    return (prepare | with_llm).with_config(run_name="ckepe")


def generate_prompts(
    index: KnowledgeIndex,
    labels: list[str],
    ontology: str | None = None,
    task: str | None = None,
    cfg: KnowledgeConfig | None = None,
    llm: Any = None,
    model_name: str | None = None,
    max_concurrency: int = 4,
) -> dict[str, PromptResult]:
    """``{label: PromptResult}`` for every label; all labels are resolved before any LLM call,
    so one unknown label fails fast with every problem listed."""
    if index.kb is None:
        from merl.core.config import ConfigError

        raise ConfigError("this index holds no knowledge entries (entries.json); rebuild it with `merl knowledge build`")
    index.kb.resolve_labels(labels, ontology)
    chain = build_ckepe_chain(index, cfg, llm, model_name)
    inputs = [{"label": lab, "ontology": ontology, "task": task} for lab in labels]
    results = chain.batch(inputs, config={"max_concurrency": max_concurrency if llm is not None else 1})
    return dict(zip(labels, results))


def prompt_labels(task: str | None, labels: list[str] | None, ontology: str | None) -> tuple[list[str], str | None]:
    """(labels, ontology) to prompt: a benchmark task's (its own ontology) or the given list."""
    from merl.core.config import ConfigError

    if bool(task) == bool(labels):
        raise ConfigError("give exactly one of a task or a list of labels")
    if not task:
        return list(labels), ontology
    from merl.core.tasks import get_task

    try:
        t = get_task(task)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    if ontology and ontology != t.ontology:
        raise ConfigError(f"task {task} uses ontology {t.ontology!r}, not {ontology!r}")
    return list(t.labels), t.ontology


def provenance(index: str, task: str | None, ontology: str | None, model: str | None,
               cfg: KnowledgeConfig, results: dict[str, PromptResult]) -> dict:
    """How the prompts were made: written beside prompts.json and returned by the service."""
    return {
        "index": index,
        "task": task,
        "ontology": ontology,
        "model": model or OFFLINE,
        "grounding_threshold": cfg.grounding_threshold,
        "labels": {lab: r.model_dump(mode="json") for lab, r in results.items()},
    }
