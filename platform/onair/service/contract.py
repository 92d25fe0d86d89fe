"""The API contract check: requests generated from a service's own OpenAPI, answers held to it.

:func:`check_api` reads ``<base_url>/openapi.json`` (or a given document), generates requests for
every operation with `schemathesis <https://schemathesis.readthedocs.io>`_ (Hypothesis underneath;
fixed seed, ``examples`` per operation and mode), sends them with the given credentials and checks
every answer. It fails on:

* any 5xx (``not_a_server_error``);
* a status code, content type or response header the operation does not document
  (``status_code_conformance``, ``content_type_conformance``, ``response_headers_conformance``);
* a body that does not match its documented schema (``response_schema_conformance``), error
  bodies included;
* a schema-valid request refused (:func:`schema_valid_request_accepted`): a 4xx other than the
  answers that depend on who asks or on the state (401, 403, 404, 409, 429) and a 400 the
  operation documents itself (a rule between fields the schema cannot say, e.g. ``to`` before
  ``from``). A 422 for schema-valid input means the schema promises more than the handler takes;
* a schema-invalid request accepted (``negative_data_rejection``): the handler takes more than
  the schema says;
* an operation that declares security but answers without credentials (``ignored_auth``);
* a method a path does not have answered with anything but 405, an ``Allow`` header that does not
  list the path's documented methods, or an unknown path answered with anything but a JSON 404
  (probes of every path, :func:`probe_methods`).

Operations that stream (``text/event-stream``) are skipped: a generated request would never end.

The result is a :class:`ContractReport` (each :class:`Finding` with the request that reproduces
it as a curl command). ``onair check api`` prints it; the contract test in ``tests/contract``
runs it against every service in CI.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests
    from schemathesis import Case
    from schemathesis.core.transport import Response

__all__ = [
    "ContractError",
    "ContractReport",
    "Finding",
    "check_api",
    "check_app",
    "documented_methods",
    "load_openapi",
    "only_service",
    "probe_methods",
    "schema_valid_request_accepted",
]

#: Credentials for every request: fixed headers, or a callable asked before each request.
Headers = Mapping[str, str] | Callable[[], Mapping[str, str]]

#: Statuses a schema-valid request may get: they depend on who asks or on the data, not on the input.
STATE_ANSWERS = frozenset({401, 403, 404, 409, 429})
#: Methods the 405 probe may try, in order of preference.
PROBE_METHODS = ("PATCH", "PUT", "DELETE", "POST", "GET")
STREAM_TYPES = ("text/event-stream",)
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class ContractError(RuntimeError):
    """The check could not run (no schema at the URL, schemathesis missing, ...)."""


@dataclass(frozen=True)
class Finding:
    """One way the API does not do what its OpenAPI says, with a request that shows it."""

    operation: str  # "GET /v1/profiles/{app}"
    check: str  # "status_code_conformance", "schema_valid_request_accepted", "allow_header", ...
    title: str
    message: str
    status: int | None
    curl: str
    mode: str = "positive"  # positive / negative / probe
    count: int = 1  # how many generated requests hit the same finding

    def key(self) -> tuple[str, str, str, int | None]:
        return (self.operation, self.check, self.title, self.status)


@dataclass
class ContractReport:
    """What one run found: ``ok`` when there are no findings and no errors."""

    base_url: str
    seed: int
    examples: int
    operations: int = 0
    requests: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # operations or probes that could not run
    skipped: list[str] = field(default_factory=list)  # operations left out (streams, filters)
    #: Hints that are not failures (e.g. every schema-valid request answered 401: wrong credentials?)
    warnings: list[str] = field(default_factory=list)
    #: ``{"GET /x": {"positive": {"200": 12, "404": 3}, "negative": {"422": 5}}}``: what was answered
    statuses: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def count(self, operation: str, mode: str, status: int | str) -> None:
        seen = self.statuses.setdefault(operation, {}).setdefault(mode, {})
        seen[str(status)] = seen.get(str(status), 0) + 1

    @property
    def ok(self) -> bool:
        return not self.findings and not self.errors

    def summary(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "ok": self.ok,
            "operations": self.operations,
            "requests": self.requests,
            "findings": len(self.findings),
            "errors": len(self.errors),
            "skipped": len(self.skipped),
            "seed": self.seed,
            "examples": self.examples,
            "seconds": round(self.seconds, 2),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "finding_list": [asdict(f) for f in self.findings],
            "error_list": self.errors,
            "skipped_list": self.skipped,
            "warnings": self.warnings,
            "statuses": self.statuses,
        }

    def describe(self) -> str:
        """Every finding with its reproducing request, as plain text (assertion messages, logs)."""
        s = self.summary()
        lines = [
            f"{s['findings']} finding(s), {s['errors']} error(s) in {s['operations']} operation(s), "
            f"{s['requests']} request(s) to {self.base_url} (seed {self.seed}, {self.examples} example(s))"
        ]
        for f in self.findings:
            status = f" -> {f.status}" if f.status is not None else ""
            lines.append(f"- [{f.check}] {f.operation}{status} ({f.mode}, x{f.count}): {f.title}")
            lines.extend(f"    {line}" for line in f.message.strip().splitlines()[:12] if line.strip())
            lines.append(f"    reproduce: {f.curl}")
        lines.extend(f"- error: {e}" for e in self.errors)
        return "\n".join(lines)


class _Collector:
    def __init__(self, report: ContractReport) -> None:
        self.report = report
        self._index: dict[tuple[str, str, str, int | None], int] = {}

    def add(self, finding: Finding) -> None:
        key = finding.key()
        at = self._index.get(key)
        if at is None:
            self._index[key] = len(self.report.findings)
            self.report.findings.append(finding)
        else:
            old = self.report.findings[at]
            self.report.findings[at] = Finding(**{**asdict(old), "count": old.count + 1})


def _import_schemathesis() -> Any:
    try:
        import schemathesis
    except ImportError as exc:  # pragma: no cover - a dev/check extra
        raise ContractError("the API check needs schemathesis: pip install 'onair[check]'") from exc
    return schemathesis


# -- the one check schemathesis does not have in the form we need -----------------------------------


def schema_valid_request_accepted(ctx: Any, response: Response, case: Case) -> bool | None:
    """A request that matches the schema is not refused for its input.

    Allowed 4xx: 401/403/404/409/429 (who asks, what exists) and a 400 the operation documents
    (a rule between fields the schema cannot express). Anything else (422, 400 undocumented, 413,
    415) means the schema allows what the handler refuses.
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status < 400 or status >= 500 or status in STATE_ANSWERS:
        return None
    documented = _documented_statuses(case.operation.definition.raw)
    if status == 400 and "400" in documented:
        return None
    body = response.text[:300] if response.text else ""
    raise _refused_failure()(
        operation=case.operation.label,
        message=f"Received: {status} {body}\nExpress the rule in the schema (pattern, range, enum, "
        "required) or, for a rule between fields, document a 400 on the operation",
    )


