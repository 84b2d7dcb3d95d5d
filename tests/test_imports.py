"""Stages import each other one way: later stages may use earlier ones, never the reverse."""

from __future__ import annotations

import ast

from maskbnn.paths import REPO_ROOT

# (importer prefix, forbidden import prefix)
FORBIDDEN = [
    ("maskbnn.pipeline.release.bitstream", "maskbnn.pipeline.release.deploy"),
    ("maskbnn.pipeline.release.deploy", "maskbnn.pipeline.release.bitstream"),
    ("maskbnn.pipeline.rtlsim", "maskbnn.pipeline.release"),
    ("maskbnn.pipeline.finn", "maskbnn.pipeline.release.bitstream"),
    ("maskbnn.pipeline.finn", "maskbnn.pipeline.release"),
    ("maskbnn.pipeline.verify", "maskbnn.pipeline.release"),
]


def _imports() -> dict[str, set[str]]:
    out = {}
    for path in sorted((REPO_ROOT / "pipeline").rglob("*.py")):
        name = "maskbnn." + ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):  # function-local imports included
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        out[name] = found
    return out


def test_no_stage_imports_a_later_one():
    bad = [
        f"{mod} imports {imp}"
        for mod, imports in _imports().items()
        for src, dst in FORBIDDEN
        if mod.startswith(src)
        for imp in imports
        if imp.startswith(dst)
    ]
    assert not bad, bad
