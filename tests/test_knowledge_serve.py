"""`merl knowledge serve`: the real Ray Serve application on loopback, asked over real HTTP.

Answers must equal the in-process retriever's and CKEPE chain's; bad requests get one-line
4xx answers; stopping the service leaves no Serve process and (as it started it) no Ray.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from merl.core.raysession import free_port
from merl.knowledge.ckepe import generate_prompts
from merl.knowledge.client import KnowledgeClient, KnowledgeServiceError
from merl.knowledge.config import KnowledgeConfig
from merl.knowledge.index import KnowledgeIndex, build_index
from merl.knowledge.kb import load_entries
from merl.knowledge.retriever import KnowledgeRetriever, code_expansions, result_rows
from merl.knowledge.service import MAX_BODY_BYTES, KnowledgeServer, ServeConfig

# The tests that use the service share one embedded Ray cluster and one replica: about 25 s to
# build the index and 30 s to start (more on a busy machine), so they are marked slow.
slow = pytest.mark.slow

QUERIES = [
    ("wide QRS with notched R in V6", {}),
    ("CLBBB", {"k": 3, "filters": {"ontology": "cpsc"}}),
    ("irregularly irregular rhythm with no P waves", {"mmr": True, "k": 4}),
    ("ST elevation", {"filters": {"category": "ischemia"}, "k": 6}),
    ("164909002", {}),
    ("PR interval longer than 200 ms", {"threshold": 0.3, "k": 10}),
]



@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "index"
    build_index(load_entries()).save(path)
    return path


@pytest.fixture(scope="module")
def server(index_path):
    cfg = ServeConfig(port=free_port(), allowed_llms=["ollama:llama3.1"])  # no LLM package is installed here
    srv = KnowledgeServer(str(index_path), serve_cfg=cfg, num_cpus=2).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local(index_path):
    return KnowledgeIndex.load(index_path)


def _post(url: str, body: bytes | dict, content_type: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _in_process(index: KnowledgeIndex, text: str, opts: dict) -> list[dict]:
    f = opts.get("filters", {})
    r = KnowledgeRetriever.from_config(index, KnowledgeConfig(), k=opts.get("k"), mmr=True if opts.get("mmr") else None,
                                       score_threshold=opts.get("threshold"), **f)
    return result_rows(r.invoke(text))


@slow
def test_query_answers_equal_the_in_process_retriever(server, local):
    # Sent together, so the replica embeds several of them in one batch.
    with ThreadPoolExecutor(len(QUERIES)) as pool:
        answers = list(pool.map(lambda q: _post(server.url + "/query", {"text": q[0], **q[1]}), QUERIES))
    for (text, opts), (status, body) in zip(QUERIES, answers):
        assert status == 200, body
        want = _in_process(local, text, opts)
        assert [r["id"] for r in body["results"]] == [r["id"] for r in want], text
        for got, exp in zip(body["results"], want):
            assert got["score"] == pytest.approx(exp["score"], abs=1e-5)
            assert (got["rank"], got["concept_id"], got["codes"], got["text"]) == \
                (exp["rank"], exp["concept_id"], exp["codes"], exp["text"])
        assert body["k"] == opts.get("k", KnowledgeConfig().k) and body["mmr"] == opts.get("mmr", False)


@slow
def test_prompts_equal_the_in_process_chain(server, local):
    client = KnowledgeClient(server.url)
    got = client.prompts(labels=["CLBBB", "AFIB"], ontology="cpsc")
    want = generate_prompts(local, ["CLBBB", "AFIB"], "cpsc")
    assert got["prompts"] == {lab: r.prompt for lab, r in want.items()}
    assert got["provenance"]["model"] == "offline" and got["provenance"]["index"] == "index"
    assert got["provenance"]["labels"]["CLBBB"]["concept_id"] == want["CLBBB"].concept_id
    task = client.prompts(task="icbeb")
    assert task["provenance"]["ontology"] == "cpsc" and len(task["prompts"]) == 9


@slow
def test_health_and_docs(server, local):
    health = KnowledgeClient(server.url).health()
    assert health["status"] == "ok" and health["passages"] > 100
    assert health["vectors_remembered"] == len(set(code_expansions(local)))  # every code expansion, at start-up
    with urllib.request.urlopen(server.url + "/docs", timeout=30) as r:
        assert r.status == 200 and b"swagger" in r.read().lower()
    with urllib.request.urlopen(server.url + "/openapi.json", timeout=30) as r:
        paths = json.loads(r.read())["paths"]
    assert {"/query", "/prompts", "/healthz"} <= set(paths)


@slow
@pytest.mark.parametrize("path, body, status, says", [
    ("/query", {"text": ""}, 422, "text must not be empty"),
    ("/query", {"text": "   "}, 422, "text must not be empty"),
    ("/query", {"text": "QRS", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ("/query", {"text": "QRS", "k": 101}, 422, "k: Input should be less than or equal to 100"),
    ("/query", {"text": "QRS", "filters": {"ontology": "icd10"}}, 422, "filters.ontology"),
    ("/query", {"text": "QRS", "index": "/etc"}, 422, "index: Extra inputs are not permitted"),
    ("/query", {"k": 3}, 422, "text: Field required"),
    ("/query", b"{not json", 422, "JSON"),
    ("/query", {"text": "x" * (MAX_BODY_BYTES + 10)}, 413, "request body over"),
    ("/prompts", {"task": "nope"}, 422, "task: Input should be"),
    ("/prompts", {"labels": ["CLBBB"], "ontology": "icd10"}, 422, "ontology: Input should be"),
    ("/prompts", {"labels": ["NOT_A_LABEL"], "ontology": "cpsc"}, 422, "NOT_A_LABEL"),
    ("/prompts", {"task": "icbeb", "labels": ["CLBBB"]}, 422, "exactly one of labels or task"),
    ("/prompts", {"task": "icbeb", "ontology": "scp"}, 422, "uses ontology 'cpsc'"),
    ("/prompts", {"task": "icbeb", "llm": "openai:gpt-4o-mini"}, 422, "is not allowed here"),
    ("/prompts", {"task": "icbeb", "out": "/tmp/x.json"}, 422, "out: Extra inputs are not permitted"),
    # On the allow-list, but no LLM package is installed here: refused, naming the package.
    ("/prompts", {"labels": ["CLBBB"], "ontology": "cpsc", "llm": "ollama:llama3.1"}, 422, "langchain-ollama"),
])
def test_bad_requests_get_a_one_line_4xx(server, path, body, status, says):
    code, answer = _post(server.url + path, body)
    assert code == status, answer
    assert isinstance(answer["detail"], str) and "\n" not in answer["detail"] and says in answer["detail"], answer


@slow
def test_client_and_cli_use_the_service(server, local):
    from merl.cli import app

    with pytest.raises(KnowledgeServiceError, match="422 .*k: Input should be") as e:
        KnowledgeClient(server.url).query("QRS", k=1000)
    assert e.value.status == 422
    res = CliRunner().invoke(app, ["knowledge", "query", "wide QRS with notched R in V6", "--url", server.url, "-k", "4",
                                   "--filter", "kind=entry", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["results"]
    assert [r["id"] for r in rows] == [r["id"] for r in _in_process(local, "wide QRS with notched R in V6",
                                                                     {"k": 4, "filters": {"kind": "entry"}})]
    res = CliRunner().invoke(app, ["knowledge", "query", "QRS", "--url", server.url, "--index", "x"])
    assert res.exit_code != 0 and "exactly one of --index" in str(res.exception)


@slow
def test_stop_leaves_nothing_running(server):
    import ray

    server.stop()
    with pytest.raises(KnowledgeServiceError, match="cannot reach"):
        KnowledgeClient(server.url, timeout_s=5).health()
    if server.owns_ray:  # it started the embedded cluster, so it ended it
        assert not ray.is_initialized()
    else:  # it joined this session's cluster: only its application went
        from ray import serve

        assert server.serve_cfg.app_name not in serve.status().applications


def test_cli_refuses_bad_input_in_one_line_without_starting_ray(tmp_path):
    import ray

    from merl.cli import app

    ray_before = ray.is_initialized()
    runner = CliRunner()
    assert "--replicas" in runner.invoke(app, ["knowledge", "serve", "--help"]).output
    res = runner.invoke(app, ["knowledge", "serve", "--index", str(tmp_path / "none")])
    assert res.exit_code != 0 and "no knowledge index at" in str(res.exception)
    res = runner.invoke(app, ["knowledge", "serve", "--index", str(tmp_path), "--replicas", "0"])
    assert res.exit_code != 0 and "replicas" in str(res.exception)
    res = runner.invoke(app, ["knowledge", "query", "QRS", "--url", f"http://127.0.0.1:{free_port()}"])
    assert res.exit_code != 0 and "cannot reach the knowledge service" in str(res.exception)
    res = runner.invoke(app, ["knowledge", "query", "QRS", "--url", "file:///etc/passwd"])
    assert res.exit_code != 0 and "must look like http://host:port" in str(res.exception)
    assert ray.is_initialized() == ray_before
