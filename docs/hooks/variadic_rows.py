"""MkDocs hook: `*args` and `**kwargs` rows of the reference show no
default.

mkdocstrings writes "required" in the Default cell of a parameter without
a default, which `**kwargs` is not (nothing has to be passed). Their
Default cell is left empty instead (on a phone, where each row is a block,
it is not shown). mkdocs.yml loads this file (`hooks:`).
"""

import re

ROW = re.compile(
    r'(<tr class="doc-section-item">\s*<td>\s*<code>\*{1,2}\w+</code>'
    r"(?:(?!</tr>).)*?)<td>\s*<em>required</em>\s*</td>(\s*</tr>)",
    re.S,
)


def on_post_page(html, **kwargs):
    return ROW.sub(r"\1<td></td>\2", html)
