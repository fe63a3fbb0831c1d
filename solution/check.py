"""Validate a packed solution the way an import would, naming the file and element at fault.

Every check reads the zip (or the same entries built in memory), not the source, so what is
checked is exactly what an administrator imports. Schema validation needs Microsoft's XSDs from
--xsd-dir; without them it is skipped with a note and every other check still runs.
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

from lxml import etree

from solution import schemas
from solution.jsdefs import defined_names
from solution.layout import (
    GUID_PATTERN,
    PUBLISHER_PREFIX,
    SOLUTION_UNIQUE_NAME,
    VERSION_PATTERN,
    bare_guid,
    webresource_zip_path,
)

CONTENT_TYPES = "[Content_Types].xml"
SOLUTION = "solution.xml"
CUSTOMIZATIONS = "customizations.xml"
REQUIRED_ENTRIES = (CONTENT_TYPES, SOLUTION, CUSTOMIZATIONS)
CONTENT_TYPES_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
WEBRESOURCE_REF = re.compile(r"\$webresource:([^\s\"'<>]+)")
LOCLABEL_REF = re.compile(r"^\$LocLabels:(.+)$")
RIBBON_ID_PREFIX = f"{PUBLISHER_PREFIX}."
NAME_PREFIX = f"{PUBLISHER_PREFIX}_"
# Ids owned by Microsoft's ribbon (Mscrm.*) may be referenced without being defined here.
PLATFORM_ID = re.compile(r"^Mscrm\.")
SCRIPT_TYPE = "3"
HTML_TYPE = "1"


@dataclass(frozen=True)
class Problem:
    """One reason an import would fail (or the package would misbehave)."""

    file: str
    element: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.element}: {self.message}"


@dataclass
class Report:
    """What `check` found: problems fail the check, notes only inform."""

    label: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str, element: str, message: str) -> None:
        self.problems.append(Problem(file, element, message))

    def summary(self) -> str:
        parts = ", ".join(f"{count} {what}" for what, count in sorted(self.counts.items()))
        return f"{self.label}: OK ({parts})"


def describe(element: etree._Element) -> str:
    """A readable path to an element: tags, with the Id/Name/id that identifies each step."""
    steps = []
    for node in [*reversed(list(element.iterancestors())), element]:
        if not isinstance(node.tag, str) or node.tag == "ImportExportXml":
            continue
        key = None
        for attribute in ("Id", "id", "Name", "name", "schemaName", "FunctionName"):
            if node.get(attribute):
                key = f"{attribute}={node.get(attribute)!r}"
                break
        if key is None and node.tag == "Entity":
            key = f"Name={node.findtext('Name')!r}"
        if key is None and node.tag == "WebResource":
            key = f"Name={node.findtext('Name')!r}"
        steps.append(f"{node.tag}[{key}]" if key else str(node.tag))
    return " > ".join(steps) or str(element.tag)


def _parse(report: Report, entries: dict[str, bytes], name: str) -> etree._Element | None:
    try:
        return etree.fromstring(entries[name])
    except etree.XMLSyntaxError as exc:
        report.add(name, "(document)", f"not well-formed XML: {exc}")
        return None


class _References(HTMLParser):
    """Collects the relative src/href references of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value and not re.match(r"^([a-z]+:|#|/)", value):
                self.references.append((tag, value))


@dataclass
class Package:
    """The parsed parts of one solution zip that several checks share."""

    entries: dict[str, bytes]
    solution: etree._Element
    customizations: etree._Element
    webresources: dict[str, etree._Element] = field(default_factory=dict)

    def webresource_content(self, name: str) -> bytes | None:
        element = self.webresources.get(name)
        if element is None:
            return None
        return self.entries.get((element.findtext("FileName") or "").lstrip("/"))


def check_layout(report: Report, entries: dict[str, bytes]) -> None:
    for name in REQUIRED_ENTRIES:
        if name not in entries:
            report.add(name, "(zip root)", "missing; a solution zip has it at its root")


