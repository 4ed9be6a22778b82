"""The product carries its own documentation: every document a tracked file names exists in the repository.

Users never see the project's guidance folder, so a comment, docstring, error message or page that cites a
document (by file name, by a name and a section, or by a path with an anchor) must point at a file (and heading)
shipped here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: a path ending in .md (bare name, relative or docs/ path), optionally followed by #anchor
MD_REF = re.compile(r"(?<![\w/.:-])((?:\.{1,2}/|[\w-]+/)*[\w.-]*\w\.md)(?:#([\w-]+))?(?![\w])")
#: the guidance documents' names cited by section without the extension ("CANONICAL §3")
GUIDE_REF = re.compile(r"\b(CANONICAL|DESIGN|STYLE|ZOHO|FXIAOKE|COREBANK|OBJECTS)(\.md| §)")
#: a document cited by section: "docs/canonical.md §3", "[docs/canonical.md §5](...)", "`docs/zoho.md` §2.1"
SECTION_REF = re.compile(r"([\w./-]+\.md)`?\]?,? §(\d+(?:\.\d+)*)")
SKIP_SUFFIXES = (".png", ".jpg", ".whl", ".gz", ".zip", ".sqlite", ".db", ".ico", ".pdf")


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / p for p in out.split("\0") if p and not p.endswith(SKIP_SUFFIXES)]


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (word characters, spaces and '-' kept)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            found.add(s if n == 0 else f"{s}-{n}")
    for m in re.finditer(r'<a (?:name|id)="([^"]+)"', md.read_text(encoding="utf-8")):
        found.add(m.group(1))
    return found


def sections(md: Path) -> set[str]:
    """Section numbers of a page's headings ("## 3. Data classes…" → "3", "### 2.1 Refresh…" → "2.1")."""
    found = set()
    for line in md.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#{1,6}\s+(\d+(?:\.\d+)*)[.\s]", line)
        if m:
            found.add(m.group(1))
    return found


def resolve(src: Path, ref: str) -> Path | None:
    """The file ``ref`` names, relative to the citing file's folder or to the repository root."""
    if ref.startswith("crmbridge/"):  # the repository root is the package crmbridge
        ref = ref[len("crmbridge/"):]
    for base in (src.parent, REPO):
        cand = (base / ref).resolve()
        if cand.is_file() and REPO in cand.parents:
            return cand
    return None


def broken_references(files: list[Path] | None = None) -> list[str]:
    """Every reference to a missing document, heading or section in ``files`` (default: every tracked file)."""
    problems: list[str] = []
    this = Path(__file__).resolve()   # its patterns and examples are not citations
    for path in tracked_files() if files is None else files:
        if path.resolve() == this or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(REPO) if REPO in path.resolve().parents else path
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in GUIDE_REF.finditer(line):
                name = m.group(1) + ".md"
                if m.group(2) == ".md" and resolve(path, line[:m.end()].split()[-1].strip("`'\"([")) is not None:
                    continue  # the name is a path to a page that does exist here
                if resolve(path, name) is None:
                    problems.append(f"{rel}:{lineno}: cites {m.group(0).strip()!r}, not a document in this repository")
            for m in MD_REF.finditer(line):
                ref, anchor = m.group(1), m.group(2)
                if "://" in line[max(0, m.start() - 80):m.start()] and re.search(r"https?://\S*$", line[:m.start()]):
                    continue  # part of a URL: another site's page
                target = resolve(path, ref)
                if target is None:
                    problems.append(f"{rel}:{lineno}: names {ref!r}, which does not exist in this repository")
                elif anchor and anchor not in anchors(target):
                    problems.append(f"{rel}:{lineno}: {ref}#{anchor}: no such heading in {target.relative_to(REPO)}")
            for m in SECTION_REF.finditer(line):
                target = resolve(path, m.group(1))
                if target is not None and m.group(2) not in sections(target):
                    problems.append(f"{rel}:{lineno}: {m.group(1)} §{m.group(2)}: no such section in "
                                    f"{target.relative_to(REPO)}")
    return problems


def test_every_cited_document_exists() -> None:
    problems = broken_references()
    assert not problems, f"{len(problems)} reference(s) to missing documents:\n" + "\n".join(problems)


def test_slug_matches_github() -> None:
    assert slug("3. Data classes and what a CRM receives") == "3-data-classes-and-what-a-crm-receives"
    assert slug("`crmbridge doctor`: checks") == "crmbridge-doctor-checks"


def test_checker_catches_a_missing_document(tmp_path: Path) -> None:
    # the broken references are assembled at run time, so this file itself cites nothing that is missing
    guide, missing = "FXIAOKE", "docs/nowhere"
    page = tmp_path / "page.txt"
    page.write_text(f"refused (CANONICAL §3); see {guide}.md and [x]({missing}.md#part);\n"
                    f"see docs/canonical.md §3.1 and [ok](docs/canonical.md#3-data-classes-and-what-a-crm-receives)\n",
                    encoding="utf-8")
    problems = broken_references([page])
    assert len(problems) == 5, problems   # the guide file is caught by name and as a missing path
    assert any("CANONICAL §" in p for p in problems) and any(f"{guide}.md" in p for p in problems)
    assert any(f"{missing}.md" in p for p in problems) and any("§3.1: no such section" in p for p in problems)
    assert resolve(REPO / "README.md", "docs/canonical.md") is not None
    assert "3" in sections(REPO / "docs" / "canonical.md") and "2.1" in sections(REPO / "docs" / "vendors" / "zoho.md")
