"""One-line messages for pydantic validation errors: which key, what is wrong, the nearest valid key."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from .errors import ConfigError
from .lookup import unknown_name


def _fields_at(model: type[BaseModel], path: tuple) -> list[str]:
    """Field names of the (nested) model that ``path`` points into, for did-you-mean hints."""
    for part in path:
        if not isinstance(part, str) or part not in model.model_fields:
            return list(model.model_fields)
        annotation = model.model_fields[part].annotation
        inner = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        nested = [a for a in inner if issubclass(a, BaseModel)]
        if not nested:
            return list(model.model_fields)
        model = nested[0]
    return list(model.model_fields)


MOVED_KEY = "moved_key"  # the pydantic error type of a key that moved into a group


def moved_key_error(message: str) -> PydanticCustomError:
    """The error a ``model_validator(mode="before")`` raises for a key that moved (``message`` names its new
    place); ``validation_message`` prints it as it is, after the source."""
    return PydanticCustomError(MOVED_KEY, "{message}", {"message": message})


def refuse_moved_keys(data: object, moved: dict[str, str]) -> object:
    """``data`` unchanged unless it uses an old key of ``moved`` (old key -> its new dotted place): then one
    error naming each such key's new place, e.g. "`steps` moved to `schedule.steps`"."""
    found = [key for key in data if key in moved] if isinstance(data, dict) else []
    if found:
        first, *rest = found
        more = "".join(f", `{key}` to `{moved[key]}`" for key in rest)
        raise moved_key_error(f"`{first}` moved to `{moved[first]}`{more}")
    return data


def validation_message(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    """``source: key.path: problem`` for the first error, with a hint for unknown keys."""
    errors = exc.errors()
    # an unknown key first: a misspelt key is usually also why a required one is "missing"
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == MOVED_KEY:  # the message names the key and its new place
        message = f"{source}: {first['msg']}"
    elif first["type"] == "extra_forbidden":
        message = f"{source}: {unknown_name('key', str(loc[-1]), _fields_at(model, loc[:-1]), shown=where)}"
    else:
        message = f"{source}: {where}: {first['msg']}"
    more = len(exc.errors()) - 1
    return message + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def read_yaml(path: Path, kind: str, error: type[ConfigError] = ConfigError) -> object:
    """Parse a YAML file; any read, encoding or syntax problem is one ``error`` line naming the file."""
    try:
        return yaml.safe_load(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise error(f"cannot read {kind} {path}: {exc.strerror}; give the path of a {kind} YAML") from None
    except UnicodeDecodeError:
        raise error(f"{path} is not UTF-8 text; a {kind} is a YAML file") from None
    except yaml.YAMLError as exc:
        raise error(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
