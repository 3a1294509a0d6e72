"""The manual stays true to the code: every environment variable the code reads is documented, and the
README leads to every page of docs/."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# env_str("NAME", ...), env_int(...), os.environ.get("NAME"), a local `env = os.environ.get` alias.
READ = re.compile(r"""\b(?:env_(?:str|int|bool|list|secret)|environ\.get|env)\(\s*["']([A-Z][A-Z0-9_]+)["']""")


def _variables(paths) -> set[str]:
    return {name for path in paths for name in READ.findall(path.read_text())}


def _product_sources():
    for app in ("accounts", "billing", "inference", "ratelimits", "sogni_platform"):
        yield from (ROOT / app).rglob("*.py")


def test_the_readme_settings_list_every_variable_the_platform_reads():
    variables = _variables(_product_sources()) - {"DJANGO_SETTINGS_MODULE"}
    assert {"DATABASE_URL", "API_KEY_CACHE_SECONDS", "LOCAL_WORKER_EMAIL", "PORT"} <= variables  # the scan works
    readme = (ROOT / "README.md").read_text()
    assert sorted(name for name in variables if f"| `{name}` |" not in readme) == []


def test_the_workers_page_lists_every_variable_the_worker_reads():
    variables = _variables((ROOT / "worker" / "sogni_worker").rglob("*.py"))
    assert {"SOGNI_API_KEY", "SOGNI_MODELS"} <= variables
    page = (ROOT / "docs" / "workers.md").read_text()
    assert sorted(name for name in variables if f"`{name}`" not in page) == []


def test_the_readme_is_short_and_leads_to_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 400
    linked = set(re.findall(r"\]\((docs/[^)]+\.md)\)", readme))
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md") if not page.name.startswith("pending-")}
    assert linked == pages