def check_content_types(report: Report, entries: dict[str, bytes]) -> None:
    """Every part is typed: by a Default for its extension or an Override for its name."""
    root = _parse(report, entries, CONTENT_TYPES)
    if root is None:
        return
    defaults = {
        (d.get("Extension") or "").lower() for d in root.iter(f"{CONTENT_TYPES_NS}Default")
    }
    overrides = {o.get("PartName") for o in root.iter(f"{CONTENT_TYPES_NS}Override")}
    for name in sorted(entries):
        if name == CONTENT_TYPES:
            continue
        extension = PurePosixPath(name).suffix[1:].lower()
        if extension and extension not in defaults:
            report.add(CONTENT_TYPES, "Types", f"no <Default Extension={extension!r}> for {name}")
        elif not extension and "/" + name not in overrides:
            report.add(CONTENT_TYPES, "Types", f"no <Default> or <Override> covers {name}")
    report.counts["zip entries"] = len(entries)


def check_manifest(report: Report, package: Package) -> None:
    """solution.xml names the solution, a valid version, and only components present."""
    manifest = package.solution.find("SolutionManifest")
    if manifest is None:
        report.add(SOLUTION, "ImportExportXml", "no <SolutionManifest>")
        return
    if manifest.findtext("UniqueName") != SOLUTION_UNIQUE_NAME:
        report.add(SOLUTION, "SolutionManifest > UniqueName", f"is not {SOLUTION_UNIQUE_NAME}")
    if not VERSION_PATTERN.match(manifest.findtext("Version") or ""):
        report.add(SOLUTION, "SolutionManifest > Version", "is not a 2-4 part version")
    if manifest.findtext("Managed") not in ("0", "1"):
        report.add(SOLUTION, "SolutionManifest > Managed", "must be 0 or 1")
    if manifest.findtext("Publisher/CustomizationPrefix") != PUBLISHER_PREFIX:
        report.add(SOLUTION, "Publisher > CustomizationPrefix", f"is not {PUBLISHER_PREFIX!r}")
    custom = package.customizations
    present = {
        "1": {(e.findtext("Name") or "").lower() for e in custom.iterfind("Entities/Entity")},
        "9": {o.get("Name") for o in custom.iterfind("optionsets/optionset")},
        "20": {bare_guid(r.get("id") or "") for r in custom.iterfind("Roles/Role")},
        "61": set(package.webresources),
        "62": {s.findtext("SiteMapUniqueName") for s in custom.iterfind("AppModuleSiteMaps/*")},
        "80": {a.findtext("UniqueName") for a in custom.iterfind("AppModules/AppModule")},
        "380": {
            PurePosixPath(n).parent.name
            for n in package.entries
            if n.startswith("environmentvariabledefinitions/")
        },
    }
    for component in manifest.iterfind("RootComponents/RootComponent"):
        kind = component.get("type") or ""
        key = component.get("schemaName") or bare_guid(component.get("id") or "")
        if kind in present and key.lower() not in {k.lower() for k in present[kind] if k}:
            report.add(
                SOLUTION,
                describe(component),
                f"root component type {kind} {key!r} is not in the package",
            )
        report.counts["root components"] += 1


def check_webresources(report: Report, package: Package) -> None:
    """Each web resource is prefixed, its content file is in the zip under the derived name."""
    for name, element in sorted(package.webresources.items()):
        where = describe(element)
        if not name.startswith(NAME_PREFIX):
            report.add(CUSTOMIZATIONS, where, f"name {name!r} lacks the prefix {NAME_PREFIX!r}")
        guid = element.findtext("WebResourceId") or ""
        expected = webresource_zip_path(name, guid)
        file_name = element.findtext("FileName") or ""
        if file_name != expected:
            report.add(CUSTOMIZATIONS, where, f"FileName {file_name!r} should be {expected!r}")
        if file_name.lstrip("/") not in package.entries:
            report.add(CUSTOMIZATIONS, where, f"content {file_name!r} is missing from the zip")
        report.counts["web resources"] += 1


