"""Which host a database client connects to. Pure, standard library only.

A rule allows `psql -c …` because it reads a local database; the same
command with a connection string in another position (`psql -c 'SELECT 1'
postgres://10.1.2.3/app`, `psql -c … -d 'host=db.example'`), a `-h`, or a
PGHOST/MYSQL_HOST assignment sends the user's credentials (.pgpass,
PGPASSWORD, ~/.my.cnf) to another machine and reads whatever it holds. The
parser raises such a command to at least require_approval whatever the rules
say; a local target (localhost, 127.0.0.0/8, ::1, a socket path, no host at
all) is left to the rules.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

# libpq programs: -h/--host, -d/--dbname (a conninfo or URI), positional dbname.
_LIBPQ = frozenset(
    {
        "psql", "pg_dump", "pg_dumpall", "pg_restore", "pg_isready", "pg_basebackup",
        "pg_receivewal", "pg_recvlogical", "pgbench", "createdb", "dropdb", "createuser",
        "dropuser", "vacuumdb", "reindexdb", "clusterdb", "vacuumlo", "pg_amcheck",
    }
)  # fmt: skip
# Short options of psql that take a value (src/bin/psql/startup.c); for the other
# libpq programs every unknown letter is taken as a flag, and every word that is
# not an option is a dbname or user, read as a possible connection string.
_PSQL_SHORT_ARG = frozenset("cdfFhLoPpRTUv")
_MYSQLS = frozenset({"mysql", "mariadb", "mysqldump", "mariadb-dump", "mysqladmin", "mysqlshow"})
_OTHERS = frozenset(
    {"redis-cli", "valkey-cli", "mongosh", "mongo", "clickhouse-client", "cockroach"}
)
CLIENTS = _LIBPQ | _MYSQLS | _OTHERS

_ENV_HOST = {
    "PGHOST": _LIBPQ,
    "PGHOSTADDR": _LIBPQ,
    "MYSQL_HOST": _MYSQLS,
    "REDISCLI_HOST": frozenset({"redis-cli", "valkey-cli"}),
}
# Environment that names a host indirectly (a service file entry, a URL).
_ENV_INDIRECT = {
    "PGSERVICE": _LIBPQ,
    "PGSERVICEFILE": _LIBPQ,
    "DATABASE_URL": CLIENTS,
    "COCKROACH_URL": frozenset({"cockroach"}),
    "COCKROACH_HOST": frozenset({"cockroach"}),
}
_CONNINFO_HOST = ("host", "hostaddr")
_CONNINFO_INDIRECT = ("service", "servicefile")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_CONNINFO = re.compile(r"^\s*[a-z_]+\s*=")


def _local(host: str) -> bool:
    h = host.strip().strip("[]").lower()
    return (
        not h
        or h.startswith("/")
        or h.startswith("@")  # an abstract socket
        or h in ("localhost", "::1", "0:0:0:0:0:0:0:1", "localhost.localdomain")
        or re.fullmatch(r"127(\.\d{1,3}){3}", h) is not None
    )


def _conninfo(text: str) -> list[str]:
    """Hosts named by a libpq `key=value` string ("\x00" for a service entry)."""
    out: list[str] = []
    for m in re.finditer(r"([a-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)", text):
        key, val = m.group(1), m.group(2)
        if val.startswith("'"):
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        if key in _CONNINFO_HOST:
            out += val.split(",")
        elif key in _CONNINFO_INDIRECT:
            out.append("\x00")
    return out


def _uri(text: str) -> list[str]:
    """Hosts named by a URI (several with `h1,h2`), its ?host= included."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return ["\x00"]
    netloc = parts.netloc.rpartition("@")[2]
    out = []
    for hp in netloc.split(","):
        host = hp[1 : hp.find("]")] if hp.startswith("[") else hp.partition(":")[0]
        out.append(unquote(host))
    for key in ("host", "hostaddr"):
        for v in parse_qs(parts.query).get(key, []):
            out += v.split(",")
    if "service" in parse_qs(parts.query):
        out.append("\x00")
    return out


def _target(word: str) -> list[str]:
    """Hosts a dbname-like word names: a URI, a conninfo, or nothing."""
    if _SCHEME.match(word):
        return _uri(word)
    if _CONNINFO.match(word):
        return _conninfo(word)
    return []


def _option_values(
    args: list[str], short: str, longs: tuple[str, ...], takes: frozenset[str]
) -> tuple[list[str], list[str]]:
    """(values of the named option, positional words) in a getopt-style argv.
    `takes`: short letters that take a value (only psql's are known exactly)."""
    values: list[str] = []
    positional: list[str] = []
    i = 0
    while i < len(args):
        w = args[i]
        if w == "--":
            positional += args[i + 1 :]
            break
        if w.startswith("--"):
            name, eq, val = w[2:].partition("=")
            if any(lo.startswith(name) and name for lo in longs):
                if not eq and i + 1 < len(args):
                    i += 1
                    val = args[i]
                values.append(val)
            i += 1
            continue
        if w.startswith("-") and w != "-":
            for k in range(1, len(w)):
                ch = w[k]
                if ch == short or ch in takes:
                    val = w[k + 1 :]
                    if not val and i + 1 < len(args):
                        i += 1
                        val = args[i]
                    if ch == short:
                        values.append(val)
                    break
            i += 1
            continue
        positional.append(w)
        i += 1
    return values, positional


def remote_hosts(name: str, args: list[str], env: list[str]) -> list[str]:
    """The non-local hosts the client `name` with argv `args` (literal words) and
    the `NAME=value` assignments `env` connects to; "a host named elsewhere"
    where a service entry or URL variable names it indirectly."""
    hosts: list[str] = []
    for a in env:
        key, _, val = a.partition("=")
        if name in _ENV_HOST.get(key, ()):
            hosts += val.split(",")
        elif name in _ENV_INDIRECT.get(key, ()):
            hosts += _target(val) if _SCHEME.match(val) else ["\x00"]
    if name in _LIBPQ:
        takes = _PSQL_SHORT_ARG if name == "psql" else frozenset("dhpU")
        hv, pos = _option_values(args, "h", ("host",), takes)
        dv, _ = _option_values(args, "d", ("dbname",), takes)
        hosts += [h for v in hv for h in v.split(",")]
        for w in dv + pos:
            hosts += _target(w)
    elif name in _MYSQLS:
        hv, pos = _option_values(args, "h", ("host",), frozenset("DehPSuO"))
        hosts += hv
        hosts += [h for w in pos if _SCHEME.match(w) for h in _uri(w)]
    elif name in ("redis-cli", "valkey-cli"):
        hv, _ = _option_values(args, "h", (), frozenset("hpsanu"))
        uv, _ = _option_values(args, "u", (), frozenset("hpsanu"))
        hosts += hv + [h for w in uv for h in _uri(w)]
    else:  # mongosh, clickhouse-client, cockroach
        hv, pos = _option_values(args, "h", ("host", "url"), frozenset())
        for v in hv + pos:
            if _SCHEME.match(v):
                hosts += _uri(v)
            elif v in hv:
                hosts += [h.partition(":")[0] for h in v.split(",")]
            elif re.match(r"[\w.-]+(:\d+)?/", v):  # mongosh HOST[:PORT]/DB
                hosts.append(re.split(r"[/:]", v, maxsplit=1)[0])
    return sorted({"a host named elsewhere" if h == "\x00" else h for h in hosts if not _local(h)})
