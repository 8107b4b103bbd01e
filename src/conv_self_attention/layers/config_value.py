"""Read-only constructor arguments, as Keras keeps a layer's config."""


class ConfigValue:
    """A constructor argument stored once and read through a property.

    Declared on the class (`num_heads = ConfigValue()`), set in `__init__`
    with `self._num_heads = ...` and read as `layer.num_heads`. Assigning
    `layer.num_heads = 4` later raises `AttributeError`: the sublayers and
    weights were built for the old value, so the layer would break
    silently.
    """

    def __set_name__(self, owner, name):
        self.name = name
        self.stored_as = "_" + name

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        return getattr(layer, self.stored_as)

    def __set__(self, layer, value):
        raise AttributeError(
            f"`{self.name}` of `{type(layer).__name__}` is a constructor "
            "argument and cannot be changed after construction. Create a "
            "new layer instead, e.g. `type(layer).from_config({**layer."
            f"get_config(), {self.name!r}: ...}})`."
        )
