"""Build the importable solution zips from the unpacked source.

The zip follows a real Dataverse export: `[Content_Types].xml`, `solution.xml`,
`customizations.xml`, the web resource contents under `WebResources/` and the environment
variable definitions under `environmentvariabledefinitions/`. Packing is deterministic (sorted
entries, fixed timestamps, GUIDs taken from the source) so the same tree always gives the same
bytes and a release can be rebuilt and compared.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from lxml import etree

from solution.layout import (
    DIST_DIR,
    SRC_DIR,
    VERSION_FILE,
    WEBRESOURCES_DIR,
    LayoutError,
    SourceTree,
    WebResourceSource,
    load_tree,
    parse_xml,
    read_version,
    webresource_zip_path,
    zip_file_name,
)

# A timestamp every zip tool accepts (the DOS epoch); the real time would break reproducibility.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
CONTENT_TYPES_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
CONTENT_TYPE = "application/octet-stream"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

# The children of <ImportExportXml> in the order CustomizationsSolution.xsd requires.
CUSTOMIZATIONS_ORDER = [
    "Entities", "Roles", "Workflows", "FieldSecurityProfiles", "Templates", "RibbonDiffXml",
    "IsvConfig", "RelationshipRoles", "ConnectionRoles", "SiteMap", "EntityMaps",
    "EntityRelationships", "OrganizationSettings", "optionsets", "Reports", "RoutingRules",
    "ChannelPropertyGroups", "ConvertRules", "MobileOfflineProfiles", "Slas",
    "ChannelAccessProfiles", "ChannelAccessProfileRules", "Dashboards",
    "InteractionCentricDashboards", "Dialogs", "WebResources", "CustomControls",
    "SolutionPluginAssemblies", "SdkMessageProcessingSteps", "ServiceEndpoints",
    "AppModuleSiteMaps", "AppModules", "EntityDataProviders", "EntityDataSources", "Languages",
    "GlobalSearchConfigurations", "StoredProcedures",
]  # fmt: skip


def serialize(root: etree._Element) -> bytes:
    """UTF-8 XML with a declaration, indented, namespaces declared once at the root."""
    etree.cleanup_namespaces(root, top_nsmap={"xsi": XSI_NS})
    etree.indent(root, space="  ")
    return etree.tostring(root, xml_declaration=True, encoding="utf-8", standalone=None)


def _section(root: etree._Element, tag: str) -> etree._Element:
    """The (emptied) section `tag` of customizations.xml, inserted in XSD order if absent."""
    existing = root.find(tag)
    if existing is not None:
        for child in list(existing):
            existing.remove(child)
        return existing
    section = etree.Element(tag)
    position = CUSTOMIZATIONS_ORDER.index(tag)
    later = set(CUSTOMIZATIONS_ORDER[position + 1 :])
    for index, child in enumerate(root):
        if child.tag in later:
            root.insert(index, section)
            return section
    root.append(section)
    return section


def _entity(folder: Path) -> etree._Element:
    """Entity.xml with its RibbonDiff.xml and FormXml/<type>/*.xml merged in place."""
    entity = parse_xml(folder / "Entity.xml").getroot()
    ribbon_file = folder / "RibbonDiff.xml"
    if ribbon_file.is_file():
        ribbon = parse_xml(ribbon_file).getroot()
        placeholder = entity.find("RibbonDiffXml")
        if placeholder is None:
            entity.append(ribbon)
        else:
            entity.replace(placeholder, ribbon)
    form_dirs = sorted(p for p in (folder / "FormXml").glob("*") if p.is_dir())
    if form_dirs:
        form_xml = entity.find("FormXml")
        if form_xml is None:
            form_xml = etree.SubElement(entity, "FormXml")
        for form_dir in form_dirs:
            forms = etree.SubElement(form_xml, "forms", type=form_dir.name)
            for form_file in sorted(form_dir.glob("*.xml")):
                forms.append(parse_xml(form_file).getroot())
    return entity


def _by_name(resource: WebResourceSource) -> str:
    return resource.name


def build_customizations(tree: SourceTree) -> bytes:
    """customizations.xml: the Other/Customizations.xml skeleton with every component merged."""
    root = parse_xml(tree.customizations_xml).getroot()
    sections: list[tuple[str, list[etree._Element]]] = [
        ("Entities", [_entity(folder) for folder in tree.entities]),
        ("Roles", [parse_xml(p).getroot() for p in tree.roles]),
        ("optionsets", [parse_xml(p).getroot() for p in tree.optionsets]),
        (
            "WebResources",
            [parse_xml(w.data_xml).getroot() for w in sorted(tree.webresources, key=_by_name)],
        ),
        ("AppModuleSiteMaps", [parse_xml(p).getroot() for p in tree.site_maps]),
        ("AppModules", [parse_xml(p).getroot() for p in tree.app_modules]),
    ]
    for tag, components in sections:
        if not components and root.find(tag) is None:
            continue
        section = _section(root, tag)
        for component in components:
            section.append(component)
    return serialize(root)


def build_solution_manifest(tree: SourceTree, version: str, managed: bool) -> bytes:
    """solution.xml: Other/Solution.xml with the version and the managed flag filled in."""
    root = parse_xml(tree.solution_xml).getroot()
    manifest = root.find("SolutionManifest")
    if manifest is None:
        raise LayoutError(f"{tree.solution_xml}: no SolutionManifest")
    for tag, value in (("Version", version), ("Managed", "1" if managed else "0")):
        element = manifest.find(tag)
        if element is None:
            raise LayoutError(f"{tree.solution_xml}: SolutionManifest has no <{tag}>")
        element.text = value
    for comment in root.xpath("//comment()"):
        comment.getparent().remove(comment)
    return serialize(root)


def build_content_types(part_names: list[str]) -> bytes:
    """[Content_Types].xml: one Default per file extension, one Override per extensionless part.

    Web resource contents are stored without an extension (their name's dots are removed),
    so a Default cannot cover them; each gets an Override naming the part.
    """
    types = etree.Element(f"{{{CONTENT_TYPES_NS}}}Types", nsmap={None: CONTENT_TYPES_NS})
    extensions = sorted({PurePosixPath(n).suffix[1:].lower() for n in part_names} - {""})
    for extension in extensions:
        etree.SubElement(
            types, f"{{{CONTENT_TYPES_NS}}}Default", Extension=extension, ContentType=CONTENT_TYPE
        )
    for name in sorted(n for n in part_names if not PurePosixPath(n).suffix):
        etree.SubElement(
            types, f"{{{CONTENT_TYPES_NS}}}Override", PartName="/" + name, ContentType=CONTENT_TYPE
        )
    return etree.tostring(types, xml_declaration=True, encoding="utf-8")


def build_entries(tree: SourceTree, version: str, managed: bool) -> dict[str, bytes]:
    """Every zip entry, by name. Used by `pack` and, in memory, by tests and `check --src`."""
    entries: dict[str, bytes] = {
        "solution.xml": build_solution_manifest(tree, version, managed),
        "customizations.xml": build_customizations(tree),
    }
    for resource in tree.webresources:
        entries[webresource_zip_path(resource.name, resource.guid).lstrip("/")] = (
            resource.content.read_bytes()
        )
    for definition in tree.environment_variables:
        relative = definition.relative_to(tree.src).as_posix()
        entries[relative] = serialize(parse_xml(definition).getroot())
    entries["[Content_Types].xml"] = build_content_types(sorted(entries))
    return entries


def write_zip(entries: dict[str, bytes], path: Path) -> None:
    """Write entries deterministically: content types first (as OPC packages do), then sorted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(entries, key=lambda n: (n != "[Content_Types].xml", n))
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0
            info.external_attr = 0
            archive.writestr(info, entries[name], compresslevel=9)


def pack(
    src: Path = SRC_DIR,
    webresources_dir: Path = WEBRESOURCES_DIR,
    dist: Path = DIST_DIR,
    version_file: Path = VERSION_FILE,
) -> list[Path]:
    """Build the unmanaged and the managed zip; returns their paths."""
    tree = load_tree(src, webresources_dir)
    version = read_version(version_file)
    written = []
    for managed in (False, True):
        path = dist / zip_file_name(version, managed)
        write_zip(build_entries(tree, version, managed), path)
        written.append(path)
    return written