@functools.cache
def _refused_failure() -> type[Any]:
    from schemathesis.core.failures import Failure

    class SchemaValidRequestRefused(Failure):
        """A request that matches the schema was refused for its input."""

        code = "ST911"
        checks = ("schema_valid_request_accepted",)
        kind_title = "Schema-valid request refused"

    return SchemaValidRequestRefused


def _documented_statuses(operation: Mapping[str, Any]) -> set[str]:
    return {str(k).upper() for k in operation.get("responses", {})}


# -- the run --------------------------------------------------------------------------------------------


def load_openapi(
    base_url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    import httpx

    url = base_url.rstrip("/") + "/openapi.json"
    try:
        resp = httpx.get(url, headers=dict(headers or {}), timeout=timeout)
    except httpx.HTTPError as exc:
        raise ContractError(f"cannot read {url}: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 200:
        raise ContractError(f"{url} answered {resp.status_code}")
    try:
        doc = resp.json()
    except ValueError:
        raise ContractError(f"{url} is not JSON") from None
    if not isinstance(doc, dict) or "paths" not in doc:
        raise ContractError(f"{url} is not an OpenAPI document")
    return doc


def check_api(
    base_url: str,
    *,
    openapi: Mapping[str, Any] | None = None,
    headers: Headers | None = None,
    examples: int = 10,
    negative_examples: int | None = None,
    seed: int = 0,
    include: Callable[[str, str], bool] | None = None,
    timeout: float = 10.0,
    probes: bool = True,
) -> ContractReport:
    """Generate requests from the OpenAPI of the service at ``base_url`` and check every answer.

    ``headers`` are sent with every request (credentials: ``{"X-Onair-Identity": ...}`` or
    ``{"Authorization": "Bearer ..."}``); a callable is asked before each request (short-lived
    tokens). ``examples`` positive (schema-valid) requests per
    operation, ``negative_examples`` (default: half) schema-invalid ones; 0 turns a mode off.
    ``include(method, path)`` selects operations. Blocking (it uses ``requests``): from async
    code, run it in a thread (``await asyncio.to_thread(check_api, ...)``).
    """
    import requests

    st = _import_schemathesis()
    from hypothesis.errors import Unsatisfiable
    from hypothesis.strategies import one_of as st_one_of
    from schemathesis import GenerationMode

    started = time.perf_counter()
    base_url = base_url.rstrip("/")
    make_headers = _header_source(headers)
    doc = dict(openapi) if openapi is not None else load_openapi(base_url, make_headers(), timeout)
    negative = examples // 2 if negative_examples is None else negative_examples
    report = ContractReport(base_url=base_url, seed=seed, examples=examples)
    found = _Collector(report)
    config = st.Config.from_dict(
        {
            "seed": seed,
            "base-url": base_url,
            "generation": {"with-security-parameters": False, "database": "none"},
        }
    )
    schema = st.openapi.from_dict(_copy(doc), config=config)
    session = requests.Session()
    try:
        for result in schema.get_all_operations():
            try:
                operation = result.ok()
            except AttributeError:
                report.errors.append(f"an operation could not be read from the schema: {result.err()}")
                continue
            method, path = operation.method.upper(), operation.path
            label = f"{method} {path}"
            if include is not None and not include(method, path):
                report.skipped.append(f"{label}: filtered out")
                continue
            if _streams(operation.definition.raw):
                report.skipped.append(f"{label}: streams (text/event-stream)")
                continue
            report.operations += 1
            runs: list[tuple[Any, Any, int]] = []
            documented = schema.get_strategies_from_examples(operation) if examples > 0 else []
            if documented:  # the schema's own examples first (a few), then generated requests
                runs.append((GenerationMode.POSITIVE, st_one_of(documented), min(examples, 3)))
            runs.append(
                (
                    GenerationMode.POSITIVE,
                    operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                    examples,
                )
            )
            runs.append(
                (
                    GenerationMode.NEGATIVE,
                    operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
                    negative,
                )
            )
            for mode, strategy, count in runs:
                if count <= 0:
                    continue
                try:
                    _run_operation(
                        operation, strategy, mode, count, seed, session, make_headers, timeout, report, found
                    )
                except Unsatisfiable:
                    if mode.is_negative:  # no parameter or body the schema constrains
                        report.skipped.append(f"{label}: nothing in its schema can be made invalid")
                    else:
                        report.errors.append(f"{label}: no request matching its schema could be generated")
                except Exception as exc:
                    report.errors.append(f"{label} ({mode.value}): {type(exc).__name__}: {exc}"[:500])
        if probes:
            probe_methods(base_url, doc, make_headers(), session=session, report=report, timeout=timeout)
    finally:
        session.close()
    for label, modes in report.statuses.items():
        seen = set(modes.get("positive", {}))
        if seen and seen <= {"401", "403"}:
            report.warnings.append(
                f"{label}: every schema-valid request was refused {'/'.join(sorted(seen))}; "
                "are the credentials right?"
            )
    report.seconds = time.perf_counter() - started
    return report


def _header_source(headers: Headers | None) -> Callable[[], dict[str, str]]:
    if callable(headers):
        return lambda: dict(headers())
    fixed = dict(headers or {})
    return lambda: dict(fixed)


def _copy(doc: Mapping[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(dict(doc))


def _streams(operation: Mapping[str, Any]) -> bool:
    for status, response in operation.get("responses", {}).items():
        if str(status).startswith("2") and any(t in response.get("content", {}) for t in STREAM_TYPES):
            return True
    return False


def _checks(mode: Any) -> list[Any]:
    from schemathesis import checks as sc

    common = [
        sc.not_a_server_error,
        sc.status_code_conformance,
        sc.content_type_conformance,
        sc.response_headers_conformance,
        sc.response_schema_conformance,
    ]
    if mode.is_positive:
        return [*common, schema_valid_request_accepted, sc.ignored_auth]
    return [*common, sc.negative_data_rejection]


def _run_operation(
    operation: Any,
    strategy: Any,
    mode: Any,
    count: int,
    seed: int,
    session: requests.Session,
    make_headers: Callable[[], dict[str, str]],
    timeout: float,
    report: ContractReport,
    found: _Collector,
) -> None:
    import hypothesis
    from hypothesis import HealthCheck, Phase
    from schemathesis.core.failures import FailureGroup

    checks = _checks(mode)
    label = f"{operation.method.upper()} {operation.path}"

    @hypothesis.seed(seed)
    @hypothesis.settings(
        max_examples=count,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,
    )
    @hypothesis.given(case=strategy)
    def run(case: Case) -> None:
        report.requests += 1
        headers = make_headers()
        try:
            response = case.call(session=session, headers=headers, timeout=timeout)
        except Exception as exc:  # the server closed the connection, timed out, ...
            report.count(label, mode.value, "none")
            found.add(
                Finding(
                    operation=label,
                    check="transport",
                    title=f"no answer: {type(exc).__name__}",
                    message=str(exc)[:500],
                    status=None,
                    curl=_curl(case, headers),
                    mode=mode.value,
                )
            )
            return
        report.count(label, mode.value, response.status_code)
        try:
            case.validate_response(
                response,
                checks=checks,
                headers=headers,
                transport_kwargs={"session": session, "headers": headers, "timeout": timeout},
            )
        except FailureGroup as group:
            for failure in group.exceptions:
                found.add(
                    Finding(
                        operation=label,
                        check=_check_name(failure),
                        title=str(failure.title),
                        message=str(failure.message),
                        status=response.status_code,
                        curl=_curl(case, headers),
                        mode=mode.value,
                    )
                )

    run()


def _check_name(failure: Any) -> str:
    names = getattr(failure, "checks", ()) or ()
    if names:
        return str(names[0])
    title = str(getattr(failure, "title", ""))
    m = re.search(r"`([a-z_]+)`", title)
    return m.group(1) if m else type(failure).__name__


def _curl(case: Case, headers: Mapping[str, str]) -> str:
    try:
        return str(case.as_curl_command(headers=_redact(headers)))
    except Exception as exc:  # pragma: no cover - curl rendering is best effort
        return f"(no curl: {exc})"


def _redact(headers: Mapping[str, str]) -> dict[str, str]:
    """Credentials are not printed: a report may end up in a CI log."""
    out = {}
    for name, value in headers.items():
        secret = name.lower() in ("authorization", "x-onair-identity", "cookie")
        out[name] = (
            (value.split(" ", 1)[0] + " <redacted>" if " " in value else "<redacted>") if secret else value
        )
    return out


# -- probes: methods a path does not have, unknown paths ------------------------------------------------


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


def _sample_path(template: str) -> str:
    """A concrete path for a template: every parameter replaced by a plain, safe value."""
    return re.sub(r"\{[^}]+\}", "probe1", template)


def documented_methods(doc: Mapping[str, Any], path: str) -> set[str]:
    """Every method some documented template matching the concrete ``path`` has (+HEAD with GET)."""
    methods: set[str] = set()
    for template, item in doc.get("paths", {}).items():
        if _template_regex(template).match(path):
            methods |= {m.upper() for m in item if m in HTTP_METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return methods


def probe_methods(
    base_url: str,
    doc: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    session: requests.Session,
    report: ContractReport,
    timeout: float = 10.0,
) -> None:
    """Every path: a method it does not have gets 405 with ``Allow`` listing exactly the methods
    documented for it; an unknown path gets a JSON 404. Findings go into ``report``."""
    found = _Collector(report)
    for template in sorted(doc.get("paths", {})):
        path = _sample_path(template)
        allowed = documented_methods(doc, path)
        method = next((m for m in PROBE_METHODS if m not in allowed), None)
        if method is None:
            continue
        curl = f"curl -X {method} '{base_url}{path}'"
        report.requests += 1
        try:
            resp = session.request(method, base_url + path, headers=dict(headers), timeout=timeout)
        except Exception as exc:
            report.errors.append(f"405 probe {method} {path}: {type(exc).__name__}: {exc}"[:300])
            continue
        label = f"{method} {template}"
        if resp.status_code != 405:
            found.add(
                Finding(
                    label,
                    "method_not_allowed",
                    f"expected 405, got {resp.status_code}",
                    resp.text[:300],
                    resp.status_code,
                    curl,
                    "probe",
                )
            )
            continue
        got = {m.strip().upper() for m in resp.headers.get("allow", "").split(",") if m.strip()}
        if got != allowed:
            found.add(
                Finding(
                    label,
                    "allow_header",
                    "Allow does not list the path's documented methods",
                    f"Allow: {resp.headers.get('allow')!r}; documented: {', '.join(sorted(allowed))}",
                    405,
                    curl,
                    "probe",
                )
            )
        _expect_error_body(resp, label, curl, found)
    path = "/__onair_contract_probe__/no-such-path"
    report.requests += 1
    try:
        resp = session.get(base_url + path, headers=dict(headers), timeout=timeout)
    except Exception as exc:
        report.errors.append(f"404 probe {path}: {type(exc).__name__}: {exc}"[:300])
        return
    curl = f"curl '{base_url}{path}'"
    if resp.status_code != 404:
        found.add(
            Finding(
                f"GET {path}",
                "unknown_path",
                f"expected 404, got {resp.status_code}",
                resp.text[:300],
                resp.status_code,
                curl,
                "probe",
            )
        )
    else:
        _expect_error_body(resp, f"GET {path}", curl, found)


def _expect_error_body(resp: Any, label: str, curl: str, found: _Collector) -> None:
    ctype = resp.headers.get("content-type", "")
    try:
        body = resp.json() if ctype.startswith("application/json") else None
    except ValueError:
        body = None
    if not (
        isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("detail"), str)
    ):
        found.add(
            Finding(
                label,
                "error_body",
                "the error answer is not the JSON error body",
                f"content-type {ctype!r}: {resp.text[:200]}",
                resp.status_code,
                curl,
                "probe",
            )
        )


def only_service(doc: Mapping[str, Any], service: str) -> dict[str, Any]:
    """The operations of ``service`` in a combined document (``x-onair-service``, see
    :func:`onair.service.openapi.merge_openapi`); the whole document when it has no such marks."""
    marked = any(
        isinstance(op, dict) and "x-onair-service" in op
        for item in doc.get("paths", {}).values()
        for op in item.values()
    )
    if not marked:
        return dict(doc)
    paths: dict[str, Any] = {}
    for path, item in doc.get("paths", {}).items():
        ops = {m: op for m, op in item.items() if m in HTTP_METHODS and op.get("x-onair-service") == service}
        if ops:
            paths[path] = {**{k: v for k, v in item.items() if k not in HTTP_METHODS}, **ops}
    if not paths:
        raise ContractError(f"the document has no operation of service {service!r}")
    return {**doc, "paths": paths}


async def check_app(
    app: Any,
    *,
    headers: Headers | None = None,
    prepare: Callable[[str], Awaitable[None]] | None = None,
    **kwargs: Any,
) -> ContractReport:
    """Run ``app`` (an ASGI app with its lifespan) on a free loopback port, ``await prepare(url)``
    (seed data the schema's examples point at), then :func:`check_api` it in a thread."""
    import asyncio

    from onair.fanout.app import running_server

    async with running_server(app, lifespan="on") as url:
        if prepare is not None:
            await prepare(url)
        return await asyncio.to_thread(check_api, url, headers=headers, **kwargs)
