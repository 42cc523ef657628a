"""`crm users add NAME --role ROLE [--rep-id N] [--email ADDR]`, `crm users list`, `crm users remove NAME`.

The local users file of the dashboard's login (crm.security.users): argon2 hashes, never the
passwords. The password is asked for (twice, hidden), read from standard input with
``--password-stdin``, or generated and shown once with ``--generate``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crm.config import ConfigError
from crm.security.users import UserError, add_user, generate_password, load_users, remove_user, users_path
from crm.settings import load_settings

users_app = typer.Typer(no_args_is_help=True, help="Dashboard users: add, list, remove.")
console = Console()
err = Console(stderr=True)
ConfigOption = typer.Option(None, "--config", "-c", help="Sources config (its data folder holds the users file).")


def _path(config: Path | None) -> Path:
    try:
        return users_path(load_settings(config).data_dir)
    except ConfigError as exc:
        err.print(f"[red]Config error:[/red] {exc}")
        raise typer.Exit(2) from exc


@users_app.command("add")
def add(
    name: str = typer.Argument(..., help="User name (one word; an email address is fine)."),
    role: str = typer.Option(..., "--role", help="admin, analyst, marketer, rep or steward (config/roles.yml)."),
    rep_id: int = typer.Option(None, "--rep-id", help="For a rep: their rep id in the sales system."),
    email: str = typer.Option(None, "--email", help="Their OpenID Connect identity (sign-in with st.login)."),
    generate: bool = typer.Option(False, "--generate", help="Generate a password and show it once."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    oidc_only: bool = typer.Option(False, "--oidc-only", help="No password: signs in through OpenID Connect only."),
    replace: bool = typer.Option(False, "--replace", help="Replace an existing user (a new password, a new role)."),
    config: Path = ConfigOption,
) -> None:
    """Add a dashboard user with a role; the password is stored as a salted argon2 hash."""
    password = None
    if generate:
        password = generate_password()
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not oidc_only:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    path = _path(config)
    try:
        user = add_user(path, name, role, password=password, rep_id=rep_id, email=email, replace=replace)
    except (UserError, ConfigError) as exc:
        err.print(f"[red]Not added:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"Added {user.name} ({user.role}) to {path}")
    if generate:
        console.print(f"password (shown once): {password}")


@users_app.command("list")
def list_users(config: Path = ConfigOption) -> None:
    """Every user, role, rep id and how they sign in (never a hash)."""
    path = _path(config)
    table = Table("user", "role", "rep id", "signs in with", "added", title=str(path))
    for user in load_users(path).values():
        how = "password" if user.password_hash else ""
        how += (" + " if how and user.email else "") + (f"OIDC {user.email}" if user.email else "")
        table.add_row(user.name, user.role, str(user.rep_id or ""), how, user.created_at)
    console.print(table)


@users_app.command("remove")
def remove(name: str = typer.Argument(...), config: Path = ConfigOption) -> None:
    """Remove a user: they cannot sign in any more (open sessions end when they sign out)."""
    try:
        remove_user(_path(config), name)
    except UserError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"Removed {name}")
