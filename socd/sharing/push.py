"""Pushing an export to a configured target and recording the outcome.

* TAXII 2.1 (``taxii2-client``): ``Collection.add_objects`` with the bundle's
  objects as an envelope, then the status resource is polled until it is
  ``complete`` or the target's ``timeout_secs`` passes. Success means the
  server accepted every object (``failure_count`` 0, ``pending_count`` 0).
* MISP: ``POST <url>/events/add`` with the event JSON and the automation key in
  ``Authorization`` (MISP's REST API). Success is HTTP 200 with an ``Event``.

Every attempt, successful or not, becomes one row of the exchange log
(:mod:`socd.sharing.records`). Error texts never contain a credential.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from socd.config.sharing import MispTargetConfig, SharingConfig, TaxiiTargetConfig
from socd.config.tls import client_context_for
from socd.sharing import records
from socd.sharing.data import Dataset
from socd.sharing.misp import build_event
from socd.sharing.stix import build_bundle
from socd.tz import parse_iso

log = structlog.get_logger("socd.sharing")


@dataclass(frozen=True, slots=True)
class PushResult:
    ok: bool
    objects: int
    detail: str
    exchange_id: int = 0


def push(data: Dataset, sharing: SharingConfig, target_name: str, *, config_dir: str,
         log_path: str) -> PushResult:
    """Push ``data`` to the target named ``target_name`` and record the exchange."""
    target = sharing.targets[target_name]
    if isinstance(target, TaxiiTargetConfig):
        kind = "stix"
        bundle = build_bundle(data, sharing)
        objects = len(bundle.objects)
        ok, detail = _push_taxii(bundle, target, config_dir)
    else:
        kind = "misp"
        event = build_event(data, sharing, distribution=target.distribution,
                            sharing_group_id=target.sharing_group_id)
        objects = len(event["Event"]["Attribute"])
        ok, detail = asyncio.run(_push_misp(event, target, config_dir))
    scope = data.scope
    row = records.Exchange(
        id=None, ts=records.now_iso(), kind=kind, target=target_name,
        recipient=target.recipient or target.url,
        period_from=_iso(scope.start), period_to=_iso(scope.end), incident=scope.incident,
        objects=objects, result="success" if ok else "failure", detail=detail)
    row_id = records.record(log_path, row)
    log.info("sharing exchange", target=target_name, kind=kind, result=row.result,
             objects=objects, detail=detail)
    return PushResult(ok, objects, detail, row_id)


def _iso(dt: Any) -> str | None:
    from socd.sharing.data import _iso as iso

    return iso(dt) or None


def _verify(target: TaxiiTargetConfig | MispTargetConfig, config_dir: str) -> bool | str:
    from socd.config import resolve_path

    if not target.verify:
        return False
    return resolve_path(config_dir, target.ca_file) if target.ca_file else True


# -- TAXII 2.1 ------------------------------------------------------------------------------


def _push_taxii(bundle: Any, target: TaxiiTargetConfig, config_dir: str) -> tuple[bool, str]:
    import requests
    from taxii2client.exceptions import TAXIIServiceException
    from taxii2client.v21 import Collection

    url = f"{target.url.rstrip('/')}/collections/{target.collection_id}/"
    kwargs: dict[str, Any] = {"verify": _verify(target, config_dir)}
    if target.username is not None and target.password is not None:
        kwargs |= {"user": target.username, "password": target.password.get_secret_value()}
    elif target.token is not None:
        kwargs["auth"] = _TokenAuth(target.token_scheme, target.token.get_secret_value())
    envelope = {"objects": [orjson.loads(o.serialize()) for o in bundle.objects]}
    try:
        with Collection(url, **kwargs) as collection:
            status = collection.add_objects(
                envelope, wait_for_completion=True,
                poll_interval=max(1, round(target.poll_interval_secs)),
                timeout=max(1, round(target.timeout_secs)))
            present = (_already_present(collection, status, envelope["objects"])
                       if status.failure_count else 0)
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        hint = (" (authentication refused: check the user name/password or token)"
                if code in (401, 403) else "")
        return False, f"TAXII server answered HTTP {code}{hint}"
    except requests.RequestException as exc:
        return False, f"TAXII server unreachable: {type(exc).__name__}: {_short(exc)}"
    except TAXIIServiceException as exc:
        return False, f"TAXII error: {_short(exc)}"
    if status.status != "complete":
        return False, (f"TAXII status {status.id} still {status.status} after "
                       f"{target.timeout_secs:g} s ({status.success_count} accepted, "
                       f"{status.pending_count} pending)")
    if status.failure_count and present == status.failure_count:
        return True, (f"TAXII status {status.id} complete: {status.success_count} of "
                      f"{status.total_count} objects accepted, {present} already present")
    if status.failure_count:
        reasons = "; ".join(str(f.get("message", f.get("id", ""))) for f in status.failures[:3])
        return False, (f"TAXII status {status.id}: {status.failure_count} of "
                       f"{status.total_count} objects refused: {reasons}")
    return True, (f"TAXII status {status.id} complete: {status.success_count} of "
                  f"{status.total_count} objects accepted")


def _already_present(collection: Any, status: Any, sent: list[dict[str, Any]]) -> int:
    """How many refused objects the collection already holds in the version we sent.

    A TAXII server may refuse an object version it already has (medallion does):
    pushing the same export twice is then a success, not a failure. SCOs have no
    version of their own, so for them the id is enough. A collection we cannot
    read counts none.
    """
    import requests
    from taxii2client.exceptions import TAXIIServiceException

    ours = {o["id"]: o for o in sent}
    found = 0
    for failure in status.failures or []:
        obj = ours.get(failure.get("id", ""))
        if obj is None:
            return 0
        try:
            # All versions: a server may paginate, but one id has few versions.
            answer = collection.get_object(obj["id"], version="all")
        except (requests.RequestException, TAXIIServiceException):
            return 0
        version = _when(obj.get("modified") or obj.get("created"))
        stored = [o for o in answer.get("objects", []) if o.get("id") == obj["id"]]
        if not any(version is None or _when(o.get("modified") or o.get("created")) == version
                   for o in stored):
            return 0
        found += 1
    return found


def _when(ts: Any) -> Any:
    """A STIX timestamp as a datetime (servers may change its precision)."""
    if not isinstance(ts, str):
        return None
    try:
        return parse_iso(ts, naive=None)
    except ValueError:
        return ts


class _TokenAuth:
    """``Authorization: <scheme> <token>`` for requests."""

    def __init__(self, scheme: str, token: str) -> None:
        self._value = f"{scheme} {token}".strip()

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = self._value
        return request


# -- MISP ----------------------------------------------------------------------------------


async def _push_misp(event: dict[str, Any], target: MispTargetConfig,
                     config_dir: str) -> tuple[bool, str]:
    import aiohttp

    # The ca_file is not read when verification is off (as for TAXII's `verify`).
    ssl_ctx = client_context_for(config_dir, ca_file=target.ca_file if target.verify else None,
                                 verify=target.verify)
    headers = {"Authorization": target.api_key.get_secret_value(),
               "Accept": "application/json", "Content-Type": "application/json"}
    url = f"{target.url.rstrip('/')}/events/add"
    timeout = aiohttp.ClientTimeout(total=target.timeout_secs)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                url, data=orjson.dumps(event), headers=headers, ssl=ssl_ctx) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return False, f"MISP unreachable: {type(exc).__name__}: {_short(exc)}"
    if status in (401, 403):
        return False, (f"MISP answered HTTP {status} (authentication refused: check the "
                       "api_key)")
    if status != 200:
        return False, f"MISP answered HTTP {status}: {_short(body.decode(errors='replace'))}"
    try:
        answer = orjson.loads(body)
        event_id = answer["Event"].get("id", "?")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        text = _short(body.decode(errors="replace"))
        return False, f"MISP answered HTTP 200 without an Event: {text}"
    return True, f"MISP event {event_id} created ({len(event['Event']['Attribute'])} attributes)"


def _short(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
