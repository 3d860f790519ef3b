"""A minimal stand-in for `dataclasses` on the hot path.

`import dataclasses` costs ~8 ms (it imports inspect and ast), paid on every
command an agent runs; this covers the subset xguard uses — fields from
annotations, defaults, `field(default_factory=…)`, `frozen=True`, repr,
equality and `asdict` — in a few microseconds of import time. Modules off
the hot path may use dataclasses directly.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_MISSING = object()


class _Field:
    __slots__ = ("default", "factory")

    def __init__(self, default: Any = _MISSING, factory: Callable[[], Any] | None = None) -> None:
        self.default = default
        self.factory = factory


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None) -> Any:
    return _Field(default, default_factory)


if TYPE_CHECKING:
    from typing import dataclass_transform
else:

    def dataclass_transform(**_kw: object) -> Any:  # PEP 681 marker; a no-op at run time
        return lambda f: f


@dataclass_transform(field_specifiers=(field,))
def dataclass(cls: Any = None, *, frozen: bool = False) -> Any:
    def wrap(c: Any) -> Any:
        names: list[str] = []
        specs: dict[str, _Field] = {}
        for klass in reversed(c.__mro__):
            for name in klass.__dict__.get("__annotations__", {}):  # noqa: RUF063 - own annotations only, no inspect import
                if name.startswith("_") and name not in specs:
                    continue  # private names are not fields (a subclass may still redeclare one)
                raw = klass.__dict__.get(name, _MISSING)
                spec = raw if isinstance(raw, _Field) else _Field(raw)
                if name not in specs:
                    names.append(name)
                specs[name] = spec
                if isinstance(raw, _Field):
                    if raw.default is _MISSING:
                        delattr(klass, name) if name in klass.__dict__ else None
                    else:
                        setattr(klass, name, raw.default)
        fields = tuple(names)

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) > len(fields):
                raise TypeError(f"{c.__name__}() takes {len(fields)} positional arguments")
            values = dict(zip(fields, args, strict=False))  # fewer args than fields is normal
            for k, v in kwargs.items():
                if k not in specs:
                    raise TypeError(f"{c.__name__}() got an unexpected keyword argument {k!r}")
                if k in values:
                    raise TypeError(f"{c.__name__}() got multiple values for {k!r}")
                values[k] = v
            for name in fields:
                if name in values:
                    v = values[name]
                else:
                    s = specs[name]
                    if s.factory is not None:
                        v = s.factory()
                    elif s.default is not _MISSING:
                        v = s.default
                    else:
                        raise TypeError(f"{c.__name__}() missing required argument {name!r}")
                object.__setattr__(self, name, v)
            post = getattr(self, "__post_init__", None)
            if post is not None:
                post()

        def __repr__(self: Any) -> str:
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in fields)
            return f"{c.__name__}({inner})"

        def __eq__(self: Any, other: object) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in fields)

        c.__init__ = __init__
        c.__repr__ = __repr__
        c.__eq__ = __eq__
        c.__hash__ = (
            None if not frozen else (lambda self: hash(tuple(getattr(self, n) for n in fields)))
        )
        c.__record_fields__ = fields
        if frozen:

            def __setattr__(self: Any, name: str, value: Any) -> None:
                raise AttributeError(f"{c.__name__} is frozen")

            c.__setattr__ = __setattr__
        return c

    return wrap if cls is None else wrap(cls)


def asdict(obj: Any) -> dict[str, Any]:
    """Fields of a record as a dict (one level, like dataclasses.asdict for flat records)."""
    return {n: getattr(obj, n) for n in obj.__record_fields__}
