"""The API reference stands alone: README.md, docs/*.md, the protos (whose comments become the
OpenAPI document), the OpenAPI document itself and its page cite nothing a user cannot read.

No pointer at the product contract, the platform notes, the style guide or the seed API
documents kept outside the repository, no path that leaves it, no bare "§N" (only RFC 6749's
sections), and the API reference pages cite no issue: they state the behaviour instead.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path

import google.api.annotations_pb2 as google_annotations
import pytest
from grpc_tools import protoc

from edgestats_stack.openapi import build_openapi

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
DOCS = REPO / "docs"

# Pointers at files users do not have.
OUTSIDE = [
    re.compile(r"CONTRACT"),
    re.compile(r"PLATFORM-NOTES"),
    re.compile(r"STYLE\.md"),
    re.compile(r"\bseed 0", re.IGNORECASE),
    re.compile(r"\bseeds/", re.IGNORECASE),
    re.compile(r"\bthe seed\b|\bseed's\b", re.IGNORECASE),
    re.compile(r"\.\./"),  # a relative link or path out of the repository (or out of docs/)
    re.compile(r"/work/"),
    re.compile(r"(?<!6749 )§"),  # "§9 detail list": a section of a document users lack
]
ISSUE = re.compile(r"\bissues? #\d+", re.IGNORECASE)
# The pages that document the API (history pages such as performance.md may cite issues).
API_REFERENCE_DOCS = [
    "legacy-api.md", "v1-metrics.md", "sql-query.md", "usage-ingestion.md", "usage-stats.md",
    "ingestion.md",
]  # fmt: skip
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _user_texts() -> dict[str, str]:
    files = [REPO / "README.md", *sorted(DOCS.glob("*.md")), *sorted(PROTOS.rglob("*.proto"))]
    files.append(REPO / "gateway" / "docs" / "index.html")
    return {str(f.relative_to(REPO)): f.read_text(encoding="utf-8") for f in files}


@pytest.fixture(scope="module")
def openapi_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The OpenAPI document as scripts/gen_protos.sh writes it, from the repository's protos."""
    out = tmp_path_factory.mktemp("protos") / "edgestats.binpb"
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    googleapis = Path(google_annotations.__file__).parents[2]
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    args = ["protoc", f"-I{PROTOS}", f"-I{well_known}", f"-I{googleapis}"]
    args += ["--include_imports", "--include_source_info", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, *sources]) == 0, "protoc failed"
    return json.dumps(build_openapi(out.read_bytes()), indent=1, ensure_ascii=False)


def _offences(text: str, patterns: list[re.Pattern[str]]) -> list[str]:
    found = []
    for pattern in patterns:
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.end())
            context = text[start:] if end < 0 else text[start:end]
            found.append(f"line {line}: {context.strip()[:160]}")
    return found


def test_the_scanned_files_exist() -> None:
    texts = _user_texts()
    assert "README.md" in texts and "docs/v1-metrics.md" in texts
    assert "protos/edgestats/metrics/v1/legacy_stats_json_service.proto" in texts
    assert all(f"docs/{name}" in texts for name in API_REFERENCE_DOCS)


@pytest.mark.parametrize("name", sorted(_user_texts()))
def test_docs_and_protos_point_at_nothing_outside(name: str) -> None:
    assert _offences(_user_texts()[name], OUTSIDE) == [], name


def test_openapi_points_at_nothing_outside(openapi_text: str) -> None:
    assert "LegacyStatsService" in openapi_text  # the document was built
    assert _offences(openapi_text, OUTSIDE) == []


def test_api_reference_cites_no_issue(openapi_text: str) -> None:
    texts = _user_texts()
    pages = [f"docs/{name}" for name in API_REFERENCE_DOCS]
    pages += [name for name in texts if name.endswith(".proto")]
    offences = {name: _offences(texts[name], [ISSUE]) for name in pages}
    offences["openapi"] = _offences(openapi_text, [ISSUE])
    assert {name: found for name, found in offences.items() if found} == {}


def test_relative_links_stay_in_the_repository() -> None:
    broken = []
    for name, text in _user_texts().items():
        if not name.endswith(".md"):
            continue
        for target in MARKDOWN_LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor of the same page
            path = ((REPO / name).parent / target.split("#", 1)[0]).resolve()
            if not path.is_relative_to(REPO) or not path.exists():
                broken.append(f"{name}: {target}")
    assert broken == []


@pytest.mark.parametrize(
    "text",
    [
        "see ../shared/CONTRACT.md", "as in seed 000", "the seed's example 4",
        "PLATFORM-NOTES §9", "the §9 detail list", "STYLE.md", "in ../shared/seeds/",
    ],
)  # fmt: skip
def test_the_patterns_catch_pointers(text: str) -> None:
    assert _offences(text, OUTSIDE)


def test_the_patterns_allow_rfc_sections_and_plain_words() -> None:
    allowed = "RFC 6749 §5.2; a random seed; docs/v1-metrics.md, Formulas; `…/last_point`"
    assert _offences(allowed, OUTSIDE) == []
