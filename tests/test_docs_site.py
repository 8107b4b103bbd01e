"""The built site, as a reader sees it (`mkdocs build --strict`, once).

- The API reference gives every entry its anchor and documents every
  argument; Keras sections render as written: one `Returns` row with the
  docstring's text, `Call arguments` and `Raises` tables with the
  docstring's entries, no `2**k` turned bold; `KernelCall` with its fields;
  the docstrings the guides point to are on the site.
- Every public name that a page, the notebook or a reference docstring
  mentions has an anchor in the reference.
- Every figure opens at full size on click; code blocks wrap; the
  notebook page links its `.ipynb`.
"""

import functools
import html as html_module
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import urllib.parse

import keras
import pytest
from test_docs import BLOCK
from test_docs import DOCS
from test_docs import NOTEBOOK
from test_docs import REFERENCE_NAMES
from test_docs import ROOT
from test_docs import expand_snippets
from test_docs import pages

import conv_self_attention

pytestmark = pytest.mark.once

# Modules whose names are not API: the demo job and the argument checks
# (their names, such as `data_format`, are argument names on every page).
NOT_API = ("conv_self_attention.demo", "conv_self_attention.checks",
           "conv_self_attention.layers.config_value")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    directory = tmp_path_factory.mktemp("site")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(directory),
        ],
        cwd=ROOT,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    return directory


@pytest.fixture(scope="module")
def reference(site):
    """The reference pages' HTML, joined."""
    return "\n".join(
        (site / page.stem / "index.html").read_text()
        for page in sorted(DOCS.glob("reference*.md"))
    )


def anchors(html):
    return set(re.findall(r'id="(conv_self_attention[\w.]*)"', html))


def entry(html, dotted):
    """The HTML of `dotted`'s entry, up to the next object's heading."""
    start = html.index(f'id="{dotted}"')
    end = html.find('class="doc doc-heading"', html.index(">", start))
    return html[start : end if end != -1 else len(html)]


