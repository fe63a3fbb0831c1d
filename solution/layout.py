"""Where the solution's parts live, in the source tree and inside the zip.

One module owns every path and naming rule so the packer and the checker cannot disagree
about, say, how a web resource's zip file name is derived from its name and id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC_DIR = REPO_ROOT / "solution" / "src"
WEBRESOURCES_DIR = REPO_ROOT / "webresources"
DIST_DIR = REPO_ROOT / "dist"
VERSION_FILE = REPO_ROOT / "VERSION"
# The reference schemas sit beside the clone on CI machines only; never vendored.
DEFAULT_XSD_DIR = REPO_ROOT.parent / "shared" / "dataverse" / "xsd"

SOLUTION_UNIQUE_NAME = "ActiveCampaignBridge"
PUBLISHER_PREFIX = "ac"
# Web resources named "ac_/<path>" take their content from webresources/<path>.
WEBRESOURCE_NAME_ROOT = f"{PUBLISHER_PREFIX}_/"

VERSION_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+){1,3}$")
GUID_PATTERN = re.compile(
    r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$"
)

# Files of webresources/ that are documentation, not browser code, and are never packed.
NOT_PACKED = {"README.md"}


class LayoutError(Exception):
    """The source tree is not a packable solution (missing file, bad XML, bad VERSION)."""


def read_version(path: Path = VERSION_FILE) -> str:
    """The solution version, kept in one place: the repository's VERSION file."""
    try:
        version = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise LayoutError(f"{path}: missing; it holds the solution version, e.g. 1.0.0.0") from exc
    if not VERSION_PATTERN.match(version):
        raise LayoutError(f"{path}: {version!r} is not a Dataverse version (2 to 4 numbers)")
    return version


def zip_file_name(version: str, managed: bool) -> str:
    """ActiveCampaignBridge_1_0_0_0.zip is what Dynamics exports; we keep the dotted version."""
    suffix = "_managed" if managed else ""
    return f"{SOLUTION_UNIQUE_NAME}_{version}{suffix}.zip"


def bare_guid(value: str) -> str:
    """A GUID without braces, lower case: the form used for comparisons."""
    return value.strip().strip("{}").lower()


def webresource_zip_path(name: str, guid: str) -> str:
    """The FileName of a web resource in an exported zip: name without dots/slashes + GUID."""
    return "/WebResources/" + name.replace(".", "").replace("/", "") + bare_guid(guid).upper()


def webresource_content_path(name: str, webresources_dir: Path) -> Path:
    """Where the content of web resource `name` is kept in this repository."""
    if not name.startswith(WEBRESOURCE_NAME_ROOT):
        raise LayoutError(f"web resource {name!r}: names start with {WEBRESOURCE_NAME_ROOT!r}")
    return webresources_dir / name[len(WEBRESOURCE_NAME_ROOT) :]


def parse_xml(path: Path) -> etree._ElementTree:
    """Parse a source XML file, dropping layout whitespace so output is re-indented evenly."""
    parser = etree.XMLParser(remove_blank_text=True)
    try:
        return etree.parse(str(path), parser)
    except (OSError, etree.XMLSyntaxError) as exc:
        raise LayoutError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class WebResourceSource:
    """One web resource: its .data.xml description and the file holding its content."""

    name: str
    guid: str
    data_xml: Path
    content: Path


@dataclass
class SourceTree:
    """The unpacked solution (solution/src) plus the browser code it packs (webresources/)."""

    src: Path
    webresources_dir: Path
    entities: list[Path] = field(default_factory=list)
    roles: list[Path] = field(default_factory=list)
    optionsets: list[Path] = field(default_factory=list)
    webresources: list[WebResourceSource] = field(default_factory=list)
    app_modules: list[Path] = field(default_factory=list)
    site_maps: list[Path] = field(default_factory=list)
    environment_variables: list[Path] = field(default_factory=list)

    @property
    def solution_xml(self) -> Path:
        return self.src / "Other" / "Solution.xml"

    @property
    def customizations_xml(self) -> Path:
        return self.src / "Other" / "Customizations.xml"


def _sorted_files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern), key=lambda p: p.as_posix()) if folder.is_dir() else []


def load_tree(src: Path = SRC_DIR, webresources_dir: Path = WEBRESOURCES_DIR) -> SourceTree:
    """Find every component file of the unpacked layout, failing early on what cannot pack."""
    tree = SourceTree(src=src, webresources_dir=webresources_dir)
    for required in (tree.solution_xml, tree.customizations_xml):
        if not required.is_file():
            raise LayoutError(f"{required}: missing (unpacked solution layout)")
    tree.entities = sorted(p for p in (src / "Entities").glob("*") if (p / "Entity.xml").is_file())
    tree.roles = _sorted_files(src / "Roles", "*.xml")
    tree.optionsets = _sorted_files(src / "OptionSets", "*.xml")
    tree.app_modules = _sorted_files(src / "AppModules", "*/AppModule.xml")
    tree.site_maps = _sorted_files(src / "AppModuleSiteMaps", "*/AppModuleSiteMap.xml")
    tree.environment_variables = _sorted_files(
        src / "environmentvariabledefinitions", "*/environmentvariabledefinition.xml"
    )
    packed: set[Path] = set()
    for data_xml in _sorted_files(src / "WebResources", "**/*.data.xml"):
        root = parse_xml(data_xml).getroot()
        name = (root.findtext("Name") or "").strip()
        guid = (root.findtext("WebResourceId") or "").strip()
        if not name or not GUID_PATTERN.match(guid):
            raise LayoutError(f"{data_xml}: WebResource needs a Name and a WebResourceId GUID")
        content = webresource_content_path(name, webresources_dir)
        if not content.is_file():
            raise LayoutError(f"{data_xml}: content file {content} for {name} is missing")
        tree.webresources.append(WebResourceSource(name, guid, data_xml, content))
        packed.add(content.resolve())
    if webresources_dir.is_dir():
        for file in sorted(webresources_dir.rglob("*")):
            if (
                file.is_file()
                and file.name not in NOT_PACKED
                and not file.name.startswith(".")
                and file.resolve() not in packed
            ):
                relative = file.relative_to(webresources_dir).as_posix()
                raise LayoutError(
                    f"{file}: not described in the solution; add "
                    f"{src / 'WebResources' / (WEBRESOURCE_NAME_ROOT + relative)}.data.xml"
                )
    return tree
