"""The shared queue's schema, roles, grants and row-level security (issue 15).

`xguard db init` runs STATEMENTS in order, each one idempotent, and prints
what each did. The database, not the client, enforces who may do what, so a
host whose agent holds the connection string still cannot approve itself:

- role `xguard_agent` (no login; each host logs in as its own member role,
  mapped to its host name in xguard.hosts): inserts requests bound to its
  host and role, reads only its own host's requests and their decisions,
  may close its own requests as expired or cancelled (never approve or
  deny them), marks a once-approval used, appends to the audit copy of its
  own host; it can UPDATE or DELETE nothing;
- role `xguard_reviewer` (no login; reviewers are its members): reads every
  request and decision, inserts decisions (first one wins: the primary key),
  appends to the audit copy of its own host if mapped; no UPDATE or DELETE
  either;
- the owner (whoever runs `db init`) alone may prune old rows.

INSERT is granted on the columns a client has to say (COLUMNS) and no
others: who wrote a row (host, role) and when (created, at, stored) are the
database's to fill in. Granted on the whole table, a row-level policy that
checks host and role still left an agent free to backdate its request, to
make it look decided by somebody else, or (a trigger runs before the policy
is checked) to name another host's audit chain and read in the error where
that chain stands.

The audit copy is a chain per host: a trigger recomputes each line's hash
(SHA-256 of the bytes before `,"hash":`, SPEC §6), reads `seq` and `prev`
from the line itself and accepts only the next link of that host's chain, so
the copy cannot be forked, and a deleted or rewritten local log no longer
matches it (`xguard audit verify --against-db`).
"""

from __future__ import annotations

AGENT = "xguard_agent"
REVIEWER = "xguard_reviewer"
# Wake-ups: a request or decision was added. Payload-free on purpose: who
# listens learns nothing of other hosts' requests, only to look again.
CHANNEL_QUEUE = "xguard_queue"
CHANNEL_DECIDED = "xguard_decided"


BODY_MAX = 1 << 20
# What a client may write of each row; the rest is filled in by the database.
COLUMNS = {
    "requests": "id, key, expires, body",
    "decisions": "id, state, by, body",
    "consumed": "id",
    "audit": "seq, hash, prev, line",
}


def _constraint(table: str, name: str, check: str) -> str:
    # NOT VALID: rows already there stay; every new row is checked.
    return f"""DO $$ BEGIN
  ALTER TABLE xguard.{table} ADD CONSTRAINT {name} CHECK ({check}) NOT VALID;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$"""


def _role(name: str) -> str:
    return f"""DO $$ BEGIN
  CREATE ROLE {name} NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$"""


