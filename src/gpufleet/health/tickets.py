"""Tickets for nodes that remediation could not heal: Jira, GitLab issue, or a generic webhook.

```yaml
ticket: {kind: webhook, url: "https://hooks.example/gpufleet", headers: {Authorization: "Bearer ..."}}
ticket: {kind: jira, server: "https://jira.example", project: LAB, token: "...", issue_type: Bug}
ticket: {kind: jira, server: ..., project: LAB, user: bot, password: "..."}   # basic auth
ticket: {kind: gitlab, url: "https://gitlab.example", project: "lab/hardware", token: "..."}
```
Secrets come in through the config mapping (main.py may fill them from the environment).

A ticket's text quotes health-check output (a script's first line, a driver message), which is not
gpufleet's to trust. The webhook gets it as JSON values. Jira and GitLab render markup, and GitLab
runs quick actions (`/close`, `/assign @x`, `/confidential`) and mentions (`@all`) found in a
description, so there the body is one literal block (a GitLab fence longer than any backtick run in
it, Jira `{noformat}` with any `{noformat` inside defused), the title is one line, and labels and
the Idempotency-Key header are plain words.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Protocol

import httpx

from gpufleet.domain import ValidationError


@dataclass(frozen=True, slots=True)
class Ticket:
    node: str
    title: str
    body: str
    reason: str
    rounds: int
    dedupe_key: str  # stable per incident: a receiver can ignore a repeat after a crash
    labels: tuple[str, ...] = ("gpufleet", "hardware")
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["facts"] = dict(self.facts)
        return d


@dataclass(frozen=True, slots=True)
class TicketRef:
    system: str  # "webhook" | "jira" | "gitlab"
    id: str
    url: str = ""


class Ticketer(Protocol):
    def open(self, ticket: Ticket) -> TicketRef: ...


@dataclass
class WebhookTicketer:
    """POST the ticket as JSON. The response may carry {"id": ..., "url": ...}."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0

    def open(self, ticket: Ticket) -> TicketRef:
        payload = {"kind": "gpufleet.node_unhealthy", **ticket.to_dict()}
        with httpx.Client(timeout=self.timeout_s) as client:
            r = client.post(self.url, json=payload, headers={"Idempotency-Key": word(ticket.dedupe_key),
                                                             **self.headers})
        r.raise_for_status()
        try:
            body = r.json()
        except (ValueError, json.JSONDecodeError):
            body = {}
        body = body if isinstance(body, dict) else {}
        return TicketRef("webhook", str(body.get("id") or ticket.dedupe_key), str(body.get("url") or ""))


@dataclass
class JiraTicketer:
    server: str
    project: str
    issue_type: str = "Bug"
    token: str | None = None
    user: str | None = None
    password: str | None = None
    timeout_s: float = 30.0

    def open(self, ticket: Ticket) -> TicketRef:
        from jira import JIRA

        auth: dict[str, Any] = {}
        if self.token:
            auth["token_auth"] = self.token
        elif self.user:
            auth["basic_auth"] = (self.user, self.password or "")
        client = JIRA(server=self.server, get_server_info=False, timeout=self.timeout_s, max_retries=1, **auth)
        issue = client.create_issue(fields={
            "project": {"key": self.project}, "summary": one_line(ticket.title, 250),
            "description": jira_literal(ticket.body), "issuetype": {"name": self.issue_type},
            "labels": [word(x) for x in (*ticket.labels, f"node-{ticket.node}")],
        }, prefetch=False)
        return TicketRef("jira", issue.key, f"{self.server.rstrip('/')}/browse/{issue.key}")


@dataclass
class GitLabTicketer:
    url: str
    project: str  # id or "group/name"
    token: str | None = None
    timeout_s: float = 30.0

    def open(self, ticket: Ticket) -> TicketRef:
        import gitlab

        gl = gitlab.Gitlab(self.url, private_token=self.token, timeout=self.timeout_s)
        project = gl.projects.get(self.project, lazy=True)
        issue = project.issues.create({
            "title": one_line(ticket.title, 250), "description": markdown_literal(ticket.body),
            "labels": ",".join(word(x) for x in (*ticket.labels, f"node::{ticket.node}")),
        })
        return TicketRef("gitlab", str(issue.iid), str(getattr(issue, "web_url", "")))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str, limit: int) -> str:
    """Any text as one line of at most `limit` characters (titles: no newline, no control chars)."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def word(text: str) -> str:
    """A label or header value: [A-Za-z0-9_.:-] only (no `,` that would split a GitLab label list)."""
    return re.sub(r"[^A-Za-z0-9_.:-]+", "_", text, flags=re.ASCII)[:255] or "_"


def _body_text(text: str) -> str:
    return _CONTROL.sub(lambda m: " " if m.group() in "\u2028\u2029" else "", text.replace("\r\n", "\n"))


def markdown_literal(text: str) -> str:
    """A GitLab/Markdown code block holding `text` verbatim: no markup, mention or quick action in it
    is interpreted. The fence is longer than the longest run of backticks in the text."""
    body = _body_text(text)
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{body}\n{fence}"


def jira_literal(text: str) -> str:
    """A Jira wiki `{noformat}` block holding `text`; a `{noformat` inside cannot close it."""
    body = re.sub(r"(?i)\{(noformat)", r"{ \1", _body_text(text))
    return f"{{noformat}}\n{body}\n{{noformat}}"


def build_ticketer(cfg: Mapping[str, Any] | None) -> Ticketer | None:
    """The configured ticketer, or None (then an escalated node is only drained and logged)."""
    if not cfg:
        return None
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    try:
        if kind == "webhook":
            return WebhookTicketer(url=_req(cfg, "url", kind), headers=dict(cfg.get("headers") or {}),
                                   timeout_s=float(cfg.get("timeout_s", 10)))
        if kind == "jira":
            return JiraTicketer(server=_req(cfg, "server", kind), project=_req(cfg, "project", kind),
                                **{k: cfg[k] for k in ("issue_type", "token", "user", "password") if k in cfg})
        if kind == "gitlab":
            return GitLabTicketer(url=_req(cfg, "url", kind), project=str(_req(cfg, "project", kind)),
                                  token=cfg.get("token"))
    except TypeError as e:
        raise ValidationError("health.ticket", str(e)) from None
    raise ValidationError("health.ticket.kind", "one of webhook, jira, gitlab")


def _req(cfg: Mapping[str, Any], key: str, kind: str) -> Any:
    if not cfg.get(key):
        raise ValidationError(f"health.ticket.{key}", f"required for kind {kind}")
    return cfg[key]
