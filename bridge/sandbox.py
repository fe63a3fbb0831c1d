"""Sandbox mode: the bridge wired to local emulators, seeded with demo data.

Started by the run command when no real credentials are configured. The
emulators run in the launcher's process; web, worker and scheduler reach them
over HTTP exactly as they would reach Dynamics and ActiveCampaign.

``python -m bridge.sandbox demo-lead`` creates a lead through the emulated
Dataverse Web API and times its arrival in the emulated ActiveCampaign.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click
import requests

from bridge.config import Settings

SANDBOX_CLIENT_ID = "6f1c1b4e-0000-4000-8000-00000000a11c"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"  # only valid against the local emulator
SANDBOX_AC_KEY = "sandbox-activecampaign-key"
# A second app registration standing in for "someone working in Dynamics": changes the
# bridge's own app user makes are (rightly) ignored by the webhook as echoes.
SANDBOX_DEMO_CLIENT_ID = "6f1c1b4e-0000-4000-8000-0000000de770"
SANDBOX_DEMO_CLIENT_SECRET = "sandbox-demo-secret"
STATE_FILE = "sandbox.json"

DEMO_LEADS = [
    {
        "firstname": "Ada",
        "lastname": "Lovelace",
        "emailaddress1": "ada@example.com",
        "companyname": "Analytical Engines",
        "telephone1": "+44 20 7946 0001",
    },
    {
        "firstname": "Grace",
        "lastname": "Hopper",
        "emailaddress1": "grace@example.com",
        "companyname": "Navy Labs",
        "telephone1": "+1 202 555 0101",
    },
    {
        "firstname": "Alan",
        "lastname": "Turing",
        "emailaddress1": "alan@example.com",
        "companyname": "Bletchley Park",
    },
]
DEMO_CONTACTS = [
    {
        "firstname": "Katherine",
        "lastname": "Johnson",
        "emailaddress1": "katherine@example.com",
        "telephone1": "+1 757 555 0199",
    },
    {"firstname": "Margaret", "lastname": "Hamilton", "emailaddress1": "margaret@example.com"},
]
DEMO_AUTOMATIONS = [("Welcome series", "1"), ("Re-engagement", "1"), ("Old webinar follow-up", "2")]
DEMO_CAMPAIGNS = [
    ("November newsletter", "5"),
    ("Product launch", "5"),
    ("Draft: Spring offer", "0"),
]


@dataclass
class Sandbox:
    """The running emulators and what the bridge processes need to reach them."""

    dataverse: object
    activecampaign: object
    state_dir: Path
    admin_oid: str = ""
    sales_oid: str = ""

    @classmethod
    def start(cls, state_dir: Path) -> Sandbox:
        from emulators.activecampaign import ActiveCampaignEmulator
        from emulators.dataverse import DataverseEmulator

        state_dir.mkdir(parents=True, exist_ok=True)
        dataverse = DataverseEmulator(
            apps={
                SANDBOX_CLIENT_ID: SANDBOX_CLIENT_SECRET,
                SANDBOX_DEMO_CLIENT_ID: SANDBOX_DEMO_CLIENT_SECRET,
            },
            bridge_client_id=SANDBOX_CLIENT_ID,
        ).start()
        activecampaign = ActiveCampaignEmulator(api_key=SANDBOX_AC_KEY).start()
        sandbox = cls(dataverse, activecampaign, state_dir)
        sandbox._seed()
        (state_dir / STATE_FILE).write_text(json.dumps(sandbox.state(), indent=2))
        return sandbox

    def _seed(self) -> None:
        self.demo_lead_id = [self.dataverse.create_record("lead", lead) for lead in DEMO_LEADS][0]
        for contact in DEMO_CONTACTS:
            self.dataverse.create_record("contact", contact)
        for name, status in DEMO_AUTOMATIONS:
            self.activecampaign.seed_automation(name, status=status)
        for name, status in DEMO_CAMPAIGNS:
            self.activecampaign.seed_campaign(name, status=status)
        self.admin_oid, self.sales_oid = str(uuid.uuid4()), str(uuid.uuid4())
        self.dataverse.add_system_user(
            "Sam Admin", self.admin_oid, roles=["System Administrator", "ActiveCampaign Admin"]
        )
        self.dataverse.add_system_user(
            "Jane Doe", self.sales_oid, roles=["Salesperson", "ActiveCampaign User"]
        )

    def state(self) -> dict:
        return {
            "dataverse_url": self.dataverse.url,
            "tenant_id": self.dataverse.tenant_id,
            "org_id": self.dataverse.org_id,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "demo_client_id": SANDBOX_DEMO_CLIENT_ID,
            "demo_client_secret": SANDBOX_DEMO_CLIENT_SECRET,
            "authority_host": self.dataverse.authority_host,
            "ca_bundle": str(self.dataverse.ca_bundle),
            "activecampaign_url": self.activecampaign.url,
            "activecampaign_key": SANDBOX_AC_KEY,
        }

    def environment(self) -> dict[str, str]:
        """Settings for the bridge processes so they talk to the emulators."""
        return {
            "ENTRA_CLIENT_ID": SANDBOX_CLIENT_ID,
            "ENTRA_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
            "ENTRA_AUTHORITY_HOST": self.dataverse.authority_host,
            "BRIDGE_CA_BUNDLE": str(self.dataverse.ca_bundle),
            "BRIDGE_ALLOW_LOOPBACK_HOSTS": "1",
        }

    def configure_web_client(self, settings: Settings) -> None:
        """Set the solution's environment variables in the emulated org, as an admin would
        after importing the solution, so the pages in its web client find the bridge."""
        self.dataverse.set_environment_variable("ac_BridgeBaseUrl", settings.public_url)
        self.dataverse.set_environment_variable("ac_BridgeClientId", SANDBOX_CLIENT_ID)

    def admin_app_url(self) -> str:
        """Sign in as the seeded admin and open the ActiveCampaign app's Settings page."""
        return self.dataverse.signin_url(
            self.admin_oid, self.dataverse.webclient_url("ac_/html/settings.html")
        )

    def sales_form_url(self) -> str:
        """Sign in as the seeded sales user and open a demo lead's form."""
        return self.dataverse.signin_url(
            self.sales_oid,
            f"{self.dataverse.url}/main.aspx?pagetype=entityrecord&etn=lead&id={self.demo_lead_id}",
        )

    def connect_bridge(self, settings: Settings) -> None:
        """Create the connection and register the Dataverse webhooks, as an admin would."""
        from bridge.provisioning import connect_and_register

        connect_and_register(
            settings,
            dataverse_url=self.dataverse.url,
            org_id=self.dataverse.org_id,
            tenant_id=self.dataverse.tenant_id,
            ac_api_url=self.activecampaign.url,
            ac_api_key=SANDBOX_AC_KEY,
            name="Sandbox",
        )

    def banner(self, settings: Settings) -> str:
        python = (
            Path(sys.executable).relative_to(Path.cwd())
            if Path.cwd() in Path(sys.executable).parents
            else sys.executable
        )
        return "\n".join(
            [
                "",
                "ActiveCampaign Bridge is running in SANDBOX mode (no real credentials given).",
                f"  Bridge:                      {settings.public_url}  (/healthz, /readyz)",
                f"  Dataverse emulator Web API:  {self.dataverse.api_url}",
                f"  ActiveCampaign emulator API: {self.activecampaign.api_url}"
                f"  (Api-Token: {SANDBOX_AC_KEY})",
                f"  Emulator details:            {self.state_dir / STATE_FILE}",
                "Admin app (emulated Dynamics; accept the self-signed certificate), signed in as"
                " Sam Admin:",
                f"  {self.admin_app_url()}",
                "A lead form with Add to Automation, Send Campaign and Marketing activity, signed"
                " in as Jane Doe (sales user):",
                f"  {self.sales_form_url()}",
                f"  Other users: {self.dataverse.url}/_emulator/signin",
                "Try it: create a lead in Dynamics and watch it arrive in ActiveCampaign:",
                f"  {python} -m bridge.sandbox demo-lead --email you@example.com",
                "Stop with Ctrl+C.",
                "",
            ]
        )

    def stop(self) -> None:
        self.dataverse.stop()
        self.activecampaign.stop()