STATEMENTS: list[tuple[str, str]] = [
    ("schema xguard", "CREATE SCHEMA IF NOT EXISTS xguard"),
    (f"role {AGENT} (no login: hosts log in as its members)", _role(AGENT)),
    (f"role {REVIEWER} (no login: reviewers log in as its members)", _role(REVIEWER)),
    (
        "schema xguard belongs to no agent or reviewer",
        # CREATE SCHEMA IF NOT EXISTS takes a schema somebody made before:
        # owned by an agent's role, every grant and policy here is its to undo.
        """DO $$
DECLARE r record;
BEGIN
  SELECT o.rolname, o.rolsuper INTO r FROM pg_namespace n JOIN pg_roles o ON o.oid = n.nspowner
    WHERE n.nspname = 'xguard';
  -- (A superuser counts as a member of every role: it is the administrator.)
  IF NOT r.rolsuper AND (pg_has_role(r.rolname, 'xguard_agent', 'MEMBER')
      OR pg_has_role(r.rolname, 'xguard_reviewer', 'MEMBER')) THEN
    RAISE EXCEPTION 'schema xguard belongs to %, an agent or reviewer role: %',
      r.rolname, 'drop it, or give it to the administrator and check what is in it'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
END $$""",
    ),
    ("schema xguard: usage for both roles only", "REVOKE ALL ON SCHEMA xguard FROM PUBLIC"),
    ("", f"GRANT USAGE ON SCHEMA xguard TO {AGENT}, {REVIEWER}"),
    (
        "table xguard.hosts (login role -> host name)",
        """CREATE TABLE IF NOT EXISTS xguard.hosts (
  role name PRIMARY KEY,
  host text NOT NULL CHECK (host <> '' AND length(host) <= 255)
)""",
    ),
    (
        "function xguard.my_host(): the host the session's role is mapped to",
        """CREATE OR REPLACE FUNCTION xguard.my_host() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT host FROM xguard.hosts WHERE role = session_user $$""",
    ),
    ("", "REVOKE ALL ON FUNCTION xguard.my_host() FROM PUBLIC"),
    ("", f"GRANT EXECUTE ON FUNCTION xguard.my_host() TO {AGENT}, {REVIEWER}"),
    (
        "table xguard.requests (host and role set by the database)",
        """CREATE TABLE IF NOT EXISTS xguard.requests (
  id text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{4,16}$'),
  host text NOT NULL DEFAULT xguard.my_host(),
  role name NOT NULL DEFAULT session_user,
  key text NOT NULL CHECK (key ~ '^[0-9a-f]{16,64}$'),
  created double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
  expires double precision NOT NULL,
  body jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object')
)""",
    ),
    ("", "CREATE INDEX IF NOT EXISTS requests_key ON xguard.requests (key)"),
    (
        f"check: a request's body is at most {BODY_MAX} bytes (every reviewer reads them all)",
        _constraint("requests", "requests_body_size", f"octet_length(body::text) <= {BODY_MAX}"),
    ),
    (
        "table xguard.decisions (one per request: the first wins)",
        """CREATE TABLE IF NOT EXISTS xguard.decisions (
  id text PRIMARY KEY REFERENCES xguard.requests (id),
  state text NOT NULL CHECK (state IN ('approved', 'denied', 'expired', 'cancelled')),
  by text NOT NULL,
  role name NOT NULL DEFAULT session_user,
  at double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
  body jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(body) = 'object')
)""",
    ),
    (
        "table xguard.consumed (a once-answer used up: only one run gets it)",
        """CREATE TABLE IF NOT EXISTS xguard.consumed (
  id text PRIMARY KEY REFERENCES xguard.decisions (id),
  role name NOT NULL DEFAULT session_user,
  at double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp())
)""",
    ),
    (
        "table xguard.audit (each host's hash chain, continued)",
        """CREATE TABLE IF NOT EXISTS xguard.audit (
  host text NOT NULL DEFAULT xguard.my_host(),
  seq bigint NOT NULL,
  hash text NOT NULL,
  prev text NOT NULL,
  line text NOT NULL,
  role name NOT NULL DEFAULT session_user,
  stored timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (host, seq)
)""",
    ),
    (
        "trigger: an audit line must hash to its hash and be the next link of its host's chain",
        """CREATE OR REPLACE FUNCTION xguard.audit_link() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n int := length(NEW.line);
  body text;
  last record;
BEGIN
  IF n < 160 OR right(NEW.line, 2) <> '"}' OR substr(NEW.line, n - 74, 9) <> ',"hash":"' THEN
    RAISE EXCEPTION 'not an audit line' USING ERRCODE = 'check_violation';
  END IF;
  body := left(NEW.line, n - 75);
  NEW.hash := substr(NEW.line, n - 65, 64);
  IF encode(sha256(convert_to(body, 'UTF8')), 'hex') <> NEW.hash THEN
    RAISE EXCEPTION 'audit line does not hash to its hash' USING ERRCODE = 'check_violation';
  END IF;
  IF substr(body, length(body) - 73, 9) <> ',"prev":"' THEN
    RAISE EXCEPTION 'audit line has no prev' USING ERRCODE = 'check_violation';
  END IF;
  NEW.prev := substr(body, length(body) - 64, 64);
  NEW.seq := (NEW.line::jsonb ->> 'seq')::bigint;
  SELECT a.seq, a.hash INTO last FROM xguard.audit a
    WHERE a.host = NEW.host ORDER BY a.seq DESC LIMIT 1;
  IF FOUND AND (NEW.seq <> last.seq + 1 OR NEW.prev <> last.hash) THEN
    RAISE EXCEPTION 'audit chain of host % does not continue: seq % after seq % (%)',
      NEW.host, NEW.seq, last.seq, left(last.hash, 12) USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$""",
    ),
    ("", "DROP TRIGGER IF EXISTS audit_link ON xguard.audit"),
    (
        "",
        "CREATE TRIGGER audit_link BEFORE INSERT ON xguard.audit "
        "FOR EACH ROW EXECUTE FUNCTION xguard.audit_link()",
    ),
    (
        f"triggers: NOTIFY {CHANNEL_QUEUE} / {CHANNEL_DECIDED} on every new request and decision",
        f"""CREATE OR REPLACE FUNCTION xguard.wake() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL_QUEUE}', '');
  IF TG_TABLE_NAME = 'decisions' THEN
    PERFORM pg_notify('{CHANNEL_DECIDED}', '');
  END IF;
  RETURN NULL;
END $$""",
    ),
    ("", "DROP TRIGGER IF EXISTS wake ON xguard.requests"),
    (
        "",
        "CREATE TRIGGER wake AFTER INSERT ON xguard.requests "
        "FOR EACH ROW EXECUTE FUNCTION xguard.wake()",
    ),
    ("", "DROP TRIGGER IF EXISTS wake ON xguard.decisions"),
    (
        "",
        "CREATE TRIGGER wake AFTER INSERT ON xguard.decisions "
        "FOR EACH ROW EXECUTE FUNCTION xguard.wake()",
    ),
    (
        "grants: SELECT, and INSERT of the columns a client writes "
        "(no UPDATE, no DELETE for anyone but the owner)",
        "REVOKE ALL ON ALL TABLES IN SCHEMA xguard FROM PUBLIC",
    ),
    # Revoking on a table revokes its column grants too: a re-run starts clean.
    ("", f"REVOKE ALL ON ALL TABLES IN SCHEMA xguard FROM {AGENT}, {REVIEWER}"),
    ("", f"GRANT SELECT ON xguard.requests TO {AGENT}"),
    ("", f"GRANT INSERT ({COLUMNS['requests']}) ON xguard.requests TO {AGENT}"),
    ("", f"GRANT SELECT ON xguard.requests, xguard.hosts TO {REVIEWER}"),
    (
        "",
        f"GRANT SELECT ON xguard.decisions, xguard.consumed, xguard.audit TO {AGENT}, {REVIEWER}",
    ),
    *[
        ("", f"GRANT INSERT ({COLUMNS[t]}) ON xguard.{t} TO {AGENT}, {REVIEWER}")
        for t in ("decisions", "consumed", "audit")
    ],
]

