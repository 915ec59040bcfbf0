import cache


def test_all_is_sorted_and_names_only_what_exists() -> None:
    assert cache.__all__ == sorted(cache.__all__)
    for name in cache.__all__:
        assert hasattr(cache, name), name


def test_cache_package_imports_no_web_or_orm_framework() -> None:
    import ast
    from pathlib import Path

    forbidden = {"service", "starlette", "sqlalchemy", "pydantic"}
    for path in Path(cache.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.col_offset == 0:
                assert node.module.split(".")[0] not in forbidden, (path.name, node.module)
            if isinstance(node, ast.Import) and node.col_offset == 0:
                for alias in node.names:
                    assert alias.name.split(".")[0] not in forbidden, (path.name, alias.name)
