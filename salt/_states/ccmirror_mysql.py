"""MariaDB databases, users and grants as states, over Salt's own `mysql` execution module.

Salt 3007+ ships the `mysql` execution module but moved the `mysql_database`, `mysql_user`
and `mysql_grants` states to an extension that is not installed here (and an offline minion
cannot fetch). These three do what the db formula needs, idempotently, and never put a
password in their return (so not in job returns or logs).
"""

from __future__ import annotations


def __virtual__():
    if "mysql.db_exists" not in __salt__:  # noqa: F821 - injected by Salt's loader
        return (False, "the mysql execution module is not loaded (no PyMySQL?)")
    return "ccmirror_mysql"


def _ret(name: str) -> dict:
    return {"name": name, "changes": {}, "result": True, "comment": ""}


def _failed(ret: dict, action: str) -> dict:
    error = __context__.get("mysql.error", "")  # noqa: F821
    ret.update(result=False, comment=f"{action} failed: {error}".rstrip(": "))
    return ret


def database_present(name, character_set=None, collate=None, **connection_args):
    """The database `name` exists (created with the given character set and collation)."""
    ret = _ret(name)
    mysql = __salt__  # noqa: F821
    if mysql["mysql.db_exists"](name, **connection_args):
        ret["comment"] = f"database {name} is present"
        return ret
    if __opts__["test"]:  # noqa: F821
        ret.update(result=None, comment=f"database {name} would be created")
        return ret
    if not mysql["mysql.db_create"](name, character_set, collate, **connection_args):
        return _failed(ret, f"creating database {name}")
    ret["changes"][name] = "created"
    ret["comment"] = f"database {name} created"
    return ret


def user_present(name, host="localhost", password=None, **connection_args):
    """The user `name`@`host` exists and logs in with `password`."""
    ret = _ret(f"{name}@{host}")
    mysql = __salt__  # noqa: F821
    if mysql["mysql.user_exists"](name, host, password, **connection_args):
        ret["comment"] = f"user {name}@{host} is present with its password"
        return ret
    exists = mysql["mysql.user_exists"](name, host, **connection_args)
    action = "password changed" if exists else "created"
    if __opts__["test"]:  # noqa: F821
        ret.update(result=None, comment=f"user {name}@{host} would be {action}")
        return ret
    if exists:
        done = mysql["mysql.user_chpass"](name, host, password, **connection_args)
    else:
        done = mysql["mysql.user_create"](name, host, password, **connection_args)
    if not done:
        return _failed(ret, f"user {name}@{host}: {action}")
    ret["changes"][f"{name}@{host}"] = action
    ret["comment"] = f"user {name}@{host} {action}"
    return ret


def grants_present(name, grant, database, user, host="localhost", **connection_args):
    """`user`@`host` holds `grant` (e.g. "SELECT, INSERT") on `database` (e.g. "db.*")."""
    ret = _ret(name)
    mysql = __salt__  # noqa: F821
    if mysql["mysql.grant_exists"](grant, database, user, host, **connection_args):
        ret["comment"] = f"{user}@{host} holds {grant} on {database}"
        return ret
    if __opts__["test"]:  # noqa: F821
        ret.update(result=None, comment=f"{grant} on {database} would be granted to {user}")
        return ret
    if not mysql["mysql.grant_add"](grant, database, user, host, **connection_args):
        return _failed(ret, f"granting {grant} on {database} to {user}@{host}")
    ret["changes"][f"{user}@{host}"] = f"{grant} on {database}"
    ret["comment"] = f"granted {grant} on {database} to {user}@{host}"
    return ret
