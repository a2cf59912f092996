"""Typed views of a store: :class:`StoreModel`, :func:`store_as` and :func:`store_from_events_as`.

A :class:`StoreModel` is a pydantic model whose fields live in a
:class:`~corral._state._store.Store` rather than on the object. Field ``x`` of
``class Plan(StoreModel)`` is the store key ``"Plan:x"`` (``"Plan:<instance>:x"``
for a named instance), so every model object over the same store and instance
sees the same state, and the state is recorded in the transcript like any
other store value.

Reads coerce the stored (possibly raw JSON) value into the field's type and
put the coerced object back into the store, so in-place mutation
(``plan.steps.append(step)``) persists and later reads return the same object.
Which stored objects are already coerced is remembered per store, so a read
after the first costs a dictionary look-up rather than a validation.

This module deliberately avoids ``from __future__ import annotations``: the
model's own annotations are real objects, so pydantic never has to resolve
them by name in whatever module the class is re-exported from.
"""

import weakref
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ._events import Event
from ._store import Store, check_jsonable, store

__all__ = ["StoreModel", "store_as", "store_from_events_as"]

SM = TypeVar("SM", bound="StoreModel")

#: The fields every StoreModel has and that are never written to the store.
_OWN_FIELDS = frozenset({"store", "instance"})

#: Validation context that makes ``model_post_init`` leave the store alone.
_VALIDATE_ONLY = "corral.store_model.validate_only"

#: Per store (by ``id``, dropped when the store dies): key -> (model class,
#: object) for stored objects already coerced into that class's field type.
_coerced: dict[int, dict[str, tuple[type[BaseModel], Any]]] = {}
_NOTHING_COERCED: dict[str, tuple[type[BaseModel], Any]] = {}


def _coerced_in(target: Store) -> dict[str, tuple[type[BaseModel], Any]]:
    cache = _coerced.get(id(target))
    if cache is None:
        cache = _coerced[id(target)] = {}
        weakref.finalize(target, _coerced.pop, id(target), None)
    return cache


def _coerce(adapter: TypeAdapter[Any], raw: Any) -> Any:
    """*raw* validated by *adapter*; *raw* itself if that fails or changes nothing."""
    try:
        value = adapter.validate_python(raw)
    except Exception:
        return raw
    if value is raw or (type(value) is type(raw) and value == raw):
        return raw
    return value


