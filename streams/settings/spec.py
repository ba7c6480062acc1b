"""A setting's declaration: :func:`setting` on a field of ``Settings``, read back as a
:class:`Spec` by :func:`specs_of`, so each setting is written in one place."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .values import format_duration_ms, parse_duration_ms


@dataclass(frozen=True)
class Spec:
    """One setting: attribute name, environment variable, default, parser, help."""

    attr: str
    env: str
    default: str
    parse: Callable[[str], Any]
    help: str
    group: str
    secret: bool = False

    def show(self, value: Any) -> str:
        """``value`` as `kpi-streams settings` prints it: as it would be written in the
        environment, secrets masked."""
        if self.secret:
            return "***" if value else ""
        if isinstance(value, tuple):
            return ",".join(value)
        if value is None:
            return ""
        if self.parse is parse_duration_ms:
            return format_duration_ms(value)
        return str(value).lower() if isinstance(value, bool) else str(value)


def setting(env: str, default: str, parse: Callable[[str], Any], help: str, group: str,
            secret: bool = False) -> Any:
    """Declare one field of :class:`Settings`: its environment variable, default (as
    text, as it would be written in the environment), parser, help and group. The CLI's
    ``--help``, ``kpi-streams settings`` and the README's table are read from these."""
    return field(metadata={"setting": (env, default, parse, help, group, secret)})


def specs_of(cls: type) -> tuple[Spec, ...]:
    """The settings declared on the dataclass ``cls``, in declaration order."""
    return tuple(Spec(f.name, *f.metadata["setting"])
                 for f in dataclasses.fields(cls) if "setting" in f.metadata)
