"""Roles and permissions (config/roles.yml) and the viewer every data-layer call carries.

A role is a scope (every customer, or only the rep's own book) plus a set of permissions from a
fixed vocabulary. The app's data layer asks the viewer before it reads: a page that forgets a
check still cannot receive what the role may not see, because the data never leaves the layer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from crm.config import PROJECT_ROOT, ConfigError, read_yaml

DEFAULT_ROLES_CONFIG = PROJECT_ROOT / "config" / "roles.yml"

PERMISSIONS = frozenset(
    {
        "analytics",  # company-wide pages
        "customers",  # customer search and cards (row-level for scope own_book)
        "unmask",  # clear-text emails and phones, on screen and in downloads
        "segments",  # segment builder and analysis downloads
        "export_contacts",  # channel exports with contact details (consent enforced)
        "my_book",  # a rep's ranked action list
        "operations",  # data health
        "steward",  # identity review
        "audit",  # the audit trail and the users list
    }
)
Scope = Literal["all", "own_book"]


class AccessDenied(PermissionError):
    """The viewer may not see or do this; the message says what was refused and why, never the data."""


class RoleDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope = "all"
    permissions: frozenset[str]

    def model_post_init(self, _context) -> None:
        unknown = self.permissions - PERMISSIONS
        if unknown:
            raise ValueError(f"unknown permissions {sorted(unknown)}; known: {sorted(PERMISSIONS)}")


def roles_config_path() -> Path:
    value = os.environ.get("CRM_ROLES_CONFIG")
    return Path(value).resolve() if value else DEFAULT_ROLES_CONFIG


@lru_cache(maxsize=4)
def _load_roles(path: Path, mtime: float) -> dict[str, RoleDefinition]:
    raw = read_yaml(path, "roles config").get("roles")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: 'roles' must map each role name to its scope and permissions")
    try:
        return {name: RoleDefinition(**spec) for name, spec in raw.items()}
    except (ValidationError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_roles(path: Path | None = None) -> dict[str, RoleDefinition]:
    """Role name -> definition, from config/roles.yml (or CRM_ROLES_CONFIG)."""
    path = path or roles_config_path()
    if not path.exists():
        raise ConfigError(f"roles config not found: {path}")
    return _load_roles(path, path.stat().st_mtime)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a signed-in user with a role, and the rep they are (for scope own_book)."""

    name: str
    role: str
    permissions: frozenset[str]
    scope: Scope = "all"
    rep_id: int | None = None
    signed_in_with: str = "password"  # password | oidc
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def for_role(cls, name: str, role: str, *, rep_id: int | None = None, signed_in_with: str = "password") -> Viewer:
        roles = load_roles()
        if role not in roles:
            raise ConfigError(f"user {name!r}: unknown role {role!r}; roles are {sorted(roles)}")
        definition = roles[role]
        if definition.scope == "own_book" and rep_id is None:
            raise ConfigError(f"user {name!r}: role {role!r} sees only a rep's own book, so it needs a rep id")
        return cls(
            name=name,
            role=role,
            permissions=definition.permissions,
            scope=definition.scope,
            rep_id=rep_id,
            signed_in_with=signed_in_with,
        )

    def can(self, permission: str) -> bool:
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        return permission in self.permissions

    def require(self, permission: str, what: str = "") -> None:
        if not self.can(permission):
            raise AccessDenied(
                f"{self.name} ({self.role}) may not {what or 'use ' + permission}: the role lacks '{permission}'"
            )

    @property
    def own_book_only(self) -> bool:
        return self.scope == "own_book"

    @property
    def sees_contact_details(self) -> bool:
        return self.can("unmask")

    @property
    def cache_key(self) -> tuple:
        """What changes a query's answer: the same key means the same rows and the same masking."""
        return (self.role, self.scope, self.rep_id, tuple(sorted(self.permissions)))
