"""The built-in secrets floor (issue 11): well-known credential files in the
agent's home folder (and any repository's .git/config) need at least a
person's approval, whatever the rules say.

Like built-in self-protection it does not depend on the rules file: a
ruleset that never names `~/.cache/huggingface/token` (or says
`default: allow`) must not let `cat` print it. It only raises: a rule's
`deny` still wins, and when the rules already ask for approval or refuse,
the rules' own reason is the one shown.

The floor is a list of path rules made with the rules' own compiler, so a
path is matched exactly as a path rule is (after `~`, `..`, symlinks and
globs are resolved by policy/decide.py). Paths outside the folders named in
FLOOR_TOPS are passed over with one string comparison, and nothing is
compiled (no `re` import) until a path lies under one of them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from xguard.policy.rules import Rule

FLOOR_ID = "builtin:secrets-floor"

# (glob, what it holds): under $HOME (`~/`) or at any depth (`**/`). Files
# and folders whose whole purpose is to hold a credential on a developer's
# machine; each is read by a tool the agent can already run (`gh`, `aws`,
# `kubectl`…), never needed as text.
FLOOR: tuple[tuple[str, str], ...] = (
    ("~/.ssh/id_*", "an SSH private key"),
    ("~/.ssh/*_key", "an SSH private key"),
    ("~/.aws/credentials", "AWS credentials"),
    ("~/.aws/config", "AWS settings (SSO sessions, credential programs)"),
    ("~/.config/gcloud/**", "Google Cloud credentials"),
    ("~/.azure/**", "Azure credentials"),
    ("~/.kube/config", "Kubernetes credentials"),
    ("~/.docker/config.json", "container registry credentials"),
    ("~/.netrc", "login credentials"),
    ("~/.git-credentials", "git credentials"),
    ("~/.gitconfig", "git settings (tokens in url.insteadOf, http.extraheader)"),
    ("~/.config/git/credentials", "git credentials"),
    ("~/.config/gh/hosts.yml", "the GitHub CLI's token"),
    ("~/.config/hub", "the hub tool's GitHub token"),
    ("~/.npmrc", "an npm token"),
    ("~/.pypirc", "a PyPI token"),
    ("~/.pgpass", "database passwords"),
    ("~/.my.cnf", "a MySQL password"),
    ("~/.claude/.credentials.json", "Claude Code credentials"),
    ("~/.claude.json", "Claude Code account settings (may hold an API key)"),
    ("~/.codex/auth.json", "Codex credentials"),
    ("~/.gemini/oauth_creds.json", "Gemini CLI credentials"),
    ("~/.gemini/.env", "a Gemini API key"),
    ("~/.cache/huggingface/token", "a Hugging Face token"),
    ("~/.cache/huggingface/stored_tokens", "Hugging Face tokens"),
    ("~/.huggingface/token", "a Hugging Face token"),
    ("~/.vault-token", "a Vault token"),
    ("~/.terraform.d/credentials.tfrc.json", "Terraform Cloud credentials"),
    ("~/.password-store/**", "pass's password store"),
    ("~/.gnupg/private-keys-v1.d/**", "GnuPG private keys"),
    ("~/.microsoft/usersecrets/**", ".NET user secrets"),
    # Histories hold what was typed, passwords and exported tokens included.
    ("~/.bash_history", "a shell history (typed secrets)"),
    ("~/.zsh_history", "a shell history (typed secrets)"),
    ("~/.psql_history", "a psql history (typed passwords)"),
    ("~/.mysql_history", "a MySQL history (typed passwords)"),
    ("~/.python_history", "a Python history (typed secrets)"),
    # Any repository's own settings: extraheader tokens, credentials in remote URLs.
    ("**/.git/config", "a repository's git settings (tokens in http.extraheader, remote URLs)"),
)

# Public halves of SSH keys are not secrets (`cat ~/.ssh/id_rsa.pub`).
_EXCEPT = {"~/.ssh/id_*": ["~/.ssh/*.pub"], "~/.ssh/*_key": ["~/.ssh/*.pub"]}

# The first name under $HOME of every entry there, and how every other
# entry's path ends: a path that is neither cannot match.
FLOOR_TOPS = frozenset(g[2:].split("/", 1)[0] for g, _ in FLOOR if g.startswith("~/"))
FLOOR_TAILS = tuple(g[2:] for g, _ in FLOOR if g.startswith("**/"))

_RULES: list[Rule] = []


def floor_rules() -> list[Rule]:
    """The floor as path rules (compiled once per process). Their place is
    after any rules file's, so among equally strict rules the file's own
    rule is the one named."""
    if not _RULES:
        from xguard.policy.rules import Rule, compile_rule

        for i, (glob, what) in enumerate(FLOOR):
            r: dict[str, object] = {
                "path": glob,
                "action": "require_approval",
                "reason": f"{what}: built-in secrets floor",
                "line": i + 1,
            }
            if glob in _EXCEPT:
                r["except"] = _EXCEPT[glob]
            d = compile_rule(r, "builtin")
            d["id"] = FLOOR_ID
            _RULES.append(Rule(d, 1_000_000 + i))
    return _RULES


def under_floor(path: str, home: str) -> bool:
    """Can `path` (absolute, normalised) be one of the floor's files, or a
    folder that holds one? Plain string tests: this runs for every path unit."""
    if path.endswith(FLOOR_TAILS):
        return True
    if not home or home == "/":
        return False
    h = home.rstrip("/") + "/"
    if not path.startswith(h):
        return False
    return path[len(h) :].split("/", 1)[0] in FLOOR_TOPS


def floor_hits(paths: list[str], home: str) -> list[Rule]:
    """The floor rules any of `paths` matches (none when no path lies under
    a floor folder: the common case costs a string comparison per path).
    Every floor rule covers any access: writing a key is as bad as reading it."""
    if not any(under_floor(p, home) for p in paths):
        return []
    return [r for r in floor_rules() if any(r.regex(home).match(p) for p in paths)]


def floor_listing(home: str) -> list[str]:
    """The floor's files as a person reads them, with $HOME written out."""
    h = home.rstrip("/")
    return [h + g[1:] if g.startswith("~") else g for g, _ in FLOOR]
