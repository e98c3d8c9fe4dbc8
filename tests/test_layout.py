"""The README's map of the package is the package: no module missing, none invented."""

from __future__ import annotations

from tests import layout


def test_the_readme_layout_is_generated_from_the_tree() -> None:
    readme = (layout.ROOT / "README.md").read_text(encoding="utf-8")
    shown = layout.current(readme)
    assert shown is not None, "README.md lost its layout section"
    assert shown == layout.section(), "the layout changed: run `make layout`"


def test_every_module_has_a_row() -> None:
    generated = layout.table()
    for module in layout.PACKAGE.rglob("*.py"):
        if "__pycache__" not in module.parts and module.name != "__init__.py":
            assert f"| `{module.name}` |" in generated, module
