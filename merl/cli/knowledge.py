"""`merl knowledge build|add|query|check` and the top-level `merl prompts` (CKEPE).

Heavy imports (torch, transformers, faiss, langchain) happen inside the command bodies.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Optional

import typer

from merl.core.config import ConfigError

app = typer.Typer(no_args_is_help=True)

_CONFIG = typer.Option(None, "--config", "-c", help="KnowledgeConfig YAML (embedding, index, k, mmr, llm, ...).")
_SET = typer.Option([], "--set", help="Config override key=value (repeatable), e.g. --set index.kind=hnsw.")


def _cfg(config: Optional[Path], overrides: list[str]):
    from merl.core.config import load_config
    from merl.knowledge.config import KnowledgeConfig

    return load_config(KnowledgeConfig, config, overrides)


def _parse_filters(filters: list[str], category: Optional[str]) -> dict:
    """``--filter key=value`` items (+ ``--category``) -> retriever filter fields, values checked."""
    from merl.knowledge.retriever import FILTER_VALUES as allowed

    out = {}
    for f in [*filters, *([f"category={category}"] if category else [])]:
        key, sep, value = f.partition("=")
        if not sep or key not in allowed or not value:
            raise ConfigError(f"--filter {f!r}: expected ontology=<name>, category=<name> or kind=entry|user")
        if value not in allowed[key]:
            raise ConfigError(f"--filter {f!r}: unknown {key} {value!r}; allowed: {', '.join(allowed[key])}")
        out[key] = value
    return out


@app.command()
def build(
    out: str = typer.Option(..., "--out", "-o", help="Index directory to write (replaced atomically; local or a URI)."),
    add: list[Path] = typer.Option([], "--add", help="Extra sources: .md/.txt/.pdf files or folders (repeatable)."),
    entries: Optional[Path] = typer.Option(None, "--entries", help="Knowledge entry folder (default: the bundled entries)."),
    no_entries: bool = typer.Option(False, "--no-entries", help="Index only the --add sources."),
    config: Optional[Path] = _CONFIG,
    set_: list[str] = _SET,
) -> None:
    """Build a FAISS index of the knowledge entries (+ your own documents) and save it without pickle."""
    import time

    from merl.knowledge.index import build_index
    from merl.knowledge.kb import load_entries

    cfg = _cfg(config, set_)
    kb = None if no_entries else load_entries(entries)
    if kb is None and not add:
        raise ConfigError("nothing to index: --no-entries needs --add sources")
    t0 = time.perf_counter()
    index = build_index(kb, add, cfg, progress=True)
    index.save(out)
    n_user = sum(1 for d in index.documents() if d.metadata.get("kind") == "user")
    typer.echo(
        f"built {out}: {len(index)} passages ({len(kb) if kb else 0} entries, {n_user} user chunks), "
        f"{cfg.index.kind} index, embedding {cfg.embedding}, {time.perf_counter() - t0:.1f}s"
    )


@app.command()
def add(
    sources: list[Path] = typer.Argument(..., help=".md/.txt/.pdf files or folders to add."),
    index_dir: str = typer.Option(..., "--index", "-i", help="Existing index directory (rewritten atomically; local or a URI)."),
    config: Optional[Path] = _CONFIG,
    set_: list[str] = _SET,
) -> None:
    """Add your own documents to an existing index."""
    from merl.knowledge.documents import user_documents
    from merl.knowledge.index import KnowledgeIndex

    cfg = _cfg(config, set_)
    index = KnowledgeIndex.load(index_dir)
    n = index.add_documents(user_documents(sources, cfg.chunk_size, cfg.chunk_overlap), progress=True)
    index.save(index_dir)
    typer.echo(f"added {n} chunks to {index_dir} ({len(index)} passages)")


@app.command()
def query(
    text: str = typer.Argument(..., help="A label code (CLBBB, 164909002), a term, or a free-text phrase."),
    index_dir: Optional[str] = typer.Option(None, "--index", "-i", help="Index directory (local or a URI)."),
    url: Optional[str] = typer.Option(
        None, "--url", help="A running `merl knowledge serve` (http://host:port), instead of loading --index here."
    ),
    k: Optional[int] = typer.Option(None, "-k", help="Passages to return (default: config k)."),
    mmr: bool = typer.Option(False, "--mmr", help="Maximal marginal relevance (diverse passages)."),
    filters: list[str] = typer.Option([], "--filter", help="ontology=<name> | category=<name> | kind=entry|user."),
    category: Optional[str] = typer.Option(None, "--category", help="Only passages of this category."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Minimum cosine similarity."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    config: Optional[Path] = _CONFIG,
    set_: list[str] = _SET,
) -> None:
    """Search the index: codes are expanded from the ontology, phrases go to vector search."""
    if bool(index_dir) == bool(url):
        raise ConfigError("give exactly one of --index (search here) or --url (ask a running service)")
    f = _parse_filters(filters, category)
    if url:
        from merl.knowledge.client import KnowledgeClient

        if config or set_:
            raise ConfigError("--config/--set configure a search here; the service at --url uses its own config")
        answer = KnowledgeClient(url).query(text, k=k, filters=f, mmr=mmr, threshold=threshold)
        rows, used_mmr, used_k = answer["results"], answer["mmr"], answer["k"]
    else:
        from merl.knowledge.index import KnowledgeIndex
        from merl.knowledge.retriever import KnowledgeRetriever, result_rows

        cfg = _cfg(config, set_)
        index = KnowledgeIndex.load(index_dir)
        retriever = KnowledgeRetriever.from_config(
            index, cfg, k=k, mmr=True if mmr else None, score_threshold=threshold, **f
        )
        rows, used_mmr, used_k = result_rows(retriever.invoke(text)), retriever.mmr, retriever.k
    if as_json:
        typer.echo(json.dumps({"query": text, "results": rows}, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{text!r} ({'mmr' if used_mmr else 'similarity'}, k={used_k})")
    for col in ("rank", "score", "concept", "codes", "source / snippet"):
        table.add_column(col, overflow="fold")
    for r in rows:
        codes = " ".join(f"{o}:{','.join(c)}" for o, c in r["codes"].items() if o != "snomed")
        snippet = r["text"] if len(r["text"]) <= 140 else r["text"][:137] + "..."
        table.add_row(str(r["rank"]), f"{r['score']:.3f}{'*' if r['match'] == 'exact' else ''}",
                      r["concept_id"] or "-", codes or "-", f"[dim]{r['source']}[/dim]\n{snippet}")
    Console().print(table)
    if not rows:
        typer.echo("no passage passed the filters / threshold")


@app.command()
def serve(
    index_dir: str = typer.Option(..., "--index", "-i", help="Index directory every replica can read (local or a URI)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default; 0.0.0.0 exposes it)."),
    port: int = typer.Option(8000, "--port", help="HTTP port."),
    replicas: int = typer.Option(1, "--replicas", help="Replicas, each with its own warm text encoder."),
    cpus: float = typer.Option(1.0, "--cpus-per-replica", help="CPUs reserved per replica (its torch threads)."),
    allow_llm: list[str] = typer.Option(
        [], "--allow-llm", help="LLM spec a /prompts request may name (repeatable; default none: offline composer)."
    ),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray cluster to deploy on (auto, host:port); default: an embedded local cluster."
    ),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", help="CPUs of the embedded local cluster."),
    config: Optional[Path] = _CONFIG,
    set_: list[str] = _SET,
) -> None:
    """Serve the retriever and the CKEPE prompts over HTTP (Ray Serve) until Ctrl-C or `ray job stop`."""
    from merl.knowledge.service import KnowledgeServer, ServeConfig

    try:
        serve_cfg = ServeConfig(host=host, port=port, replicas=replicas, num_cpus=cpus, allowed_llms=allow_llm)
    except ValueError as e:  # pydantic's ValidationError
        raise ConfigError(f"merl knowledge serve: {' '.join(str(e).split())}") from None
    server = KnowledgeServer(index_dir, _cfg(config, set_), serve_cfg, address=address, num_cpus=num_cpus).start()
    typer.echo(f"serving {index_dir} at {server.url} ({replicas} replica(s)); API docs at {server.url}/docs; "
               "Ctrl-C stops it")
    server.wait()
    typer.echo("stopped")


@app.command()
def check(
    entries: Optional[Path] = typer.Option(None, "--entries", help="Knowledge entry folder (default: bundled)."),
) -> None:
    """Validate the entries and check that every label of the six tasks resolves to one entry."""
    from merl.core.tasks import TASKS
    from merl.knowledge.kb import load_entries

    kb = load_entries(entries)
    problems = []
    for name in TASKS:
        try:
            kb.for_task(name)
        except ConfigError as e:
            problems.append(f"{name}: {e}")
    if problems:
        raise ConfigError("\n".join(problems))
    typer.echo(f"{len(kb)} entries valid; all labels of {len(TASKS)} tasks resolve")


def prompts(
    out: str = typer.Option(..., "--out", "-o", help="prompts.json to write ({label: prompt}; local or a URI); "
                            "provenance goes beside it."),
    index_dir: str = typer.Option(..., "--index", "-i", help="Knowledge index (from `merl knowledge build`; local or a URI)."),
    task: Optional[str] = typer.Option(None, "--task", help="Benchmark task whose labels to prompt (e.g. icbeb)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Comma-separated labels, instead of --task."),
    ontology: Optional[str] = typer.Option(None, "--ontology", help="Ontology of --labels (scp, csn, cpsc, ...)."),
    llm: Optional[str] = typer.Option(
        None, "--llm", help="Chat model, e.g. openai:gpt-4o-mini or ollama:llama3.1 (default: offline composer)."
    ),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible / Ollama server URL."),
    config: Optional[Path] = _CONFIG,
    set_: list[str] = _SET,
) -> None:
    """CKEPE: write knowledge-enhanced class prompts for a task or a label list."""
    from merl.core.io import atomic_write_text
    from merl.knowledge.ckepe import generate_prompts, prompt_labels, provenance
    from merl.knowledge.index import KnowledgeIndex

    if bool(task) == bool(labels):
        raise ConfigError("give exactly one of --task or --labels")
    cfg = _cfg(config, set_)
    if llm:
        cfg.llm.model = llm
    if base_url:
        cfg.llm.base_url = base_url
    label_list, ontology = prompt_labels(task, [s.strip() for s in (labels or "").split(",") if s.strip()], ontology)
    model = None
    if cfg.llm.model:
        from merl.knowledge.llm import make_chat_model

        model = make_chat_model(cfg.llm)
    index = KnowledgeIndex.load(index_dir)
    results = generate_prompts(index, label_list, ontology, task, cfg, model, cfg.llm.model)
    atomic_write_text(out, json.dumps({lab: r.prompt for lab, r in results.items()}, indent=2, ensure_ascii=False) + "\n")
    head, sep, name = out.rpartition("/")  # string surgery: ``out`` may be a URI
    side = head + sep + f"{PurePosixPath(name).stem}.provenance.json"
    prov = provenance(str(index_dir), task, ontology, cfg.llm.model, cfg, results)
    atomic_write_text(side, json.dumps(prov, indent=2, ensure_ascii=False) + "\n")
    dropped = sum(len(r.attributes_dropped) for r in results.values())
    typer.echo(f"wrote {len(results)} prompts to {out} (provenance: {side}; {dropped} attribute(s) dropped by grounding)")


# Functions listed here become top-level commands (`merl <name>`; a trailing _cmd is dropped).
TOP_LEVEL: list = [prompts]