# Row-level security: (table, policy, command, role, USING, WITH CHECK).
_OWN_REQUEST = (
    "EXISTS (SELECT 1 FROM xguard.requests r WHERE r.id = {t}.id AND r.host = xguard.my_host())"
)
POLICIES: list[tuple[str, str, str, str, str | None, str | None]] = [
    ("requests", "agent_reads_own_host", "SELECT", AGENT, "host = xguard.my_host()", None),
    (
        "requests",
        "agent_adds_for_own_host",
        "INSERT",
        AGENT,
        None,
        "host = xguard.my_host() AND role = session_user",
    ),
    ("requests", "reviewer_reads_all", "SELECT", REVIEWER, "true", None),
    (
        "decisions",
        "agent_reads_own_decisions",
        "SELECT",
        AGENT,
        _OWN_REQUEST.format(t="decisions"),
        None,
    ),
    (
        "decisions",
        "agent_only_closes_own",
        "INSERT",
        AGENT,
        None,
        # Signed as xguard itself, as the waiter and the sweep write them: an
        # agent's cancel must not read "cancelled by alice".
        "state IN ('expired', 'cancelled') AND role = session_user "
        "AND by ~ '^xguard( [(]SIG[A-Z0-9]+[)])?$' AND " + _OWN_REQUEST.format(t="decisions"),
    ),
    ("decisions", "reviewer_reads_all", "SELECT", REVIEWER, "true", None),
    ("decisions", "reviewer_decides", "INSERT", REVIEWER, None, "role = session_user"),
    ("consumed", "agent_reads_own", "SELECT", AGENT, _OWN_REQUEST.format(t="consumed"), None),
    (
        "consumed",
        "agent_uses_own",
        "INSERT",
        AGENT,
        None,
        "role = session_user AND " + _OWN_REQUEST.format(t="consumed"),
    ),
    ("consumed", "reviewer_reads_all", "SELECT", REVIEWER, "true", None),
    ("audit", "agent_reads_own_host", "SELECT", AGENT, "host = xguard.my_host()", None),
    ("audit", "reviewer_reads_all", "SELECT", REVIEWER, "true", None),
    (
        "audit",
        "appends_own_host",
        "INSERT",
        f"{AGENT}, {REVIEWER}",
        None,
        "host = xguard.my_host() AND role = session_user",
    ),
    ("hosts", "reviewer_reads_all", "SELECT", REVIEWER, "true", None),
]


def policy_statements() -> list[tuple[str, str]]:
    """Enable RLS on every table and (re)create each policy."""
    out: list[tuple[str, str]] = []
    for table in ("hosts", "requests", "decisions", "consumed", "audit"):
        out.append(
            (
                f"row-level security on xguard.{table}",
                f"ALTER TABLE xguard.{table} ENABLE ROW LEVEL SECURITY",
            )
        )
    for table, name, cmd, role, using, check in POLICIES:
        sql = f"CREATE POLICY {name} ON xguard.{table} FOR {cmd} TO {role}"
        if using is not None:
            sql += f" USING ({using})"
        if check is not None:
            sql += f" WITH CHECK ({check})"
        out.append(("", f"DROP POLICY IF EXISTS {name} ON xguard.{table}"))
        out.append((f"policy {table}.{name}: {cmd} for {role}", sql))
    return out


def role_name_for(host: str) -> str:
    """The login role a host's agents use, when `--agent HOST` does not name one."""
    safe = "".join(c if c.isalnum() else "_" for c in host.lower())
    return f"xguard_agent_{safe}"[:63]