def check_webresource_references(report: Report, package: Package) -> None:
    """Every `$webresource:` in customizations.xml names a web resource of the package."""
    for element in package.customizations.iter():
        if not isinstance(element.tag, str):
            continue
        values = [*element.attrib.values(), element.text or ""]
        for value in values:
            for name in WEBRESOURCE_REF.findall(value):
                if name not in package.webresources:
                    report.add(
                        CUSTOMIZATIONS, describe(element), f"$webresource:{name} does not exist"
                    )
    for name, element in sorted(package.webresources.items()):
        if element.findtext("WebResourceType") != HTML_TYPE:
            continue
        content = package.webresource_content(name)
        if content is None:
            continue
        parser = _References()
        parser.feed(content.decode("utf-8", errors="replace"))
        base = PurePosixPath(name).parent
        for tag, reference in parser.references:
            target = _resolve(base, reference.split("?")[0].split("#")[0])
            if target not in package.webresources:
                report.add(
                    f"web resource {name}", f"<{tag}>", f"{reference!r} ({target}) does not exist"
                )


def _resolve(base: PurePosixPath, reference: str) -> str:
    parts: list[str] = list(base.parts)
    for part in reference.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _ribbons(customizations: etree._Element) -> list[tuple[etree._Element, bool]]:
    """(RibbonDiffXml, is_entity_ribbon) for every ribbon diff in customizations.xml."""
    found = [(r, True) for r in customizations.iterfind("Entities/Entity/RibbonDiffXml")]
    found += [(r, False) for r in customizations.iterfind("RibbonDiffXml")]
    return [(r, entity) for r, entity in found if len(r)]


def check_ribbons(report: Report, package: Package, xsd_dir: Path | None) -> None:
    """Ribbon diffs: strict XSD, defined labels/rules/commands, functions present in libraries."""
    js_names: dict[str, set[str]] = {}
    for ribbon, is_entity in _ribbons(package.customizations):
        report.counts["ribbon diffs"] += 1
        if schemas.available(xsd_dir):
            _validate_ribbon(report, ribbon, is_entity, xsd_dir)
        labels = {label.get("Id") for label in ribbon.iterfind("LocLabels/LocLabel")}
        enable_rules = {r.get("Id") for r in ribbon.iterfind("RuleDefinitions/EnableRules/*")}
        display_rules = {r.get("Id") for r in ribbon.iterfind("RuleDefinitions/DisplayRules/*")}
        commands = {c.get("Id") for c in ribbon.iterfind("CommandDefinitions/CommandDefinition")}
        for element in ribbon.iter():
            if not isinstance(element.tag, str):
                continue
            where = describe(element)
            for attribute, value in element.attrib.items():
                label = LOCLABEL_REF.match(value)
                if label and label.group(1) not in labels:
                    report.add(CUSTOMIZATIONS, where, f"{attribute}: LocLabel {label.group(1)!r} "
                               "is not defined in <LocLabels>")  # fmt: skip
            reference = element.get("Id")
            parent = element.getparent()
            in_command = parent is not None and parent.getparent() is not None and (
                parent.getparent().tag == "CommandDefinition"
            )
            defined = {"EnableRule": enable_rules, "DisplayRule": display_rules}.get(element.tag)
            if (
                in_command
                and defined is not None
                and reference not in defined
                and not PLATFORM_ID.match(reference or "")
            ):
                report.add(CUSTOMIZATIONS, where, f"{element.tag} {reference!r} is not defined")
            command = element.get("Command")
            if command and command not in commands and not PLATFORM_ID.match(command):
                report.add(CUSTOMIZATIONS, where, f"Command {command!r} is not defined")
            if element.tag in ("JavaScriptFunction", "CustomRule"):
                _check_function(report, package, element, js_names)
            _check_ribbon_prefix(report, element, where)


