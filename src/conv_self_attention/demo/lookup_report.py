"""The lookup task's tables, for the summary, the page and the docs.

The docs show the tables of a committed `metrics.json` made with
`markdown_tables` (the digits' with `report.digits_markdown_tables`),
and a test checks that they still match it.
"""

from conv_self_attention.demo.intervals import difference
from conv_self_attention.demo.intervals import mean_std


def lookup_tables(lookup):
    """`[(title, header, rows)]` of the `lookup` part of `metrics.json`."""
    arms = lookup["arms"]
    budget = lookup["budget"]
    attention = arms["attention"]["accuracy"]
    rows = [[entry["description"], f"{entry['parameters']:,}",
             mean_std(entry["accuracy"], 3),
             "" if name == "attention"
             else difference(attention, entry["accuracy"], 3)]
            for name, entry in arms.items()]
    title = (f"Lookup task ({lookup['map_size']}x{lookup['map_size']} maps, "
             f"{budget['train_examples']} training maps, {budget['epochs']} "
             f"epochs, seeds {lookup['seeds']}): held-out blob-pixel "
             "accuracy (chance about 1/3), mean ± s.d.")
    tables = [(title, ["network", "parameters", "accuracy",
                       "SelfAttention2D minus this (95% interval)"], rows)]
    ablation = arms["attention"]["ablation"]
    tables.append((
        "Lookup task, SelfAttention2D ablated (gamma set to 0) on the "
        "held-out maps, per seed",
        ["seed", "accuracy", "accuracy without the layer",
         "output change"],
        [[str(entry["seed"]), f"{entry['accuracy']:.3f}",
          f"{entry['accuracy_without_layer']:.3f}",
          f"{entry['output_change']:.3f}"] for entry in ablation],
    ))
    return tables


def markdown_tables(lookup):
    """The tables of `lookup_tables` as Markdown, for the docs."""
    return as_markdown(lookup_tables(lookup))


def as_markdown(tables):
    """`[(title, header, rows)]` tables as Markdown, each under its bold
    title."""
    blocks = []
    for title, header, rows in tables:
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