def _contains_store_model(value: object) -> bool:
    if isinstance(value, StoreModel):
        return True
    if isinstance(value, dict):
        return any(_contains_store_model(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_contains_store_model(v) for v in value)
    return False


def _reject_store_model(cls: type[BaseModel], name: str, value: object) -> None:
    if _contains_store_model(value):
        raise TypeError(
            f"{cls.__name__}.{name} is a StoreModel and you may not embed a StoreModel "
            "inside another StoreModel (derive from BaseModel for fields in a StoreModel)."
        )


def _input_key(cls: type[BaseModel], name: str) -> str:
    """The key ``model_validate`` accepts for field *name* (its alias, if it has one)."""
    info = cls.model_fields[name]
    if cls.model_config.get("populate_by_name") or cls.model_config.get("validate_by_name"):
        return name
    alias = info.validation_alias
    return alias if isinstance(alias, str) else (info.alias or name)


def _frozen_error(cls: type[BaseModel], name: str, value: object, kind: str) -> ValidationError:
    return ValidationError.from_exception_data(
        cls.__name__, [{"type": kind, "loc": (name,), "input": value}]
    )


class StoreModel(BaseModel):
    """A pydantic model whose fields are kept in a :class:`Store`.

    Field ``x`` is stored under ``"ClassName:x"``, or ``"ClassName:instance:x"``
    when *instance* is given (the unqualified class name: two classes with the
    same name share keys; a subclass uses its own name). Get one with
    :func:`store_as`, or construct it with an explicit ``store=``.

    * **Construction** writes each field's value (default or keyword argument)
      into the store, except where the store already holds the key: values
      already in the store win.
    * **Reading** a field coerces the stored value into the field's type (nested
      models, lists and dicts of models, dataclasses, tuples, discriminated
      unions, datetimes...) and writes the coerced object back, so mutating it
      in place persists and the next read returns the same object. A value that
      does not validate is returned as stored. If the key was deleted, the value
      this object last saw (assigned, adopted or dumped) is returned.
    * **Assigning** a field validates the model's whole state with the new value
      and stores the validated value; on a :class:`pydantic.ValidationError` the
      store is unchanged.
    * :meth:`model_dump` and :meth:`model_dump_json` read the store first, so
      they reflect changes made to it behind the model's back.

    Model objects over the same store and *instance* share state; different
    *instance* values are isolated. ``store`` and ``instance`` are excluded from
    dumps and cannot be reassigned. The ``instance`` field itself is not written
    to the store. A subclass that overrides ``model_post_init`` must call
    ``super().model_post_init(context)``.

    Attributes:
        store: The store to keep the fields in (default: the running sample's,
            see :func:`~corral.util.store`).
        instance: Name that separates this model's keys from other instances of
            the same class in one store.

    Raises:
        TypeError: A field's value is (or contains) a :class:`StoreModel`, or is
            not JSON-serialisable; no field is written to the store.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, defer_build=True)

    store: Store = Field(exclude=True, frozen=True, repr=False, default_factory=store)
    """The store the fields are kept in."""
    instance: str | None = Field(exclude=True, frozen=True, default=None)
    """Name that separates this model's keys from other instances' keys."""

    #: Names of the fields kept in the store (every field but the two above),
    #: in declaration order.
    __corral_fields__: ClassVar[dict[str, None]] = {}
    #: One TypeAdapter per field, built on first use.
    __corral_adapters__: ClassVar[dict[str, TypeAdapter[Any]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.__corral_fields__ = dict.fromkeys(n for n in cls.model_fields if n not in _OWN_FIELDS)
        cls.__corral_adapters__ = {}

    def model_post_init(self, context: Any, /) -> None:
        """Sync with the store: adopt the values it holds, write the others."""
        super().model_post_init(context)
        if isinstance(context, dict) and context.get(_VALIDATE_ONLY):
            return
        cls = type(self)
        values = _attr(self, "__dict__")
        for name in cls.__corral_fields__:
            _reject_store_model(cls, name, values[name])
        target: Store = values["store"]
        missing: dict[str, str] = {}
        for name in cls.__corral_fields__:
            key = _key(cls, values, name)
            if key not in target:
                check_jsonable(key, values[name])
                missing[name] = key
        for name in cls.__corral_fields__:
            if name in missing:
                target.set(missing[name], values[name])
            else:
                values[name] = _read(cls, values, name)

    def __getattribute__(self, name: str) -> Any:
        cls = type(self)
        if name in cls.__corral_fields__:
            return _read(cls, _attr(self, "__dict__"), name)
        return _attr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if name not in cls.__corral_fields__:
            super().__setattr__(name, value)
            return
        if cls.model_config.get("frozen"):
            raise _frozen_error(cls, name, value, "frozen_instance")
        if cls.model_fields[name].frozen:
            raise _frozen_error(cls, name, value, "frozen_field")
        _reject_store_model(cls, name, value)
        values = _attr(self, "__dict__")
        checked = _attr(_validated(cls, values, {name: value}), "__dict__")[name]
        key = _key(cls, values, name)
        target: Store = values["store"]
        target.set(key, checked)
        _coerced_in(target)[key] = (cls, checked)
        values[name] = checked
        self.__pydantic_fields_set__.add(name)

    def _sync(self) -> None:
        cls = type(self)
        values = _attr(self, "__dict__")
        _validated(cls, values, {})
        for name in cls.__corral_fields__:
            values[name] = _read(cls, values, name)

    def model_dump(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Read every field from the store, then dump as :meth:`pydantic.BaseModel.model_dump`.

        Raises:
            pydantic.ValidationError: The store holds values that are not valid
                for the model.
        """
        self._sync()
        return super().model_dump(*args, **kwargs)

    def model_dump_json(self, *args: Any, **kwargs: Any) -> str:
        """Read every field from the store, then dump as :meth:`pydantic.BaseModel.model_dump_json`.

        Raises:
            pydantic.ValidationError: The store holds values that are not valid
                for the model.
        """
        self._sync()
        return super().model_dump_json(*args, **kwargs)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        fields = type(self).__corral_fields__
        for name, value in super().__repr_args__():
            yield name, (getattr(self, name) if name in fields else value)


_attr = object.__getattribute__


def _key(cls: type[StoreModel], values: dict[str, Any], name: str) -> str:
    """The store key of field *name* of the model whose ``__dict__`` is *values*."""
    instance = values["instance"]
    if instance is None:
        return f"{cls.__name__}:{name}"
    return f"{cls.__name__}:{instance}:{name}"


def _adapter(cls: type[StoreModel], name: str) -> TypeAdapter[Any]:
    """The cached adapter that coerces values of field *name*."""
    adapter = cls.__corral_adapters__.get(name)
    if adapter is None:
        info = cls.model_fields[name]
        metadata: list[Any] = list(info.metadata)
        if info.discriminator is not None:
            metadata.append(Field(discriminator=info.discriminator))
        annotation: Any = info.annotation
        if metadata:
            annotation = Annotated[(annotation, *metadata)]
        adapter = cls.__corral_adapters__[name] = TypeAdapter(annotation)
    return adapter


def _read(cls: type[StoreModel], values: dict[str, Any], name: str) -> Any:
    """Field *name* read from the store, coerced, with the coerced object stored back."""
    target: Store = values["store"]
    key = _key(cls, values, name)
    if key not in target:
        return values[name]
    raw = target.get(key)
    known = _coerced.get(id(target), _NOTHING_COERCED).get(key)
    if known is not None and known[1] is raw and known[0] is cls:
        return raw
    value = _coerce(_adapter(cls, name), raw)
    if value is not raw:
        target.set(key, value)
    _coerced_in(target)[key] = (cls, value)
    return value


def _validated(cls: type[SM], values: dict[str, Any], changes: dict[str, Any]) -> SM:
    """Validate the state in the store of the model whose ``__dict__`` is *values*.

    *changes* replace stored values. The result is a model over an empty
    detached store, which its construction leaves alone, so the model's own
    validators read the candidate values.
    """
    target: Store = values["store"]
    data: dict[str, Any] = {}
    for name in cls.__corral_fields__:
        if name in changes:
            value = changes[name]
        else:
            key = _key(cls, values, name)
            value = target.get(key) if key in target else values[name]
        data[_input_key(cls, name)] = value
    data["store"] = Store()
    data["instance"] = values["instance"]
    return cls.model_validate(data, context={_VALIDATE_ONLY: True})


def store_as(model_cls: type[SM], instance: str | None = None) -> SM:
    """Return a *model_cls* over the running sample's store.

    This is not a checkpoint.

    Args:
        model_cls: The :class:`StoreModel` subclass.
        instance: Name that separates this model's keys from other instances'.

    Returns:
        ``model_cls(store=store(), instance=instance)``.
    """
    return model_cls(store=store(), instance=instance)


def store_from_events_as(
    events: Iterable[Event], model_cls: type[SM], instance: str | None = None
) -> SM:
    """Rebuild a *model_cls* from the store changes recorded in a transcript.

    The store is rebuilt as by ``store_from_events``; the keys of *model_cls*
    (and *instance*) are validated into a model over a new detached store.

    Args:
        events: A transcript's events.
        model_cls: The :class:`StoreModel` subclass.
        instance: Take the keys of this named instance (default: those of the
            unnamed one).

    Returns:
        A *model_cls* whose store holds only its own fields.

    Raises:
        pydantic.ValidationError: The recorded values are not valid for *model_cls*.
        ValueError: A ``move`` or ``copy`` change has no ``from``.
    """
    from ._snapshot import store_from_events

    prefix = f"{model_cls.__name__}:"
    if instance is not None:
        prefix = f"{prefix}{instance}:"
    data: dict[str, Any] = {}
    for key, value in store_from_events(events).items():
        if key.startswith(prefix):
            name = key[len(prefix) :]
            if ":" not in name and name in model_cls.__corral_fields__:
                data[_input_key(model_cls, name)] = value
    data["store"] = Store()
    data["instance"] = instance
    return model_cls.model_validate(data)
