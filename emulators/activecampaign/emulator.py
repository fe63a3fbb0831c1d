"""``ActiveCampaignEmulator``: one emulated AC account served over real HTTP, plus the Python
handles tests and benchmarks use to seed it, inspect it and simulate what happens inside AC
(user edits, opens, clicks, automation webhooks).
"""

from __future__ import annotations

from typing import Any

from emulators.server import RunningServer, serve_in_thread

from . import shapes
from .app import create_app
from .bulk_import import BulkImporter
from .ratelimit import RequestLog, SlidingWindow
from .store import Store, as_int, iso
from .webhooks import WebhookSender, automation_payload, event_payload


class ActiveCampaignEmulator:
    """An ActiveCampaign account (API v3 + v1 + webhook sender) on 127.0.0.1.

    Ids returned by the ``seed_*`` helpers are strings, like every id on AC's wire; all helpers
    accept ids as strings or ints.
    """

    def __init__(
        self,
        api_key: str = "sandbox-key",
        requests_per_second: int = 5,
        bulk_multi_per_minute: int = 100,
        bulk_single_per_minute: int = 20,
        retry_after_seconds: int = 1,
        window_seconds: float = 1.0,
        bulk_window_seconds: float = 60.0,
    ) -> None:
        self.api_key = api_key
        self.retry_after_seconds = retry_after_seconds
        self.store = Store()
        self.limiter = SlidingWindow(requests_per_second, window_seconds)
        self.log = RequestLog()
        self.importer = BulkImporter(
            self.store, bulk_multi_per_minute, bulk_single_per_minute, bulk_window_seconds
        )
        self.sender = WebhookSender(self.store)
        # Injected failures: [status, remaining count, path substring or None] (see fail_next).
        self.faults: list[list] = []
        self.app = create_app(self)
        self._server: RunningServer | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, port: int = 0) -> ActiveCampaignEmulator:
        self._server = serve_in_thread(self.app, port=port, quiet=True)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.sender.close()

    def __enter__(self) -> ActiveCampaignEmulator:
        return self if self._server else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The account's API URL as AC shows it in Settings → Developer."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.url

    @property
    def api_url(self) -> str:
        return self.url + "/api/3"

    # -- limits and the request log ----------------------------------------------------------

    @property
    def request_log(self) -> list[dict]:
        """``{ts, wall, method, path, query, status, admitted}`` for every API request (429s too).

        ``admitted`` is False for requests the rate limiter rejected or that failed auth.
        Control requests under ``/_emulator/`` are not logged.
        """
        return self.log.entries()

    def max_requests_in_any_window(self, seconds: float = 1.0) -> int:
        """Most *admitted* requests (429s excluded) within any ``seconds``-long span."""
        return self.log.max_in_window(seconds)

    def count_status(self, status: int) -> int:
        return self.log.count_status(status)

    def reset_log(self) -> None:
        """Clear the request log and the rate-limit windows (a fresh budget for the next run)."""
        self.log.clear()
        self.limiter.reset()

    def set_limits(
        self,
        requests_per_second: int | None = None,
        bulk_multi_per_minute: int | None = None,
        bulk_single_per_minute: int | None = None,
        retry_after_seconds: int | None = None,
        window_seconds: float | None = None,
        bulk_window_seconds: float | None = None,
    ) -> None:
        self.limiter.configure(requests_per_second, window_seconds)
        self.importer.multi.configure(bulk_multi_per_minute, bulk_window_seconds)
        self.importer.single.configure(bulk_single_per_minute, bulk_window_seconds)
        if retry_after_seconds is not None:
            self.retry_after_seconds = int(retry_after_seconds)

    def fail_next(self, count: int, status: int = 503, path_contains: str | None = None) -> None:
        """Answer the next ``count`` authenticated API requests (whose path contains
        ``path_contains``, if given) with ``status`` and an HTML-ish body, as an overloaded
        ActiveCampaign front end does. Used to test retries."""
        with self.store.lock:
            self.faults.append([int(status), int(count), path_contains])

    def take_fault(self, path: str) -> int | None:
        """The injected status for this request, if one is pending (used by the app)."""
        with self.store.lock:
            for fault in self.faults:
                if fault[1] > 0 and (fault[2] is None or fault[2] in path):
                    fault[1] -= 1
                    return int(fault[0])
        return None

    def limits(self) -> dict:
        return {
            "requests_per_second": self.limiter.limit,
            "window_seconds": self.limiter.seconds,
            "bulk_multi_per_minute": self.importer.multi.limit,
            "bulk_single_per_minute": self.importer.single.limit,
            "bulk_window_seconds": self.importer.multi.seconds,
            "retry_after_seconds": self.retry_after_seconds,
        }

    def reset(self) -> None:
        """Forget all data, batches, deliveries and log entries."""
        self.store.reset()
        self.importer.batches.clear()
        self.importer.multi.reset()
        self.importer.single.reset()
        self.sender.clear()
        self.faults.clear()
        self.reset_log()

    # -- seeding ----------------------------------------------------------------------------

    def seed_automation(self, name: str, status: str = "1") -> str:
        with self.store.lock:
            return str(self.store.create_automation(name, status)["id"])

    def seed_campaign(
        self,
        name: str,
        status: str = "5",
        type: str = "single",  # noqa: A002
        message_subject: str | None = None,
        **attrs: Any,
    ) -> str:
        """A campaign with one message (and its read tracker plus any ``links=[urls]``)."""
        with self.store.lock:
            campaign = self.store.create_campaign(name, status, type, message_subject, **attrs)
            return str(campaign["id"])

    def campaign_message_id(self, campaign_id: str | int) -> str:
        """The ``messageid`` v1 ``campaign_send`` needs for this campaign."""
        with self.store.lock:
            rows = self.store.messages_of(as_int(campaign_id) or 0)
            return str(rows[0]["message"]) if rows else ""

    def seed_field(
        self,
        title: str,
        type: str,
        perstag: str | None = None,  # noqa: A002
        options: list[str] | None = None,
        **attrs: Any,
    ) -> str:
        with self.store.lock:
            field = self.store.create_field(title, type, perstag, **attrs)
            for index, value in enumerate(options or [], start=1):
                self.store.add_field_option(field["id"], value, value, index)
            return str(field["id"])

    def seed_tag(self, name: str) -> str:
        with self.store.lock:
            return str(self.store.ensure_tag(name)["id"])

    def seed_contact(self, email: str, **attrs: Any) -> str:
        """Create or update a contact without touching the request log or webhooks.

        ``attrs``: firstName/first_name, lastName/last_name, phone, tags=[names],
        fields={field id or perstag: value}, lists=[list ids].
        """
        tags = attrs.pop("tags", []) or []
        fields = attrs.pop("fields", {}) or {}
        lists = attrs.pop("lists", []) or []
        store = self.store
        with store.lock:
            contact = store.contact_by_email(email)
            if contact is None:
                contact = store.create_contact(email, **attrs)
            else:
                store.update_contact(contact, **attrs)
            for name in tags:
                store.add_contact_tag(contact, store.ensure_tag(name))
            for ref, value in fields.items():
                field = store.field_by_ref(ref)
                if field is None:
                    raise KeyError(f"unknown field {ref!r}")
                store.set_field_value(contact, field, value)
            for list_id in lists:
                store.set_list_status(contact, int(list_id), 1)
            return str(contact["id"])

    def seed_demo(self) -> dict:
        """A small, realistic account for sandbox mode."""
        return {
            "automations": [
                self.seed_automation("Welcome series"),
                self.seed_automation("Webinar follow-up"),
                self.seed_automation("Old nurture (inactive)", status="2"),
            ],
            "campaigns": [
                self.seed_campaign(
                    "Spring newsletter",
                    message_subject="What's new this spring",
                    links=["https://example.com/spring"],
                ),
                self.seed_campaign("Product launch", message_subject="Meet our new product"),
            ],
            "fields": [
                self.seed_field("Industry", "dropdown", options=["Software", "Retail"]),
                self.seed_field("Interests", "listbox", options=["Email", "SMS", "Ads"]),
            ],
            "tags": [
                self.seed_tag(t)
                for t in (
                    "D365: Lead",
                    "D365: Contact",
                    "D365: Pushed from Dynamics",
                    "D365: Pulled from ActiveCampaign",
                )
            ],
            "contacts": [
                self.seed_contact(
                    "ada@example.com", firstName="Ada", lastName="Lovelace", tags=["newsletter"]
                ),
                self.seed_contact("alan@example.com", firstName="Alan", lastName="Turing"),
            ],
        }

    # -- inspection -------------------------------------------------------------------------

    def _describe(self, contact: dict) -> dict:
        store = self.store
        fields = {str(fv["field"]): fv["value"] for fv in store.values_of(contact["id"])}
        return {
            "id": str(contact["id"]),
            "email": contact["email"],
            "firstName": contact["firstName"],
            "lastName": contact["lastName"],
            "phone": contact["phone"],
            "fields": fields,
            "tags": store.tag_names_of(contact["id"]),
            "lists": {str(r["list"]): str(r["status"]) for r in store.lists_of(contact["id"])},
            "automations": [str(r["automation"]) for r in store.automations_of(contact["id"])],
            "sentcnt": contact["sentcnt"],
            "cdate": iso(contact["cdate"]),
            "udate": iso(contact["udate"]),
        }

    def find_contact(self, email: str) -> dict | None:
        with self.store.lock:
            contact = self.store.contact_by_email(email)
            return self._describe(contact) if contact else None

    def contacts(self) -> list[dict]:
        with self.store.lock:
            return [
                self._describe(c)
                for c in sorted(self.store.contacts.values(), key=lambda c: c["id"])
            ]

    def activities_for(self, contact_id: str | int) -> list[dict]:
        """The ``activities`` array GET /activities?contact= returns (newest first)."""
        wanted = as_int(contact_id)
        with self.store.lock:
            rows = self.store.activities_of(wanted) if wanted is not None else []
            rows.sort(key=lambda a: (a["tstamp"], a["id"]), reverse=True)
            return [shapes.activity(a) for a in rows]

    def seed_activity(
        self,
        contact_id: str | int,
        reference_type: str,
        reference_action: str = "",
        data: dict | None = None,
        when: Any = None,
        model_name: str | None = None,
    ) -> str:
        """An activity on the contact's feed (``when``: an aware datetime; default now), e.g.
        ``seed_activity(c, "SubscriberList", "unsubscribe", {"list": "1", "name": "Newsletter"})``.
        """
        with self.store.lock:
            row = self.store.add_activity(
                as_int(contact_id) or 0,
                reference_type,
                self.store.next_id("log"),
                reference_action,
                model_name or reference_type.lower(),
                data,
            )
            if when is not None:
                row["tstamp"] = when
            return str(row["id"])

    def webhook_deliveries(self) -> list[dict]:
        return self.sender.snapshot()

    def flush_webhooks(self, timeout: float = 5.0) -> bool:
        """Wait for webhooks queued by API calls to be delivered."""
        return self.sender.flush(timeout)

    # -- things that happen inside AC --------------------------------------------------------

    def emit(
        self,
        event_type: str,
        contact: dict,
        source: str = "api",
        list_id: int | None = None,
        **extra: Any,
    ) -> None:
        """Queue an event caused by an API call (caller holds the store lock)."""
        targets = self.sender.targets(event_type, source)
        if not targets:
            return
        body = event_payload(self.store, event_type, contact, source, extra)
        if list_id is not None:
            body["list"] = str(list_id)
        for hook_id, url in targets:
            self.sender.enqueue(hook_id, url, body)

    def fire_webhook_event(
        self, event_type: str, contact_id: str | int, initiated_from: str = "admin", **extra: Any
    ) -> list[dict]:
        """Simulate an event in AC (e.g. a user edit) and POST it now to every matching webhook.

        ``extra`` becomes more form keys; nested dicts flatten to brackets
        (``campaign={"id": "1"}`` → ``campaign[id]``). Returns one delivery record per webhook.
        """
        with self.store.lock:
            contact = self.store.contacts.get(as_int(contact_id) or 0)
            if contact is None:
                raise KeyError(f"no contact {contact_id}")
            targets = self.sender.targets(event_type, initiated_from)
            body = event_payload(self.store, event_type, contact, initiated_from, extra)
        return [self.sender.post(hook_id, url, body) for hook_id, url in targets]

    def fire_automation_webhook(
        self, url: str, contact_id: str | int, automation_id: str | int
    ) -> dict:
        """POST the body of an automation's "Webhook" action (no type/date_time; ``seriesid``)."""
        with self.store.lock:
            contact = self.store.contacts.get(as_int(contact_id) or 0)
            if contact is None:
                raise KeyError(f"no contact {contact_id}")
            body = automation_payload(self.store, contact, as_int(automation_id) or 0)
        return self.sender.post(None, url, body)

    def simulate_open(self, contact_id: str | int, campaign_id: str | int) -> list[dict]:
        """A contact opens a campaign: a ``Log``/``open`` activity and an ``open`` webhook."""
        return self._campaign_event(contact_id, campaign_id, "open", "Log", None)

    def simulate_click(
        self, contact_id: str | int, campaign_id: str | int, url: str = "https://example.com/"
    ) -> list[dict]:
        """A contact clicks a link: a ``LinkData`` activity and a ``click`` webhook."""
        return self._campaign_event(contact_id, campaign_id, "click", "LinkData", url)

    def _campaign_event(
        self,
        contact_id: str | int,
        campaign_id: str | int,
        kind: str,
        reference_type: str,
        url: str | None,
    ) -> list[dict]:
        store = self.store
        with store.lock:
            campaign = store.campaigns[as_int(campaign_id) or 0]
            message_id = int(self.campaign_message_id(campaign["id"]) or 0)
            message = store.messages.get(message_id, {})
            extra: dict[str, Any] = {
                "campaign": {
                    "id": str(campaign["id"]),
                    "name": campaign["name"],
                    "message": {"id": str(message_id), "subject": message.get("subject", "")},
                }
            }
            if url is not None:
                link = next(
                    (
                        r
                        for r in store.links.values()
                        if r["campaign"] == campaign["id"] and r["link"] == url
                    ),
                    None,
                )
                link = link or store.add_link(campaign["id"], message_id, url, url)
                extra["link"] = {"id": str(link["id"]), "url": url}
                campaign["linkclicks"] += 1
                reference_id = link["id"]
            else:
                campaign["opens"] += 1
                reference_id = store.next_id("log")
            store.add_activity(
                as_int(contact_id) or 0,
                reference_type,
                reference_id,
                kind,
                "log" if reference_type == "Log" else "link-data",
                {
                    "campaign": str(campaign["id"]),
                    "message": str(message_id),
                    "subject": message.get("subject", ""),
                    "name": campaign["name"],
                    **({"url": url} if url else {}),
                },
            )
        return self.fire_webhook_event(kind, contact_id, "public", **extra)
