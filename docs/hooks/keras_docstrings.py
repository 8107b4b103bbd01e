"""Griffe extension: Keras docstring sections rendered as written.

- `Call arguments:`, the arguments of `call`, is a title the Google parser
  does not know: it would keep the section as one paragraph. It is parsed
  the way `Args:` is and shown as a table titled "Call arguments:".
- `Returns:` in a Keras docstring is one description without a type, which
  may span lines and hold colons. The Google parser would read the text
  before a first-line colon as a type; the section becomes that one
  description instead.

The docstrings themselves stay in the Keras style. mkdocs.yml loads this
file (`extensions:` of the mkdocstrings handler).
"""

import textwrap

import griffe

CALL_ARGUMENTS = "Call arguments"


def _call_arguments(section):
    """The parameters of an admonition's text, parsed as an `Args:` block."""
    lines = section.value.contents.split("\n")
    indented = "\n".join("    " + line if line else line for line in lines)
    # A docstring without a parent: the arguments of `call` are not the
    # signature the parser would check them against. (The first line of a
    # docstring is its summary, never a section.)
    text = f"{CALL_ARGUMENTS}.\n\nArgs:\n{indented}"
    _, parameters = griffe.Docstring(text).parse(
        "google", warn_missing_types=False
    )
    return griffe.DocstringSectionParameters(
        parameters.value, title=f"{CALL_ARGUMENTS}:"
    )


def _returns(docstring):
    """The `Returns:` block of the docstring's text, as one description."""
    lines = docstring.value.split("\n")
    body = []
    for line in lines[lines.index("Returns:") + 1 :]:
        if line.strip() and not line.startswith(" "):
            break
        body.append(line)
    description = textwrap.dedent("\n".join(body)).strip()
    return griffe.DocstringSectionReturns(
        [griffe.DocstringReturn(name="", description=description)]
    )


class _KerasDocstring(griffe.Docstring):
    def parse(self, parser=None, **options):
        sections = []
        for section in super().parse(parser, **options):
            if (
                isinstance(section, griffe.DocstringSectionAdmonition)
                and section.title == CALL_ARGUMENTS
            ):
                section = _call_arguments(section)
            elif isinstance(section, griffe.DocstringSectionReturns):
                section = _returns(self)
            sections.append(section)
        return sections


class KerasSections(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        # The handler renders `docstring.parsed`, which calls `parse` with
        # the options of mkdocs.yml: a subclass that post-processes its
        # sections keeps those options and griffe's own parsing.
        if obj.docstring is not None:
            obj.docstring.__class__ = _KerasDocstring
