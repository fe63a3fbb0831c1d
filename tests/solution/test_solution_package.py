"""The Dynamics solution package: pack, check, determinism, layout, contents, broken ribbons."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from solution.__main__ import main
from solution.jsdefs import defined_names
from solution.layout import SRC_DIR, VERSION_FILE, WEBRESOURCES_DIR, LayoutError, read_version
from solution.pack import pack

ENTITIES = ("lead", "contact")
ACTIONS = {"AddToAutomation": "addToAutomation", "SendCampaign": "sendCampaign"}
PAGES = ("dashboard", "settings", "user_management", "data_configuration", "sync_settings",
         "sync_health", "action_dialog", "timeline")  # fmt: skip


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    """A private copy of the solution source and web resources that a test may break."""
    src = tmp_path / "src"
    web = tmp_path / "webresources"
    shutil.copytree(SRC_DIR, src)
    shutil.copytree(WEBRESOURCES_DIR, web)
    version = tmp_path / "VERSION"
    shutil.copy(VERSION_FILE, version)
    return {"src": src, "web": web, "dist": tmp_path / "dist", "version": version}


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return pack(dist=tmp_path_factory.mktemp("dist"))


def _pack(tree: dict[str, Path]) -> list[Path]:
    return pack(tree["src"], tree["web"], tree["dist"], tree["version"])


def _check(zips: list[Path], xsd_dir: Path) -> int:
    args = ["check", "--xsd-dir", str(xsd_dir)]
    for path in zips:
        args += ["--zip", str(path)]
    return main(args)


def _member(path: Path, name: str) -> etree._Element:
    with zipfile.ZipFile(path) as archive:
        return etree.fromstring(archive.read(name))


def test_pack_then_check_passes_with_the_schemas(
    packed: list[Path], shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert [p.name for p in packed] == [
        f"ActiveCampaignBridge_{read_version()}.zip",
        f"ActiveCampaignBridge_{read_version()}_managed.zip",
    ]
    assert _check(packed, shared_dir / "dataverse" / "xsd") == 0
    out = capsys.readouterr().out
    assert out.count(": OK (") == 2
    assert "2 schemas" in out
    assert "schema validation skipped" not in out


def test_check_without_the_schemas_still_runs_the_other_checks(
    packed: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _check(packed, tmp_path / "no-xsd-here") == 0
    out = capsys.readouterr().out
    assert "schema validation skipped" in out
    assert "12 ribbon functions" in out


def test_command_line_pack_and_check(tree: dict[str, Path], tmp_path: Path) -> None:
    common = ["--dist", str(tree["dist"]), "--version-file", str(tree["version"])]
    sources = ["--src", str(tree["src"]), "--webresources", str(tree["web"])]
    assert main(["pack", *sources, *common]) == 0
    assert main(["check", *common, "--xsd-dir", str(tmp_path / "none")]) == 0


def test_two_packs_are_byte_identical(tree: dict[str, Path], tmp_path: Path) -> None:
    first = [p.read_bytes() for p in _pack(tree)]
    shutil.rmtree(tree["dist"])
    second = [p.read_bytes() for p in _pack(tree)]
    assert first == second
    with zipfile.ZipFile(_pack(tree)[0]) as archive:
        infos = archive.infolist()
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    names = [info.filename for info in infos]
    assert names[0] == "[Content_Types].xml" and names[1:] == sorted(names[1:])


def test_zip_layout_matches_a_real_export(packed: list[Path], shared_dir: Path) -> None:
    reference = shared_dir / "dataverse" / "reference-solutions" / "tactec-xml-1.1-ziplayout"
    reference_root = {p.name for p in reference.iterdir()}
    for path in packed:
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None
            names = archive.namelist()
        root_files = {n for n in names if "/" not in n}
        assert root_files == reference_root == {"[Content_Types].xml", "solution.xml",
                                                "customizations.xml"}  # fmt: skip
        folders = {n.split("/")[0] for n in names if "/" in n}
        assert folders == {"WebResources", "environmentvariabledefinitions"}
        ours = _member(path, "[Content_Types].xml")
        theirs = etree.parse(str(reference / "[Content_Types].xml")).getroot()
        assert ours.tag == theirs.tag
        assert theirs[0].attrib == ours[0].attrib  # the xml Default, exactly as exported


def test_solution_xml_carries_the_manifest(packed: list[Path]) -> None:
    unmanaged, managed = (_member(p, "solution.xml").find("SolutionManifest") for p in packed)
    assert unmanaged.findtext("UniqueName") == "ActiveCampaignBridge"
    assert unmanaged.findtext("Version") == read_version()
    assert (unmanaged.findtext("Managed"), managed.findtext("Managed")) == ("0", "1")
    assert unmanaged.findtext("Publisher/CustomizationPrefix") == "ac"
    assert unmanaged.findtext("Publisher/CustomizationOptionValuePrefix") == "10001"
    roots = {(r.get("type"), r.get("schemaName") or r.get("id"))
             for r in unmanaged.iterfind("RootComponents/RootComponent")}  # fmt: skip
    assert {("1", "lead"), ("1", "contact"), ("9", "ac_syncstatus"), ("80", "ac_ActiveCampaign"),
            ("62", "ac_ActiveCampaign"), ("380", "ac_BridgeBaseUrl"),
            ("380", "ac_BridgeClientId"), ("61", "ac_/js/ribbon.js")} <= roots  # fmt: skip
    assert {("61", f"ac_/html/{page}.html") for page in PAGES} <= roots
    assert sum(1 for kind, _ in roots if kind == "20") == 2


def test_customizations_xml_carries_every_component(packed: list[Path]) -> None:
    custom = _member(packed[0], "customizations.xml")
    assert [c.tag for c in custom][:2] == ["Entities", "Roles"]
    roles = {r.get("name"): r for r in custom.iterfind("Roles/Role")}
    assert set(roles) == {"ActiveCampaign Admin", "ActiveCampaign User"}
    for role in roles.values():
        privileges = {p.get("name") for p in role.iterfind("RolePrivileges/RolePrivilege")}
        assert "prvReadEnvironmentVariableDefinition" in privileges
        assert not any(p.endswith(("Lead", "Contact")) for p in privileges), privileges
    options = custom.iterfind("optionsets/optionset[@Name='ac_syncstatus']/options/option")
    assert {o.get("value"): o.find("labels/label").get("description") for o in options} == {
        "100010000": "Synced", "100010001": "Excluded", "100010002": "Failing"}
    for entity in custom.iterfind("Entities/Entity"):
        name = entity.findtext("Name").lower()
        assert name in ENTITIES
        columns = {a.findtext("LogicalName"): a for a in entity.iter("attribute")}
        assert columns["ac_activecampaigncontactid"].findtext("Type") == "nvarchar"
        assert columns["ac_activecampaigncontactid"].findtext("MaxLength") == "50"
        assert columns["ac_lastsyncedon"].findtext("Type") == "datetime"
        assert columns["ac_syncstatus"].findtext("OptionSetName") == "ac_syncstatus"
        ribbon = entity.find("RibbonDiffXml")
        buttons = {b.get("Id"): b for b in ribbon.iter("Button")}
        for key, function in ACTIONS.items():
            for place, location in (("Form", f"Mscrm.Form.{name}.MainTab"),
                                    ("HomepageGrid", f"Mscrm.HomepageGrid.{name}."),
                                    ("SubGrid", f"Mscrm.SubGrid.{name}.")):  # fmt: skip
                button = buttons[f"ac.{name}.{key}.{place}.Button"]
                assert button.getparent().getparent().get("Location").startswith(location)
                command = ribbon.find(f"CommandDefinitions/CommandDefinition[@Id="
                                      f"'{button.get('Command')}']")  # fmt: skip
                call = command.find("Actions/JavaScriptFunction")
                assert call.get("FunctionName") == f"ActiveCampaignBridge.Ribbon.{function}"
                assert call.get("Library") == "$webresource:ac_/js/ribbon.js"
                parameter = "PrimaryControl" if place == "Form" else "SelectedControl"
                assert call.find("CrmParameter").get("Value") == parameter
                rules = [r.get("Id") for r in command.iterfind("EnableRules/EnableRule")]
                assert f"ac.{name}.ActiveCampaignUser.EnableRule" in rules
                assert (f"ac.{name}.RecordSaved.EnableRule" if place == "Form"
                        else f"ac.{name}.Selection1To250.EnableRule") in rules  # fmt: skip
        assert f"ac.{name}.MarketingActivity.Form.Button" in buttons
        count = ribbon.find(".//SelectionCountRule")
        assert (count.get("Minimum"), count.get("Maximum")) == ("1", "250")
        assert ribbon.find(".//FormStateRule").attrib == {"State": "Create", "InvertResult": "true"}
        custom_rule = ribbon.find(".//CustomRule")
        assert custom_rule.get("FunctionName") == "ActiveCampaignBridge.Ribbon.isActiveCampaignUser"
    names = {w.findtext("Name") for w in custom.iterfind("WebResources/WebResource")}
    assert {f"ac_/html/{page}.html" for page in PAGES} <= names
    assert {"ac_/js/ribbon.js", "ac_/js/bridge_client.js", "ac_/css/bridge.css",
            "ac_/img/activecampaign16.svg", "ac_/img/activecampaign32.svg"} <= names  # fmt: skip
    app = custom.find("AppModules/AppModule")
    assert app.findtext("UniqueName") == "ac_ActiveCampaign"
    assert app.find("AppModuleRoleMaps/Role").get("id").strip("{}") == \
        roles["ActiveCampaign Admin"].get("id").strip("{}")  # fmt: skip
    subareas = {s.find("Titles/Title").get("Title"): s.get("Url")
                for s in custom.iterfind("AppModuleSiteMaps/AppModuleSiteMap/SiteMap//SubArea")}
    assert subareas == {
        "Dashboard": "$webresource:ac_/html/dashboard.html",
        "Settings": "$webresource:ac_/html/settings.html",
        "User Management": "$webresource:ac_/html/user_management.html",
        "Data Configuration": "$webresource:ac_/html/data_configuration.html",
        "Sync Settings": "$webresource:ac_/html/sync_settings.html",
        "Sync Health": "$webresource:ac_/html/sync_health.html",
    }
    with zipfile.ZipFile(packed[0]) as archive:
        for schema_name in ("ac_BridgeBaseUrl", "ac_BridgeClientId"):
            definition = etree.fromstring(archive.read(
                f"environmentvariabledefinitions/{schema_name}/environmentvariabledefinition.xml"))
            assert definition.get("schemaname") == schema_name
            assert definition.findtext("type") == "100000000"  # String


def _ribbon_file(tree: dict[str, Path]) -> Path:
    return tree["src"] / "Entities" / "Lead" / "RibbonDiff.xml"


BREAKAGES = {
    "unknown function": (
        'FunctionName="ActiveCampaignBridge.Ribbon.sendCampaign"',
        'FunctionName="ActiveCampaignBridge.Ribbon.sendCampain"',
        "FunctionName 'ActiveCampaignBridge.Ribbon.sendCampain' is not defined in ac_/js/ribbon.js",
    ),
    "missing web resource": (
        'Image32by32="$webresource:ac_/img/activecampaign32.svg"',
        'Image32by32="$webresource:ac_/img/missing32.svg"',
        "$webresource:ac_/img/missing32.svg does not exist",
    ),
    "missing library": (
        'Library="$webresource:ac_/js/ribbon.js"',
        'Library="$webresource:ac_/js/ribon.js"',
        "$webresource:ac_/js/ribon.js does not exist",
    ),
    "undefined label": (
        'LabelText="$LocLabels:ac.lead.SendCampaign.LabelText"',
        'LabelText="$LocLabels:ac.lead.SendCampaign.Label"',
        "LocLabel 'ac.lead.SendCampaign.Label' is not defined",
    ),
    "undefined enable rule": (
        '<EnableRule Id="ac.lead.Selection1To250.EnableRule" />',
        '<EnableRule Id="ac.lead.Selection1To25.EnableRule" />',
        "EnableRule 'ac.lead.Selection1To25.EnableRule' is not defined",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_check_names_a_broken_ribbon(
    breakage: str, tree: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, message = BREAKAGES[breakage]
    ribbon = _ribbon_file(tree)
    text = ribbon.read_text(encoding="utf-8")
    assert old in text
    ribbon.write_text(text.replace(old, new, 1), encoding="utf-8")
    zips = _pack(tree)
    assert _check(zips[:1], tmp_path / "no-xsd") == 1
    err = capsys.readouterr().err
    assert message in err
    assert "customizations.xml: Entities > Entity[Name='Lead'] > RibbonDiffXml" in err


def test_check_rejects_an_element_ribbon_core_does_not_allow(
    tree: dict[str, Path], shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ribbon = _ribbon_file(tree)
    text = ribbon.read_text(encoding="utf-8")
    ribbon.write_text(text.replace("<DisplayRules />\n      <Actions>",
                                   "<DisplayRules />\n      <Bogus />\n      <Actions>", 1),
                      encoding="utf-8")  # fmt: skip
    assert _check(_pack(tree)[:1], shared_dir / "dataverse" / "xsd") == 1
    err = capsys.readouterr().err
    assert "RibbonCore.xsd" in err and "Bogus" in err
    assert "Entities > Entity[Name='Lead'] > RibbonDiffXml" in err


def test_pack_refuses_a_web_resource_without_a_description(tree: dict[str, Path]) -> None:
    (tree["web"] / "js" / "orphan.js").write_text("var x = 1;\n", encoding="utf-8")
    with pytest.raises(LayoutError, match=r"orphan\.js: not described in the solution"):
        _pack(tree)


def test_a_bad_version_file_is_refused(tree: dict[str, Path]) -> None:
    tree["version"].write_text("1.0-beta\n", encoding="utf-8")
    with pytest.raises(LayoutError, match="not a Dataverse version"):
        _pack(tree)


def test_defined_names_reads_assignments_and_object_literals() -> None:
    source = """
    // ActiveCampaignBridge.Ribbon.commented = function () {};
    var text = "ActiveCampaignBridge.Ribbon.quoted = function () {}";
    ActiveCampaignBridge.Ribbon.assigned = function (control) { return /[{]/.test(control); };
    window.ActiveCampaignBridge.Ribbon.arrow = (a) => a;
    var Other = { Ribbon: {
      literal: function () { return { notMember: 1 }; }, method() {}, alias } };
    function bare() {}
    """
    names = defined_names(source)
    assert {"ActiveCampaignBridge.Ribbon.assigned", "ActiveCampaignBridge.Ribbon.arrow",
            "Other.Ribbon.literal", "Other.Ribbon.method", "Other.Ribbon.alias", "bare"} <= names
    assert not {"ActiveCampaignBridge.Ribbon.commented", "ActiveCampaignBridge.Ribbon.quoted",
                "Other.Ribbon.notMember"} & names  # fmt: skip


def test_webresources_ribbon_defines_what_the_ribbon_calls() -> None:
    names = defined_names((WEBRESOURCES_DIR / "js" / "ribbon.js").read_text(encoding="utf-8"))
    assert {f"ActiveCampaignBridge.Ribbon.{n}" for n in
            ("addToAutomation", "sendCampaign", "openMarketingActivity",
             "isActiveCampaignUser")} <= names  # fmt: skip


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

FAKE_XRM = """
window.navigateCalls = [];
window.alerts = [];
window.Xrm = {
  Navigation: {
    navigateTo: function (page, options) {
      window.navigateCalls.push({page: page, options: options});
      return Promise.resolve();
    },
    openAlertDialog: function (strings) {
      window.alerts.push(strings.text);
      return Promise.resolve();
    }
  },
  Utility: { getGlobalContext: function () { return { userSettings: window.fakeUserSettings }; } }
};
window.fakeUserSettings = { roles: { forEach: function (f) {
  [{id: "1", name: "Salesperson"}, {id: "2", name: "ActiveCampaign User"}].forEach(f); } } };
function record(id, name) { return { getId: function () { return id; },
                                     getEntityName: function () { return name; } }; }
window.formContext = { data: { entity: record("{4A5B6C7D-0000-4000-8000-00000000ABCD}", "lead") } };
window.newForm = { data: { entity: record("", "lead") } };
function rows(ids) {
  var list = ids.map(function (id) { return { data: { entity: record(id, "contact") } }; });
  return { forEach: function (f) { list.forEach(f); },
           getLength: function () { return list.length; } };
}
window.gridControl = {
  getEntityName: function () { return "contact"; },
  getGrid: function () { return { getSelectedRows: function () {
    return rows(["{AAAAAAAA-1111-4111-8111-111111111111}", "bbbbbbbb-2222-4222-8222-222222222222",
                 "{AAAAAAAA-1111-4111-8111-111111111111}"]); } }; }
};
window.bigGrid = { getEntityName: function () { return "lead"; }, getGrid: function () {
  return { getSelectedRows: function () {
    var ids = [];
    for (var i = 0; i < 251; i++) {
      ids.push("00000000-0000-4000-8000-" + ("000000000000" + i).slice(-12));
    }
    return rows(ids); } }; } };
"""


@pytest.mark.browser
def test_ribbon_opens_the_action_dialog_in_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api")
    script = (WEBRESOURCES_DIR / "js" / "ribbon.js").read_text(encoding="utf-8")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_content("<!DOCTYPE html><html><body></body></html>")
            page.add_script_tag(content=FAKE_XRM)
            page.add_script_tag(content=script)
            page.evaluate("""async () => {
                await ActiveCampaignBridge.Ribbon.addToAutomation(window.formContext, "lead");
                await ActiveCampaignBridge.Ribbon.sendCampaign(window.gridControl, "contact");
                await ActiveCampaignBridge.Ribbon.addToAutomation(window.newForm, "lead");
                await ActiveCampaignBridge.Ribbon.addToAutomation(window.bigGrid, "lead");
            }""")
            calls = page.evaluate("window.navigateCalls")
            alerts = page.evaluate("window.alerts")
            is_user = page.evaluate("ActiveCampaignBridge.Ribbon.isActiveCampaignUser()")
            page.evaluate("""() => {
                window.fakeUserSettings = { roles: { forEach: function (f) {
                    [{id: "1", name: "Salesperson"}].forEach(f); } } };
            }""")
            cached = page.evaluate("ActiveCampaignBridge.Ribbon.isActiveCampaignUser()")
            page.evaluate("ActiveCampaignBridge.Ribbon.resetRoleCache()")
            not_user = page.evaluate("ActiveCampaignBridge.Ribbon.isActiveCampaignUser()")
        finally:
            browser.close()
    assert len(calls) == 2
    options = {"target": 2, "width": {"value": 40, "unit": "%"},
               "height": {"value": 60, "unit": "%"}, "position": 1}  # fmt: skip
    expected = [
        {"action": "addToAutomation", "entity": "lead",
         "ids": ["4a5b6c7d-0000-4000-8000-00000000abcd"]},
        {"action": "sendCampaign", "entity": "contact",
         "ids": ["aaaaaaaa-1111-4111-8111-111111111111", "bbbbbbbb-2222-4222-8222-222222222222"]},
    ]  # fmt: skip
    from urllib.parse import unquote

    titles = ["Add to Automation", "Send Campaign"]
    for call, payload, title in zip(calls, expected, titles, strict=True):
        assert call["options"] == {**options, "title": title}
        assert call["page"]["pageType"] == "webresource"
        assert call["page"]["webresourceName"] == "ac_/html/action_dialog.html"
        assert json.loads(unquote(call["page"]["data"])) == payload
    assert alerts == ["Save the record before using ActiveCampaign actions.",
                      "Select at most 250 records (251 are selected)."]  # fmt: skip
    assert (is_user, cached, not_user) == (True, True, False)


def test_version_comes_from_the_version_file() -> None:
    assert read_version() == VERSION_FILE.read_text(encoding="utf-8").strip()
