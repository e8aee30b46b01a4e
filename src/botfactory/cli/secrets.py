"""The secrets vault: ``botfactory secrets set|list|delete|rotate-key``.

Values go in through stdin or a hidden prompt and never come out: no command prints one. ``list`` and ``delete``
need only the database; ``set`` and ``rotate-key`` also need the master key (``BOTFACTORY_MASTER_KEY`` or the key
file, see docs/secrets.md).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from botfactory.cli._output import console, print_json, stderr
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.errors import ConfigError, InvalidInputError, SecretNotFoundError
from botfactory.identity import MasterKey, SecretInfo, Vault, load_master_key, replace_key_file, user_owner
from botfactory.store import SecretStore, Store

__all__ = ["secret_json"]

T = TypeVar("T")


def _with_store(action: Callable[[SecretStore], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = load_settings()
        async with await Store.open(settings.resolved_database_url) as store:
            return await action(SecretStore(store.engine))

    return run_async(run())


def _with_vault(key: MasterKey, action: Callable[[Vault], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = load_settings()
        async with await Store.open(settings.resolved_database_url) as store:
            return await action(Vault(SecretStore(store.engine), key))

    return run_async(run())


def secret_json(info: SecretInfo) -> dict[str, Any]:
    """A secret as ``--json`` prints it: never its value."""
    return {
        "name": info.name,
        "owner": info.owner,
        "key_id": info.key_id,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
    }


def _when(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _say(line: str) -> None:
    console.print(line, markup=False, soft_wrap=True)


def _owner(owner: str | None, user: str | None) -> str | None:
    """The vault owner that ``--owner`` or ``--user`` names (``None``: neither was given)."""
    if user is None:
        return owner
    if owner is not None:
        raise click.UsageError("give either --owner or --user, not both (--user P is short for --owner user:P)")
    return user_owner(user)


_USER_HELP = "A user's own token: short for --owner user:PRINCIPAL (e.g. --user slack:T1:U2)."


def _whose(owner: str) -> str:
    return f"of owner {owner!r}" if owner else "(platform-wide)"


def _read_value(name: str) -> str:
    if sys.stdin is None or not sys.stdin.isatty():
        if sys.stdin is None:
            raise InvalidInputError(
                "no value: pipe the secret's value to stdin, e.g. `... | botfactory secrets set NAME`"
            )
        value = sys.stdin.read()
        # `echo value | ...` adds one line break that is not part of the value.
        return value.removesuffix("\n").removesuffix("\r")
    prompted: str = click.prompt(
        f"value of {name} (not echoed)", hide_input=True, confirmation_prompt=True, err=True, show_default=False
    )
    return prompted


@cli.group()
def secrets() -> None:
    """The secrets vault: credentials for tools, encrypted at rest (AES-256-GCM). Values are never printed."""


@secrets.command("set")
@click.argument("name")
@click.option("--owner", default=None, help="The principal the secret belongs to; default: platform-wide.")
@click.option("--user", default=None, metavar="PRINCIPAL", help=_USER_HELP)
def secrets_set(name: str, owner: str | None, user: str | None) -> None:
    """Store a secret's value under NAME, replacing any previous value.

    The value is read from stdin when it is piped (one trailing line break is dropped), else from a hidden prompt
    asked twice. There is deliberately no way to pass it as an argument: a value on the command line is saved in
    your shell history and shown to every user of the machine by `ps`.

    \b
        botfactory secrets set github_token              # prompts, input hidden
        botfactory secrets set github_token < token.txt
        botfactory secrets set github_token --user slack:T1:U2   # that user's own token
    """
    owner = _owner(owner, user) or ""
    key = load_master_key(load_settings())
    value = _read_value(name)
    info, created = _with_vault(key, lambda vault: vault.set(name, value, owner=owner))
    _say(
        f"secret {info.name} {_whose(info.owner)} {'created' if created else 'replaced'} "
        f"(encrypted with master key {info.key_id})"
    )


@secrets.command("list")
@click.option("--owner", default=None, help="Only this owner's secrets ('' for platform-wide ones).")
@click.option("--user", default=None, metavar="PRINCIPAL", help="Only this user's own tokens (--owner user:PRINCIPAL).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def secrets_list(owner: str | None, user: str | None, as_json: bool) -> None:
    """List secrets by owner and name, with dates and master key ids; never their values."""
    owner = _owner(owner, user)
    records = _with_store(lambda store: store.list(owner=owner))
    infos = [SecretInfo.of(record) for record in records]
    if as_json:
        print_json([secret_json(info) for info in infos])
        return
    if not infos:
        console.print("no secrets; store one with: botfactory secrets set NAME")
        return
    table = Table("name", "owner", "updated", "key id")
    for info in infos:
        table.add_row(Text(info.name), Text(info.owner or "(platform)"), _when(info.updated_at), info.key_id)
    console.print(table)


@secrets.command("delete")
@click.argument("name")
@click.option("--owner", default=None, help="The principal the secret belongs to; default: platform-wide.")
@click.option("--user", default=None, metavar="PRINCIPAL", help=_USER_HELP)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def secrets_delete(name: str, owner: str | None, user: str | None, yes: bool) -> None:
    """Delete a secret. Tools that need it fail until it is set again."""
    owner = _owner(owner, user) or ""

    def missing() -> SecretNotFoundError:
        whose = f" of owner {owner!r}" if owner else ""
        return SecretNotFoundError(f"no secret {name!r}{whose} to delete; see `botfactory secrets list`")

    if not yes:
        if _with_store(lambda store: store.get(owner=owner, name=name)) is None:
            raise missing()
        click.confirm(f"delete secret {name} {_whose(owner)}? tools that need it will fail", abort=True, err=True)
    if not _with_store(lambda store: store.delete(owner=owner, name=name)):
        raise missing()
    _say(f"secret {name} {_whose(owner)} deleted")


@secrets.command("rotate-key")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def secrets_rotate_key(yes: bool) -> None:
    """Generate a new master key and re-encrypt every secret with it, in one transaction.

    With a key file (the default), the new key replaces it atomically (mode 0600) and the old key is kept beside
    it as master.key.old-<key id>. With BOTFACTORY_MASTER_KEY, the new key is printed ONCE to stdout before the
    secrets are re-encrypted (so a crash cannot lose it): once the command reports success, put it in the
    environment of every botfactory process and restart them; it is not stored anywhere else.

    Restart running servers and workers afterwards: they hold the old key in memory.
    """
    settings = load_settings()
    current = load_master_key(settings, create=False)
    if not yes:
        where = "BOTFACTORY_MASTER_KEY" if current.source == "environment" else str(current.path)
        click.confirm(
            f"replace master key {current.key_id} ({where}) with a new one and re-encrypt every secret?",
            abort=True,
            err=True,
        )
    new = MasterKey.generate()
    if current.source == "environment":
        # Printed before anything is re-encrypted: a crash after the commit must never leave secrets under a key
        # nobody has seen. If the rotation fails, the printed key is simply never used.
        sys.stdout.write(new.encoded() + "\n")
        sys.stdout.flush()
        try:
            count = _with_vault(current, lambda vault: vault.rotate(new))
        except BaseException:
            stderr.print(
                f"the rotation failed and changed nothing: keep using master key {current.key_id}; "
                "discard the key printed above",
                markup=False,
                soft_wrap=True,
            )
            raise
        stderr.print(
            f"re-encrypted {count} secret(s) with master key {new.key_id}, the key printed above, ONCE; it is "
            "stored nowhere else. Set BOTFACTORY_MASTER_KEY to it for every botfactory process and restart them; "
            f"the old key {current.key_id} no longer decrypts anything.",
            markup=False,
            soft_wrap=True,
        )
        return
    path = current.path
    if path is None:  # a key from a file always has one
        raise ConfigError("the master key has no file to rotate; set BOTFACTORY_MASTER_KEY_FILE")
    # The new key is on disk before any secret is encrypted with it: a crash in between leaves the old key in
    # master.key.old-<id>, which the error for undecryptable secrets names, never secrets under a lost key.
    kept = replace_key_file(path, new, old=current)
    committed = False

    async def rotate(vault: Vault) -> int:
        nonlocal committed
        count = await vault.rotate(new)
        committed = True
        return count

    try:
        count = _with_vault(current, rotate)
    except BaseException:
        if not committed:  # every secret is still under the old key: put it back
            replace_key_file(path, current, old=None)
        raise
    _say(f"re-encrypted {count} secret(s) with the new master key {new.key_id}, now in {path}")
    _say(f"the old key {current.key_id} is kept in {kept}; delete it once you no longer need it to read old backups")
    _say("back up the new key file, and restart running servers and workers: they still hold the old key")
