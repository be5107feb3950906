"""A list+watch cache of gpufleet's own pods and Jobs (one namespace, selected by instance label).

A background thread per resource lists once, then WATCHES from that resourceVersion, resuming after
each server-side timeout and relisting after `410 Gone` or an error. `poll()` only reads this cache,
so observing N jobs costs no API call. Objects are kept as plain dicts (the JSON the server sent).
An event that ends a job's object (pod Succeeded/Failed, a Job's Complete/Failed condition, a
deletion) also calls the cache's `on_end` listeners: the control loop's wake (Ability.WATCH).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from kubernetes.watch.watch import iter_resp_lines

from gpufleet.executors.kubernetes import names as n

log = logging.getLogger(__name__)
Obj = dict[str, Any]


Key = tuple[int, int, str]


def job_key(obj: Obj) -> Key | None:
    """(gpufleet job id, attempt, tag) of an object, from its labels (see names.job_key)."""
    lab = obj["metadata"].get("labels") or {}
    try:
        return int(lab[n.JOB_ID]), int(lab.get(n.ATTEMPT, "0")), lab.get(n.TAG, "")
    except (KeyError, ValueError):
        return None


def ended(obj: Obj) -> bool:
    """A pod that Succeeded/Failed, or a batch Job with a Complete/Failed condition."""
    status = obj.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in status.get("conditions") or ())


class Reflector:
    """list+watch of one resource kind into `store[(job id, attempt)][name] = obj`."""

    def __init__(self, kind: str, list_fn: Callable[..., Any], selector: str, timeout_s: int,
                 on_change: Callable[[], None], on_end: Callable[[], None] = lambda: None):
        self.kind = kind
        self.list_fn = list_fn
        self.selector = selector
        self.timeout_s = timeout_s
        self.on_change = on_change
        self.on_end = on_end  # an object of ours just ended (or went away)
        self.store: dict[Key, dict[str, Obj]] = {}
        self.tombstones: dict[Key, float] = {}  # deleted objects: when they went away
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.stopped = threading.Event()
        self.error: str = ""
        self._resp: Any = None
        self.thread = threading.Thread(target=self._run, name=f"k8s-watch-{kind}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop watching. Shuts the socket down for reading (closing it from this thread could block
        on the SSL lock the reader holds); an old urllib3 without shutdown() ends at the watch timeout."""
        self.stopped.set()
        resp = self._resp
        shutdown = getattr(resp, "shutdown", None)
        if shutdown is not None:
            try:
                shutdown()
            except Exception:  # noqa: BLE001 - already released or half-dead: the thread ends anyway
                pass
        self.thread.join(timeout=2.0)

    def _run(self) -> None:
        backoff = 0.2
        while not self.stopped.is_set():
            try:
                rv = self._list()
                backoff = 0.2
                self._watch(rv)
            except Exception as e:  # noqa: BLE001 - keep the cache alive through API outages
                if self.stopped.is_set():
                    return
                self.error = f"{type(e).__name__}: {e}"
                log.warning("watch %s: %s; relisting in %.1fs", self.kind, self.error, backoff)
                self.stopped.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _list(self) -> str:
        resp = self.list_fn(label_selector=self.selector, _preload_content=False)
        body = json.loads(resp.data)
        fresh: dict[Key, dict[str, Obj]] = {}
        for obj in body.get("items") or []:
            key = job_key(obj)
            if key is not None:
                fresh.setdefault(key, {})[obj["metadata"]["name"]] = obj
        with self.lock:
            for key in set(self.store) - set(fresh):
                self.tombstones[key] = time.time()
            self.store = fresh
        self.error = ""
        self.synced.set()
        self.on_change()
        self.on_end()  # a relist may have missed ends: one look is cheap
        return body["metadata"]["resourceVersion"]

    def _watch(self, rv: str) -> None:
        while not self.stopped.is_set():
            self._resp = self.list_fn(
                label_selector=self.selector, watch=True, resource_version=rv, allow_watch_bookmarks=True,
                timeout_seconds=self.timeout_s, _preload_content=False, _request_timeout=self.timeout_s + 30)
            try:
                for line in iter_resp_lines(self._resp):
                    rv = self._apply(json.loads(line)) or rv
            finally:
                resp, self._resp = self._resp, None
                if self.stopped.is_set():
                    resp.close()  # a shut-down socket must not go back to the pool
                else:
                    resp.release_conn()

    def _apply(self, ev: Obj) -> str | None:
        obj, typ = ev["object"], ev["type"]
        if typ == "ERROR":  # 410 Gone (our version is too old) and friends: relist
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
        rv = obj["metadata"].get("resourceVersion")
        key = job_key(obj) if typ != "BOOKMARK" else None
        if key is None:
            return rv
        name = obj["metadata"]["name"]
        with self.lock:
            if typ == "DELETED":
                objs = self.store.get(key, {})
                before = objs.pop(name, None)
                if not objs:
                    self.store.pop(key, None)
                    self.tombstones[key] = time.time()
            else:
                before = self.store.setdefault(key, {}).get(name)
                self.store[key][name] = obj
        self.on_change()
        if typ == "DELETED" or (ended(obj) and (before is None or not ended(before))):
            self.on_end()
        return rv

    def get(self, key: Key) -> list[Obj]:
        with self.lock:
            return list(self.store.get(key, {}).values())

    def keys(self) -> set[Key]:
        with self.lock:
            return set(self.store)


class WatchCache:
    """Pods + batch Jobs of one gpufleet instance, kept fresh by watches."""

    def __init__(self, core: Any, batch: Any, namespace: str, instance: str, timeout_s: int):
        sel = n.selector(instance)
        self._changed = threading.Condition()
        self.version = 0
        self.on_end: list[Callable[[], None]] = []  # called when an object of ours ended

        def list_pods(**kw: Any) -> Any:
            return core.list_namespaced_pod(namespace, **kw)

        def list_jobs(**kw: Any) -> Any:
            return batch.list_namespaced_job(namespace, **kw)

        self.pods = Reflector("pods", list_pods, sel, timeout_s, self._bump, self._ended)
        self.jobs = Reflector("jobs", list_jobs, sel, timeout_s, self._bump, self._ended)

    def _ended(self) -> None:
        for fn in list(self.on_end):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - a listener must not stop the watch
                log.warning("watch listener failed: %s", e)

    def _bump(self) -> None:
        with self._changed:
            self.version += 1
            self._changed.notify_all()

    def start(self) -> None:
        self.pods.start()
        self.jobs.start()

    def stop(self) -> None:
        self.pods.stop()
        self.jobs.stop()

    def wait_synced(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        return self.pods.synced.wait(timeout) and self.jobs.synced.wait(max(0.0, end - time.monotonic()))

    def wait_change(self, since: int, timeout: float) -> int:
        """Block until the cache changed after version `since` (or timeout); return the version."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != since, timeout)
            return self.version

    def objects(self, key: Key) -> tuple[list[Obj], list[Obj]]:
        """(batch Jobs, pods) of one gpufleet job attempt."""
        return self.jobs.get(key), self.pods.get(key)

    def deleted_at(self, key: Key) -> float | None:
        a, b = self.jobs.tombstones.get(key), self.pods.tombstones.get(key)
        return max((t for t in (a, b) if t is not None), default=None)

    def keys(self) -> set[Key]:
        return self.pods.keys() | self.jobs.keys()
