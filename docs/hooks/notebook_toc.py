"""MkDocs hook: the notebook page's table of contents links its headings.

mkdocs-jupyter builds the table of contents with Python-Markdown's slugs,
which leave out a heading's code spans ("## 2. The layer as the first
layer, with `filters=8`" -> `#2-the-layer-as-the-first-layer-with`), while
the page's headings carry nbconvert's ids, which keep them
(`...-with-filters8`). Each entry that names no id of the page takes the
one heading id that starts with it. mkdocs.yml loads this file (`hooks:`).
"""

import re


def _entries(toc):
    for entry in toc:
        yield entry
        yield from _entries(entry.children)


def on_page_content(html, page, **kwargs):
    if not page.file.src_uri.endswith(".ipynb"):
        return html
    ids = re.findall(r'<h[1-6][^>]*\bid="([^"]+)"', html)
    for entry in _entries(page.toc):
        if entry.id in ids:
            continue
        (match,) = [i for i in ids if i.startswith(entry.id)]
        entry.id = match
    return html