def section_rows(entry_html, title):
    """The rows of the table titled `title` in an entry, as cell texts."""
    marker = f'<span class="doc-section-title">{title}:</span>'
    if marker not in entry_html:
        return None
    table = entry_html.split(marker, 1)[1].split("</table>", 1)[0]
    rows = table.split('<tr class="doc-section-item">')[1:]
    return [
        [text(cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in rows
    ]


def text(fragment):
    plain = html_module.unescape(re.sub(r"<[^>]+>", "", fragment))
    return " ".join(plain.split())


def resolve(dotted):
    """The object an anchor names (a module, or a module's attribute)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            obj = inspect.getattr_static(obj, name)
            obj = getattr(obj, "fget", obj)  # a property: its getter
        return obj
    raise LookupError(dotted)


def docstring_block(obj, title):
    """The lines of a Keras docstring section, dedented, or None."""
    lines = (inspect.getdoc(obj) or "").split("\n")
    if f"{title}:" not in lines:
        return None
    block = []
    for line in lines[lines.index(f"{title}:") + 1 :]:
        if line.strip() and not line.startswith(" "):
            break
        block.append(line)
    return inspect.cleandoc("\n".join(block))


def entries_of(block):
    """The names of a block of `name: description` entries."""
    return re.findall(r"^(\*{0,2}\w+):", block, re.M)


def markdown_text(block):
    """The text a Markdown block shows (code spans and emphasis marks gone)."""
    return " ".join(block.replace("`", "").replace("\\", "").split())


def test_reference_has_an_anchor_and_every_argument_per_name(reference):
    for dotted in REFERENCE_NAMES:
        assert f'id="{dotted}"' in reference, dotted
        obj = resolve(dotted)
        # A module or a constant has no arguments; a named tuple's fields
        # are its `Attributes` (test_named_tuples_show_their_fields).
        if not callable(obj) or hasattr(obj, "_fields"):
            continue
        assert documented_parameters(reference, dotted) == (
            accepted_arguments(obj)
        ), dotted
        # The public methods the page shows document theirs too.
        for member in re.findall(
            rf'id="{re.escape(dotted)}\.(\w+)"', reference
        ):
            method = getattr(obj, member)
            if inspect.isfunction(method):
                documented = documented_parameters(
                    reference, f"{dotted}.{member}"
                )
                assert documented == signature_names(method), member


def documented_parameters(html, dotted):
    rows = section_rows(entry(html, dotted), "Parameters") or []
    return {row[0] for row in rows}


def accepted_arguments(obj):
    """The signature's names; for a layer class whose `**kwargs` go to
    `BaseSelfAttention`, also each base argument that constructing the
    class with it accepts (all but those the class fixes, such as
    `rank`)."""
    names = signature_names(obj)
    base = conv_self_attention.BaseSelfAttention
    if not (inspect.isclass(obj) and issubclass(obj, base)) or obj is base:
        return names
    for name, parameter in inspect.signature(base).parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD or name in names:
            continue
        value = 2 if parameter.default is parameter.empty else (
            parameter.default)
        try:
            obj(**{name: value})
        except TypeError:  # "got multiple values for keyword argument"
            continue
        names.add(name)
    return names


def signature_names(obj):
    function = obj.__init__ if inspect.isclass(obj) else obj
    prefix = {
        inspect.Parameter.VAR_POSITIONAL: "*",
        inspect.Parameter.VAR_KEYWORD: "**",
    }
    return {
        prefix.get(parameter.kind, "") + parameter.name
        for parameter in inspect.signature(function).parameters.values()
        if parameter.name != "self"
    }


def test_keras_sections_render_as_written(reference):
    checked = set()
    for dotted in sorted(anchors(reference)):
        obj = resolve(dotted)
        html = entry(reference, dotted)
        returns = docstring_block(obj, "Returns")
        if returns is not None:
            rows = section_rows(html, "Returns")
            assert len(rows) == 1, dotted  # one row per returned value
            assert rows[0][-1] == markdown_text(returns), dotted
            checked.add("Returns")
        for title in ("Call arguments", "Raises"):
            block = docstring_block(obj, title)
            if block is not None:
                rows = section_rows(html, title)
                assert rows is not None, (dotted, title)
                # A subclass's own entries, then its base's (the hook).
                names = [row[0] for row in rows]
                assert names[: len(entries_of(block))] == entries_of(block)
                checked.add(title)
    assert checked == {"Returns", "Call arguments", "Raises"}


def test_powers_of_two_are_not_bold(site, reference):
    for page in site.rglob("*.html"):
        assert not re.search(r"\d<(strong|em)>", page.read_text()), page
    rows = section_rows(
        entry(reference, "conv_self_attention.BaseSelfAttention"),
        "Parameters",
    )
    (chunk_size,) = [row for row in rows if row[0] == "chunk_size"]
    assert "2**21 logits on a CPU, 2**27 on a GPU" in " ".join(chunk_size)


@pytest.mark.parametrize(
    "dotted",
    [
        "conv_self_attention.kernels.KernelCall",
        "conv_self_attention.kernels.device.Device",
        "conv_self_attention.kernels.chunked.BlockPlan",
        "conv_self_attention.diagnostics.QueryPlan",
    ],
)
def test_named_tuples_show_their_fields(reference, dotted):
    rows = section_rows(entry(reference, dotted), "Attributes")
    assert [row[0] for row in rows] == list(resolve(dotted)._fields)
    assert all(row[1] for row in rows), rows  # each with its type


LAYERS = ["SelfAttention1D", "SelfAttention2D", "SelfAttention3D",
          "BaseSelfAttention", "SelfAttention_Conv2D"]


@pytest.mark.parametrize("name", LAYERS)
def test_each_layer_entry_is_complete(reference, name):
    """Like keras.io's: every argument with its type and default, the call
    (training optional), the returned tensors with shapes, the members,
    and the source."""
    html = entry_with_members(reference, f"conv_self_attention.{name}")
    for title in ("Parameters", "Call arguments"):
        rows = section_rows(html, title)
        typed = [row for row in rows if not row[0].startswith("*")]
        assert typed and all(row[1] for row in typed), (title, rows)
    (training,) = [row for row in section_rows(html, "Call arguments")
                   if row[0] == "training"]
    assert training[-1] == "False"
    (returns,) = section_rows(html, "Returns")
    assert "(batch, *spatial, filters)" in returns[-1]
    assert "(batch, num_heads, N, M)" in returns[-1]
    kwargs = [row for row in section_rows(html, "Parameters")
              if row[0] == "**kwargs"]
    assert kwargs and kwargs[0][-1] == ""  # no default, not "required"
    for member in ("last_kernel", "attention_inputs"):
        assert f'id="conv_self_attention.{name}.{member}"' in html
    for method in ("attention_inputs", "key_value_spatial_shape"):
        rows = section_rows(
            entry(html, f"conv_self_attention.{name}.{method}"), "Parameters"
        )
        assert rows and all(row[1] for row in rows), (method, rows)
    assert "Source code in" in html


def entry_with_members(html, dotted):
    """The HTML of `dotted`'s entry and its members' entries."""
    start = html.index(f'id="{dotted}"')
    heading = r'id="(conv_self_attention[\w.]*)" class="doc doc-heading"'
    rest = re.finditer(heading, html[start + 1 :])
    end = next((start + 1 + m.start() for m in rest
                if not m[1].startswith(f"{dotted}.")), len(html))
    return html[start:end]


def test_every_name_in_every_public_all_has_an_entry(reference):
    ids = anchors(reference)
    missing = []
    for module in public_modules():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not any(
                i.endswith(f".{name}") and resolve(i) is obj for i in ids
            ):
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"add to a docs/reference*.md page: {missing}"


def public_modules():
    yield conv_self_attention
    for info in pkgutil.walk_packages(
        conv_self_attention.__path__, "conv_self_attention."
    ):
        if not info.name.startswith(NOT_API) and "._" not in info.name:
            yield importlib.import_module(info.name)


def test_docstrings_the_guides_point_to_are_on_the_site(site, reference):
    # The kernels guide links to the measured times of kernels.auto's
    # module docstring: they are on the reference page, each with the
    # marker naming its results file.
    guide = (DOCS / "guide" / "kernels.md").read_text()
    assert "reference-kernels.md#conv_self_attention.kernels.auto)" in guide
    auto = entry(reference, "conv_self_attention.kernels.auto")
    doc = " ".join(inspect.getdoc(conv_self_attention.kernels.auto).split())
    quoted = re.findall(r"\d+(?:\.\d+)? ms \[from [^\]]+\]", doc)
    assert quoted
    for quote in quoted:
        assert quote in " ".join(text(auto).split()), quote
    # attention_statistics describes its statistics in its module's
    # docstring.
    assert "module's docstring" in inspect.getdoc(
        conv_self_attention.attention_statistics
    )
    module = entry(reference, "conv_self_attention.diagnostics.statistics")
    assert "query_dependence" in module
    # `layer.last_kernel`, documented in the layer's docstring.
    attributes = docstring_block(
        conv_self_attention.BaseSelfAttention, "Attributes"
    )
    (last_kernel,) = [
        entry for entry in re.split(r"\n(?=\w+: )", attributes)
        if entry.startswith("last_kernel: ")
    ]
    # Its description, after the name and the type.
    assert markdown_text(last_kernel).split(", ", 1)[1] in text(reference)


def public_names():
    """Name -> the package's module-level public functions, classes and
    constants, and its classes' own public methods and properties."""
    names = {}
    modules = pkgutil.walk_packages(
        conv_self_attention.__path__, "conv_self_attention."
    )
    for info in modules:
        if info.name.startswith(NOT_API) or "._" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_"):
                continue
            own = getattr(obj, "__module__", None) == info.name
            if name.isupper() or (
                own and (inspect.isclass(obj) or inspect.isfunction(obj))
            ):
                names[name] = obj
            if own and inspect.isclass(obj):
                names.update(own_members(obj))
    return names


def own_members(cls):
    # Keras' own methods (`call`, `build`, ...) are Keras' API, not ours.
    inherited = {*dir(keras.layers.Layer), *dir(keras.callbacks.Callback)}
    return {
        name: member
        for name, member in vars(cls).items()
        if not name.startswith("_")
        and name not in inherited
        and (inspect.isfunction(member) or isinstance(member, property))
    }


def mentioned_identifiers():
    """Identifiers in the code spans and code blocks of every page, of the
    notebook and of every reference docstring, with where they were seen."""
    sources = {
        page: expand_snippets((DOCS / page).read_text()) for page in pages()
    }
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    sources["notebook"] = "\n".join(
        f"```\n{cell.source}\n```" if cell.cell_type == "code" else cell.source
        for cell in notebook.cells
    )
    for dotted in REFERENCE_NAMES:
        sources[dotted] = inspect.getdoc(resolve(dotted)) or ""
    found = {}
    for where, source in sources.items():
        # Python blocks without their comments (shell blocks name commands,
        # not the API), and code spans in the prose.
        code = [
            re.sub(r"#.*", "", block)
            for language, block in BLOCK.findall(source)
            if language in ("python", "")
        ]
        prose = re.sub(r"^```\w*\n.*?^```", "", source, flags=re.M | re.S)
        code += re.findall(r"`([^`\n]+)`", prose)
        for identifier in re.findall(r"[A-Za-z_]\w*", "\n".join(code)):
            found.setdefault(identifier, where)
    return found


def test_every_public_name_mentioned_has_an_anchor(reference):
    names = public_names()
    ids = anchors(reference)
    missing = {
        name: where
        for name, where in mentioned_identifiers().items()
        if name in names and not any(i.endswith(f".{name}") for i in ids)
    }
    assert not missing, f"add these to a docs/reference*.md page: {missing}"
    # The names the guides and the notebook use.
    for name in ("query_index", "plan_query_sample", "sample_query_indices",
                 "plan_blocks", "BlockPlan", "KernelCall", "last_kernel"):
        assert any(i.endswith(f".{name}") for i in ids), name


def test_figures_open_full_size_and_code_wraps(site):
    for page in site.rglob("index.html"):
        content = page.read_text()
        if "md-content" not in content or page.parent.name == "notebook":
            continue
        article = content.split('<article', 1)[1].split("</article>", 1)[0]
        for image in re.findall(r"<img [^>]*>", article):
            if 'src="data:' in image or ".svg" in image:
                continue
            source = re.search(r'src="([^"]+)"', image)[1]
            assert 'class="glightbox"' in article and (
                f'href="{source}"' in article
            ), (page, source)
        assert "stylesheets/extra.css" in content, page
    css = (site / "stylesheets" / "extra.css").read_text()
    rule = css.split(".md-typeset pre > code", 1)[1].split("}", 1)[0]
    assert "white-space: pre-wrap" in rule
    # The notebook's model.summary() table: small type, scrolls if needed.
    rule = css.split(".jp-RenderedHTMLCommon pre", 1)[1].split("}", 1)[0]
    assert "font-size" in rule
    # On a phone a signature scrolls rather than wrap an argument's line
    # to the left edge.
    rule = re.search(r"@media screen and \(max-width: 44\.9375em\) \{\s*"
                     r"\.md-typeset \.doc-signature pre > code \{([^}]*)\}",
                     css)
    assert rule and "white-space: pre;" in rule[1]


# Pages about the project's own procedure, which name repository paths as
# a maintainer in a clone reads them.
MAINTAINER_PAGES = ("development.md", "changelog.md", "source-files.md")


def test_repository_paths_on_user_pages_are_links():
    path = r"`((?:tests|examples|benchmarks|notebooks)/[^`]*)`"
    unlinked = {}
    for page in pages():
        if page in MAINTAINER_PAGES:
            continue
        text = (DOCS / page).read_text()
        prose = re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S)
        bare = [
            match[1]
            for match in re.finditer(path, prose)
            if not (
                prose[: match.start()].endswith("[")
                and prose[match.end() :].startswith("](")
            )
        ]
        if bare:
            unlinked[page] = bare
    assert not unlinked, f"link them (to source-files.md): {unlinked}"


def test_notebook_page_links_its_notebook(site):
    page = (site / "notebook" / "index.html").read_text()
    assert 'href="notebook.ipynb" download' in page
    assert (site / "notebook" / "notebook.ipynb").is_file()


def test_site_has_every_page_and_the_executed_notebook(site):
    for page in pages():
        name = page.removesuffix(".md")
        html = "index.html" if name == "index" else f"{name}/index.html"
        assert (site / html).is_file(), html
    notebook = (site / "notebook" / "index.html").read_text()
    assert "data:image/png;base64" in notebook  # its figures


def test_the_layer_formula_is_math_that_needs_no_script(site):
    page = (site / "guide" / "layer" / "index.html").read_text()
    assert page.count('<math display="block">') == 3
    # Drawn by the browser: no MathJax or KaTeX script, nothing fetched.
    assert not re.search(r"mathjax|katex", page, re.I)


def test_every_internal_link_reaches_its_anchor(site):
    """Every `href` to a page of the site (and its `#anchor`) exists."""
    broken = []
    ids = functools.cache(
        lambda path: set(re.findall(r'\bid="([^"]+)"', path.read_text()))
    )
    # The 404 page links from the site's root, wherever it is served.
    for page in set(site.rglob("*.html")) - {site / "404.html"}:
        for href in re.findall(r'href="([^":]*)"', page.read_text()):
            path, _, anchor = html_module.unescape(href).partition("#")
            target = (page.parent / urllib.parse.unquote(path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append((page.relative_to(site).as_posix(), href))
            elif anchor and urllib.parse.unquote(anchor) not in ids(target):
                broken.append((page.relative_to(site).as_posix(), href))
    assert not broken, broken


def test_pages_fetch_nothing_from_another_host(site):
    """Stylesheets, scripts, images and fonts come with the site (the
    theme's web fonts are off: system fonts)."""
    fetched = re.compile(
        r'<(?:link|script|img|source|iframe)\b[^>]*\b(?:href|src)='
        r'"(?:https?:)?//[^"]*"'
    )
    for page in site.rglob("*.html"):
        text = page.read_text()
        found = [
            tag for tag in fetched.findall(text)
            # <link rel="..."> to another page (not a resource) is a link.
            if not re.search(r'rel="(?:canonical|alternate|license)"', tag)
        ]
        assert not found, (page, found)
    for css in site.rglob("*.css"):
        assert not re.search(r"url\(['\"]?(?:https?:)?//", css.read_text()), css



def test_every_page_names_the_version_it_documents(site):
    version = f"conv-self-attention {conv_self_attention.__version__}"
    # Changes after the version's changelog section are documented too:
    # the footer says so until they become a version of their own.
    changelog = (ROOT / "CHANGELOG.md").read_text()
    first = re.search(r"^## (.+)$", changelog, re.M)[1]
    since = " and the changes since" if first == "Unreleased" else ""
    for page in site.rglob("index.html"):
        footer = page.read_text().split('class="md-copyright"', 1)[1]
        assert f"Documentation of {version}{since}" in footer, page
        if not since:
            assert " and the changes since" not in footer, page


def test_every_argument_and_attribute_has_a_type(reference):
    untyped = [
        (dotted, title, row[0])
        for dotted in sorted(anchors(reference))
        for title in ("Parameters", "Call arguments", "Attributes")
        for row in section_rows(entry(reference, dotted), title) or []
        if not row[1] and not row[0].startswith("*")
    ]
    assert not untyped, untyped


@pytest.mark.parametrize(
    "dotted, base",
    [
        ("conv_self_attention.BaseSelfAttention", "keras.layers.Layer"),
        ("conv_self_attention.AttentionMonitor", "keras.callbacks.Callback"),
    ],
)
def test_keras_bases_link_to_keras_io(reference, dotted, base):
    bases = entry(reference, dotted).split("Bases:", 1)[1].split("</p>")[0]
    assert re.search(rf'<a href="https://keras\.io/[^"]+"[^>]*>{base}</a>',
                     bases), bases


def test_no_doctest_directive_shows(site):
    for page in site.rglob("*.html"):
        assert "doctest:" not in page.read_text(), page

