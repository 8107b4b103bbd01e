"""Read-only constructor arguments, as Keras keeps a layer's config."""


_SAME = object()


class ConfigValue:
    """A constructor argument stored once and read through a property.

    Declared on the class (`num_heads = ConfigValue()`), set in `__init__`
    with `self._num_heads = ...` and read as `layer.num_heads`. Assigning
    `layer.num_heads = 4` later raises `AttributeError`: the sublayers and
    weights were built for the old value, so the layer would break
    silently. `config_of` lists the declared values for `get_config`.

    Args:
        config_key: the key in `get_config`, `None` for a value that is not
            in the config. Defaults to the attribute's name.
        serialize: turns the value into its config form (e.g.
            `keras.activations.serialize`). Defaults to the value itself.
    """

    def __init__(self, config_key=_SAME, serialize=None):
        self.config_key = config_key
        self.serialize = serialize or (lambda value: value)

    def __set_name__(self, owner, name):
        self.name = name
        self.stored_as = "_" + name
        if self.config_key is _SAME:
            self.config_key = name

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


def config_of(layer):
    """`{config_key: serialized value}` of every `ConfigValue` declared on
    the layer's class and its bases, in declaration order."""
    config = {}
    for cls in reversed(type(layer).__mro__):
        for value in vars(cls).values():
            if isinstance(value, ConfigValue) and value.config_key:
                config[value.config_key] = value.serialize(
                    getattr(layer, value.name)
                )
    return config


class ConfigFromValues:
    """`get_config` and `from_config` of a layer whose constructor
    arguments are `ConfigValue`s (a mixin, before `keras.layers.Layer`)."""

    def get_config(self):
        return {**super().get_config(), **config_of(self)}

    @classmethod
    def from_config(cls, config):
        # Keras' own `from_config` (its dtype-policy handling included)
        # wraps every constructor error in a generic `TypeError`; a bad
        # value in a saved config should raise the package's `ValueError`,
        # which names the argument.
        try:
            return super().from_config(config)
        except TypeError as error:
            # Keras raises it while handling ours: `__context__`.
            if isinstance(error.__context__, ValueError):
                raise error.__context__ from None
            raise
