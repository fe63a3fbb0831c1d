"""``python -m emulators.dataverse``: run the emulator standalone (sandbox mode).

Prints one JSON line (URL, tenant, app id/secret, CA bundle path ...) and serves until killed.
The state dir keeps the TLS certificate and signing key so clients keep trusting it across
restarts; the data itself lives in memory.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from . import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_ORG_ID, DEMO_TENANT_ID, DataverseEmulator


def seed_demo_data(emu: DataverseEmulator) -> None:
    """A few leads and contacts so a newcomer sees something in sandbox mode."""
    emu.add_system_user(
        "Dana Admin",
        "0d1e2f30-4a5b-4c6d-8e7f-901a2b3c4d5e",
        "dana@sandbox.example",
        ["System Administrator", "ActiveCampaign Admin"],
    )
    emu.add_system_user(
        "Sam Seller",
        "1e2f3041-5b6c-4d7e-9f80-a12b3c4d5e6f",
        "sam@sandbox.example",
        ["Salesperson", "ActiveCampaign User"],
    )
    for first, last, email, company in [
        ("Ada", "Lovelace", "ada@example.com", "Analytical Engines"),
        ("Grace", "Hopper", "grace@example.com", "Compilers Inc"),
        ("Alan", "Turing", "alan@example.com", "Bletchley Labs"),
    ]:
        emu.create_record(
            "lead",
            {
                "firstname": first,
                "lastname": last,
                "emailaddress1": email,
                "companyname": company,
                "leadsourcecode": 8,
            },
        )
    for first, last, email in [
        ("Katherine", "Johnson", "katherine@example.com"),
        ("Edsger", "Dijkstra", "edsger@example.com"),
    ]:
        emu.create_record("contact", {"firstname": first, "lastname": last, "emailaddress1": email})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.dataverse")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--tenant-id", default=DEMO_TENANT_ID)
    parser.add_argument("--org-id", default=DEMO_ORG_ID)
    parser.add_argument("--org-name", default="unqsandbox")
    parser.add_argument("--client-id", default=DEMO_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEMO_CLIENT_SECRET)
    parser.add_argument("--seed-demo", action="store_true", help="create demo users and rows")
    args = parser.parse_args(argv)
    emu = DataverseEmulator(
        tenant_id=args.tenant_id,
        org_id=args.org_id,
        org_name=args.org_name,
        apps={args.client_id: args.client_secret},
        state_dir=args.state_dir,
    )
    emu.start(port=args.port)
    if args.seed_demo:
        seed_demo_data(emu)
    info = emu.info()
    (emu.state_dir / "dataverse-emulator.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
