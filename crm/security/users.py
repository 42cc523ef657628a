"""The local users file: the embedded login for the demo, the tests and small deployments.

``<data_dir>/security/users.json`` (or the file ``CRM_USERS_FILE`` names), readable by the
service's user only. Each user has a role (config/roles.yml), a rep id when the role sees one
rep's book, and either an argon2id password hash (salted by construction; argon2-cffi) or none
when the user signs in through OpenID Connect (``st.login``) and is matched by email. Passwords
never reach the file, a log or the audit trail.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from crm.config import ConfigError
from crm.security.roles import Viewer, load_roles

USERS_FILE = Path("security") / "users.json"
_HASHER = PasswordHasher()  # argon2id with the library's recommended cost and a random salt per hash
# Verified when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


class UserError(ValueError):
    """A user cannot be added, found or signed in; the message never holds a password."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    rep_id: int | None = None
    password_hash: str | None = None  # None: signs in through OpenID Connect only
    email: str | None = None  # the OIDC identity (st.user.email) this user is
    created_at: str = ""

    def viewer(self, signed_in_with: str = "password") -> Viewer:
        return Viewer.for_role(self.name, self.role, rep_id=self.rep_id, signed_in_with=signed_in_with)


def users_path(data_dir: Path) -> Path:
    value = os.environ.get("CRM_USERS_FILE")
    return Path(value).resolve() if value else Path(data_dir) / USERS_FILE


def load_users(path: Path) -> dict[str, User]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {entry["name"]: User(**entry) for entry in raw.get("users", [])}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a users file ({exc})") from exc


def _write_users(path: Path, users: dict[str, User]) -> None:
    """Write to a private temporary file, then move it into place (atomic; 0600 in a 0700 folder)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"users": [asdict(u) for u in sorted(users.values(), key=lambda u: u.name)]}, handle, indent=2)
    os.replace(temporary, path)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def add_user(
    path: Path,
    name: str,
    role: str,
    *,
    password: str | None = None,
    rep_id: int | None = None,
    email: str | None = None,
    replace: bool = False,
) -> User:
    """Add (or with ``replace`` reset) a user. Without a password the user signs in through OIDC only."""
    name = name.strip()
    if not name or any(ch.isspace() for ch in name) or len(name) > 80:
        raise UserError(f"user name {name!r}: one word of at most 80 characters (an email address is fine)")
    roles = load_roles()
    if role not in roles:
        raise UserError(f"unknown role {role!r}; roles are {', '.join(sorted(roles))}")
    if roles[role].scope == "own_book" and rep_id is None:
        raise UserError(f"role {role!r} sees only one rep's book: give the rep id (--rep-id)")
    if password is not None and len(password) < 10:
        raise UserError("a password needs at least 10 characters")
    if password is None and email is None:
        raise UserError("give a password, or an --email for a user who signs in through OpenID Connect")
    users = load_users(path)
    if name in users and not replace:
        raise UserError(f"user {name!r} exists already (remove it first, or reset its password)")
    user = User(
        name=name,
        role=role,
        rep_id=rep_id,
        password_hash=_HASHER.hash(password) if password is not None else None,
        email=email.strip().lower() if email else None,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    users[name] = user
    _write_users(path, users)
    return user


def remove_user(path: Path, name: str) -> None:
    users = load_users(path)
    if name not in users:
        raise UserError(f"no user {name!r}")
    del users[name]
    _write_users(path, users)


def authenticate(path: Path, name: str, password: str) -> User | None:
    """The user when the password matches its hash, else None (same cost for unknown names)."""
    user = load_users(path).get(name.strip())
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user if user is not None and user.password_hash else None


def user_for_email(path: Path, email: str | None) -> User | None:
    """The user an OpenID Connect identity is (matched on its email), else None: unknown people get no role."""
    if not email:
        return None
    wanted = email.strip().lower()
    return next((u for u in load_users(path).values() if u.email == wanted), None)
