"""One frozen settings object, built from the environment.

Every setting is declared once, as a field of :class:`Settings` with its
environment name, default and help text (:func:`~streams.settings.spec.setting`,
in :mod:`streams.settings.model`); ``SPECS`` is read from those fields. The CLI's
``--help``, ``kpi-streams settings`` and the README's settings table are all read
from that declaration, so they cannot drift apart. Secrets are held in
:class:`Secret`, whose ``repr`` and ``str`` never show the value. How each value is
parsed from its text is in :mod:`streams.settings.values`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .model import Settings
from .spec import Spec, specs_of
from .values import Secret, SettingsError, format_duration_ms, parse_duration_ms

__all__ = ["SPECS", "Secret", "Settings", "SettingsError", "Spec", "format_duration_ms",
           "load_settings", "parse_duration_ms"]

SPECS: tuple[Spec, ...] = specs_of(Settings)
_SPEC_BY_ATTR = {s.attr: s for s in SPECS}


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``env`` (default: ``os.environ``) plus explicit overrides.

    Raises :class:`SettingsError` naming the variable and the reason when a value
    cannot be parsed.
    """
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw = source.get(spec.env, spec.default)
        try:
            values[spec.attr] = spec.parse(raw)
        except ValueError as exc:
            shown = "***" if spec.secret else repr(raw)
            raise SettingsError(f"{spec.env}={shown}: {exc}") from exc
    for key, value in overrides.items():
        if key not in _SPEC_BY_ATTR and key != "extra":
            raise SettingsError(f"unknown setting {key!r}")
        values[key] = value
    return Settings(**values)
