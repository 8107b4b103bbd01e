"""Griffe extension: Keras docstring sections rendered as written.

- `Call arguments:`, the arguments of `call`, is a title the Google parser
  does not know: it would keep the section as one paragraph. It is parsed
  the way `Args:` is and shown as a table titled "Call arguments:".
- `Returns:` in a Keras docstring is one description without a type, which
  may span lines and hold colons. The Google parser would read the text
  before a first-line colon as a type; the section becomes that one
  description instead.
- Types are written as Keras writes them, at the start of a description:
  `num_heads: int, number of attention heads.` The type (the words before
  the first comma: type names, joined by "or"/"of") fills the Type column
  of the `Args`, `Call arguments` and `Attributes` tables.
- A thin subclass whose `__init__` passes `**kwargs` on to its base (the
  1D/2D/3D layers) shows the base's arguments on its own entry: its
  signature and `Args` are its own arguments followed by the base's (less
  those its `super().__init__` call fixes, such as `rank`), and the base's
  `Call arguments`, `Returns`, `Attributes`, `Raises` and `Reference` are
  added where the subclass has none.
- `**kwargs` shows no default (the inspection's `{}` is not one).

The docstrings themselves stay in the Keras style. mkdocs.yml loads this
file (`extensions:` of the mkdocstrings handler).
"""

import ast
import re
import textwrap

import griffe

CALL_ARGUMENTS = "Call arguments"
_KIND = griffe.DocstringSectionKind
_VARIADIC = (griffe.ParameterKind.var_positional,
             griffe.ParameterKind.var_keyword)
_TYPE_WORD = r"[A-Za-z_][\w.]*(?:\[[^\]]*\])?"
_KERAS_TYPE = re.compile(
    rf"({_TYPE_WORD}(?: (?:or|of) {_TYPE_WORD})*),\s+(.+)", re.S
)


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


def _with_types(section):
    """A section of names whose `int, ...` descriptions give the type."""
    for item in section.value:
        match = _KERAS_TYPE.fullmatch(item.description)
        if item.annotation is None and match:
            item.annotation, item.description = match.groups()
    return section


def _merged(own, base, fixed):
    """`own` sections with the base's arguments and the sections it lacks.

    Arguments and raises are joined (the subclass's first, its `**kwargs`
    entry replaced by the base's entries); the base's other sections that
    the subclass lacks follow its `Args`, admonitions (`Reference`) last.
    Where both have one, the subclass's section wins."""
    keys = {(s.kind, s.title): s for s in own}
    added, last = [], []
    for section in base:
        mine = keys.get((section.kind, section.title))
        if section.kind in (_KIND.text, _KIND.examples):
            continue
        if mine is None:
            admonition = section.kind is _KIND.admonition
            (last if admonition else added).append(section)
        elif section.kind is _KIND.raises:
            mine.value = mine.value + section.value
        elif section.kind is _KIND.parameters:
            kept = [i for i in mine.value if not i.name.startswith("*")]
            named = {i.name for i in kept} | fixed
            mine.value = kept + [i for i in section.value
                                 if i.name not in named]
    args = [i for i, s in enumerate(own) if s.kind is _KIND.parameters]
    at = args[0] + 1 if args else len(own)
    return [*own[:at], *added, *own[at:], *last]


def _call_defaults(section, cls):
    """The `Call arguments` rows with the defaults of `cls.call`."""
    call = cls.members.get("call") if cls.is_class else None
    if call is not None and call.is_function:
        defaults = {p.name: p.default for p in call.parameters}
        for item in section.value:
            item.value = defaults.get(item.name)
    return section


class _KerasDocstring(griffe.Docstring):
    # Set by `KerasSections.on_package` on a thin subclass's docstring:
    # (the base class's docstring, the base arguments it fixes).
    base = None

    def parse(self, parser=None, **options):
        sections = []
        for section in super().parse(parser, **options):
            if (
                isinstance(section, griffe.DocstringSectionAdmonition)
                and section.title == CALL_ARGUMENTS
            ):
                section = _call_defaults(_call_arguments(section),
                                         self.parent)
            elif isinstance(section, griffe.DocstringSectionReturns):
                section = _returns(self)
            if section.kind in (_KIND.parameters, _KIND.attributes):
                section = _with_types(section)
            sections.append(section)
        if self.base is not None:
            docstring, fixed = self.base
            sections = _merged(sections, docstring.parse(parser, **options),
                               fixed)
        return sections


def _fixed_arguments(init):
    """The keywords `init` passes to `super().__init__` as constants."""
    tree = ast.parse(textwrap.dedent(init.source))
    return {
        keyword.arg
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "__init__"
        for keyword in node.keywords
        if isinstance(keyword.value, ast.Constant)
    }


def _classes(module):
    for member in module.members.values():
        if member.is_alias:
            continue
        if member.is_module:
            yield from _classes(member)
        elif member.is_class:
            yield member


def _inherit_arguments(cls, done):
    """Gives a thin subclass the arguments its `**kwargs` passes on."""
    if cls.path in done:
        return
    done.add(cls.path)
    init = cls.members.get("__init__")
    bases = [b for b in cls.resolved_bases if isinstance(b, griffe.Class)]
    if init is None or not bases or "__init__" not in bases[0].members:
        return
    if not any(p.kind is griffe.ParameterKind.var_keyword
               for p in init.parameters):
        return
    base = bases[0]
    _inherit_arguments(base, done)
    fixed = _fixed_arguments(init)
    own = [p for p in init.parameters if p.kind not in _VARIADIC]
    named = {p.name for p in own} | fixed | {"self"}
    init.parameters = griffe.Parameters(
        *own,
        *(p for p in base.members["__init__"].parameters
          if p.name not in named),
    )
    if cls.docstring is not None and base.docstring is not None:
        cls.docstring.base = (base.docstring, fixed)


class KerasSections(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        # The handler renders `docstring.parsed`, which calls `parse` with
        # the options of mkdocs.yml: a subclass that post-processes its
        # sections keeps those options and griffe's own parsing.
        if obj.docstring is not None:
            obj.docstring.__class__ = _KerasDocstring
        if obj.is_function:
            for parameter in obj.parameters:
                if parameter.kind in _VARIADIC:
                    parameter.default = None

    def on_package(self, *, pkg, **kwargs):
        done = set()
        for cls in _classes(pkg):
            _inherit_arguments(cls, done)