def _check_ribbon_prefix(report: Report, element: etree._Element, where: str) -> None:
    owners = {"CustomAction", "Button", "CommandDefinition", "LocLabel"}
    parent = element.getparent()
    is_rule = element.tag in ("EnableRule", "DisplayRule") and parent is not None and (
        parent.tag in ("EnableRules", "DisplayRules")
        and parent.getparent() is not None
        and parent.getparent().tag == "RuleDefinitions"
    )
    identifier = element.get("Id")
    if (
        (element.tag in owners or is_rule)
        and identifier
        and not PLATFORM_ID.match(identifier)
        and not identifier.startswith(RIBBON_ID_PREFIX)
    ):
        report.add(CUSTOMIZATIONS, where, f"Id {identifier!r} lacks {RIBBON_ID_PREFIX!r}")


def _check_function(
    report: Report, package: Package, element: etree._Element, cache: dict[str, set[str]]
) -> None:
    library = element.get("Library") or ""
    function = element.get("FunctionName") or ""
    where = describe(element)
    match = WEBRESOURCE_REF.fullmatch(library)
    if not match:
        report.add(CUSTOMIZATIONS, where, f"Library {library!r} is not a $webresource: reference")
        return
    name = match.group(1)
    resource = package.webresources.get(name)
    if resource is None:
        return  # reported by check_webresource_references
    if resource.findtext("WebResourceType") != SCRIPT_TYPE:
        report.add(CUSTOMIZATIONS, where, f"Library {name} is not a script web resource")
        return
    if name not in cache:
        content = package.webresource_content(name) or b""
        cache[name] = defined_names(content.decode("utf-8", errors="replace"))
    if function not in cache[name]:
        report.add(CUSTOMIZATIONS, where, f"FunctionName {function!r} is not defined in {name}")
    report.counts["ribbon functions"] += 1


def _validate_ribbon(
    report: Report, ribbon: etree._Element, is_entity: bool, xsd_dir: Path | None
) -> None:
    assert xsd_dir is not None
    copy = etree.fromstring(etree.tostring(ribbon))
    if is_entity:
        schema = schemas.entity_ribbon_schema(xsd_dir)
        document = etree.Element(schemas.ENTITY_RIBBON_WRAPPER)
        document.append(copy)
    else:
        schema = schemas.application_ribbon_schema(xsd_dir)
        document = copy
    if schema.validate(document):
        return
    owner = describe(ribbon)
    for error in schema.error_log:
        report.add(CUSTOMIZATIONS, owner, f"RibbonCore.xsd line {error.line}: {error.message}")


def check_customizations_schema(report: Report, package: Package, xsd_dir: Path | None) -> None:
    if not schemas.available(xsd_dir):
        report.notes.append(
            f"schema validation skipped: no {schemas.RIBBON_XSD} in {xsd_dir} "
            "(pass --xsd-dir; the other checks ran)"
        )
        return
    assert xsd_dir is not None
    schema = schemas.customizations_schema(xsd_dir)
    for error in schema.iter_errors(package.entries[CUSTOMIZATIONS]):
        reason = error.reason or str(error)
        newer = re.search(r"Unexpected child with tag '([^']+)'", reason)
        if newer and newer.group(1) in schemas.NEWER_ELEMENTS:
            report.notes.append(f"{error.path}: {newer.group(1)} is newer than the schemas")
            continue
        report.add(CUSTOMIZATIONS, error.path or "(document)",
                   f"{schemas.CUSTOMIZATIONS_XSD}: {reason}")  # fmt: skip
    report.counts["schemas"] = 2


def check_guids(report: Report, package: Package) -> None:
    """Component ids are GUIDs and no two components share one."""
    seen: dict[str, str] = {}
    definitions = [
        (w, "WebResourceId", True) for w in package.customizations.iterfind("WebResources/*")
    ]
    definitions += [(r, "id", False) for r in package.customizations.iterfind("Roles/Role")]
    definitions += [(f, "formid", True) for f in package.customizations.iter("systemform")]
    for element, key, is_child in definitions:
        value = (element.findtext(key) if is_child else element.get(key)) or ""
        where = describe(element)
        if not GUID_PATTERN.match(value):
            report.add(CUSTOMIZATIONS, where, f"{key} {value!r} is not a GUID")
            continue
        guid = bare_guid(value)
        if guid in seen:
            report.add(CUSTOMIZATIONS, where, f"{key} {guid} is also used by {seen[guid]}")
        seen[guid] = where
    report.counts["GUIDs"] = len(seen)


