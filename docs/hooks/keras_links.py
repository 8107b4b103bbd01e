"""MkDocs hook: Keras base classes on the reference link to keras.io.

mkdocstrings links names it has an inventory for; Keras publishes none, so
a base class such as `keras.layers.Layer` would show as plain text. The
Keras classes the package's classes extend get a link to their keras.io
page instead. mkdocs.yml loads this file (`hooks:`).
"""

KERAS_PAGES = {
    "keras.layers.Layer": "https://keras.io/api/layers/base_layer/",
    "keras.callbacks.Callback": "https://keras.io/api/callbacks/base_callback/",
}


# After autorefs has turned unresolved names into plain titles.
def on_post_page(html, **kwargs):
    for name, url in KERAS_PAGES.items():
        short = name.rsplit(".", 1)[1]
        html = html.replace(
            f'<span title="{name}">{short}</span>',
            f'<a href="{url}" title="{name}">{name}</a>',
        )
    return html