@click.group()
def cli() -> None:
    """Commands for the running sandbox."""


@cli.command("demo-lead")
@click.option("--email", default=lambda: f"demo-{uuid.uuid4().hex[:8]}@example.com")
@click.option("--first-name", default="Demo")
@click.option("--last-name", default="Lead")
@click.option("--state-dir", type=click.Path(path_type=Path), default=Path("instance/sandbox"))
@click.option("--timeout", type=float, default=30.0)
def demo_lead(email: str, first_name: str, last_name: str, state_dir: Path, timeout: float) -> None:
    """Create a lead in the Dataverse emulator and wait for it in ActiveCampaign."""
    from bridge.clients.dataverse import DataverseClient

    state = json.loads((state_dir / STATE_FILE).read_text())
    dataverse = DataverseClient(
        state["dataverse_url"],
        tenant_id=state["tenant_id"],
        client_id=state["demo_client_id"],
        client_secret=state["demo_client_secret"],
        authority_host=state["authority_host"],
        verify=state["ca_bundle"],
    )
    started = time.monotonic()
    lead_id = dataverse.create(
        "leads", {"firstname": first_name, "lastname": last_name, "emailaddress1": email}
    )
    click.echo(f"Created lead {lead_id} <{email}> in Dynamics; waiting for ActiveCampaign…")
    while time.monotonic() - started < timeout:
        found = requests.get(
            f"{state['activecampaign_url']}/api/3/contacts",
            params={"email": email},
            headers={"Api-Token": state["activecampaign_key"]},
            timeout=5,
        )
        contacts = found.json().get("contacts", []) if found.ok else []
        if contacts:
            elapsed = time.monotonic() - started
            click.echo(
                f"Arrived in ActiveCampaign as contact {contacts[0]['id']} after {elapsed:.2f} s"
            )
            return
        time.sleep(0.2)
    raise SystemExit(f"not in ActiveCampaign after {timeout:.0f} s: check the worker's output")


if __name__ == "__main__":
    cli()