def check_prefixes(report: Report, package: Package) -> None:
    """Custom columns, choices, apps, site maps and environment variables carry `ac_`."""
    custom = package.customizations
    prefix_value = package.solution.findtext("SolutionManifest/Publisher/"
                                             "CustomizationOptionValuePrefix") or ""  # fmt: skip
    for attribute in custom.iterfind("Entities/Entity/EntityInfo/entity/attributes/attribute"):
        if attribute.findtext("IsCustomField") == "1":
            name = attribute.findtext("LogicalName") or attribute.get("PhysicalName") or ""
            if not name.lower().startswith(NAME_PREFIX):
                report.add(CUSTOMIZATIONS, describe(attribute), f"column {name!r} lacks "
                           f"{NAME_PREFIX!r}")  # fmt: skip
            report.counts["columns"] += 1
    for optionset in custom.iter("optionset"):
        if optionset.findtext("IsGlobal") == "1" and not (optionset.get("Name") or "").startswith(
            NAME_PREFIX
        ):
            report.add(CUSTOMIZATIONS, describe(optionset), f"choice lacks {NAME_PREFIX!r}")
        for option in optionset.iterfind("options/option"):
            if prefix_value and not (option.get("value") or "").startswith(prefix_value):
                report.add(CUSTOMIZATIONS, describe(option), f"option value {option.get('value')} "
                           f"does not start with the publisher's {prefix_value}")  # fmt: skip
    named = [(s, "SiteMapUniqueName") for s in custom.iterfind("AppModuleSiteMaps/*")]
    named += [(a, "UniqueName") for a in custom.iterfind("AppModules/AppModule")]
    for element, key in named:
        if not (element.findtext(key) or "").startswith(NAME_PREFIX):
            report.add(CUSTOMIZATIONS, describe(element), f"{key} lacks {NAME_PREFIX!r}")
    for name in sorted(package.entries):
        if name.startswith("environmentvariabledefinitions/"):
            root = etree.fromstring(package.entries[name])
            if not (root.get("schemaname") or "").startswith(NAME_PREFIX):
                report.add(
                    name, "environmentvariabledefinition", f"schemaname lacks {NAME_PREFIX!r}"
                )
            report.counts["environment variables"] += 1
    role_ids = {bare_guid(r.get("id") or "") for r in custom.iterfind("Roles/Role")}
    for role in custom.iterfind("AppModules/AppModule/AppModuleRoleMaps/Role"):
        if bare_guid(role.get("id") or "") not in role_ids:
            report.add(
                CUSTOMIZATIONS, describe(role), "app role map names a role not in the package"
            )
    report.counts["roles"] = len(role_ids)


def check_entries(entries: dict[str, bytes], xsd_dir: Path | None, label: str) -> Report:
    """Run every check on the entries of one solution zip."""
    report = Report(label)
    check_layout(report, entries)
    if not report.ok:
        return report
    check_content_types(report, entries)
    solution = _parse(report, entries, SOLUTION)
    customizations = _parse(report, entries, CUSTOMIZATIONS)
    if solution is None or customizations is None:
        return report
    package = Package(entries, solution, customizations)
    for element in customizations.iterfind("WebResources/WebResource"):
        name = element.findtext("Name") or ""
        if name in package.webresources:
            report.add(CUSTOMIZATIONS, describe(element), f"web resource {name!r} is defined twice")
        package.webresources[name] = element
    check_manifest(report, package)
    check_webresources(report, package)
    check_webresource_references(report, package)
    check_ribbons(report, package, xsd_dir)
    check_guids(report, package)
    check_prefixes(report, package)
    check_customizations_schema(report, package, xsd_dir)
    return report


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def check_zip(path: Path, xsd_dir: Path | None) -> Report:
    try:
        entries = read_zip(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report = Report(str(path))
        report.add(str(path), "(zip)", f"cannot be opened: {exc}")
        return report
    return check_entries(entries, xsd_dir, str(path))
