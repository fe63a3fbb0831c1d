"""Load Microsoft's solution schemas (never vendored: they are read from --xsd-dir).

RibbonCore.xsd compiles in lxml as published, so ribbons are validated strictly.
CustomizationsSolution.xsd does not: libxml2 rejects the .NET lookahead in FormXml.xsd and its
non-deterministic content model, and `xmlschema` chokes on `^`/`$` used as anchors (XSD
patterns are implicitly anchored, so the characters would be literals). We therefore build it
with `xmlschema` in lax mode from a temporary, patched copy, as ../shared/facts/dataverse.md
§4.4 describes. The schemas are also older than the product, so a few newer elements that real
exports carry are tolerated by the checker (see NEWER_ELEMENTS).
"""

from __future__ import annotations

import re
import tempfile
from functools import lru_cache
from pathlib import Path

import xmlschema
from lxml import etree

RIBBON_XSD = "RibbonCore.xsd"
CUSTOMIZATIONS_XSD = "CustomizationsSolution.xsd"
# The element an entity's RibbonDiffXml is checked under: RibbonCore.xsd declares the global
# RibbonDiffXml root with the application-ribbon type, and the entity type only as a named
# type, so an entity ribbon is wrapped in this element to be validated against its own type.
ENTITY_RIBBON_WRAPPER = "EntityRibbon"

# Elements newer than the 9.0 schemas that real exports contain; reported as notes only.
NEWER_ELEMENTS = frozenset(
    {"AutoNumberFormat", "IsSearchable", "IsFilterable", "IsRetrievable", "IsLocalizable"}
)

_ANCHORED_PATTERN = re.compile(r'(<xs:pattern\s+value=")\^([^"]*)\$(")')
_LOOKAHEAD = "(?![cC][rR][mM]_)"


def available(xsd_dir: Path | None) -> bool:
    """Whether schema validation can run (the reference folder is absent on fresh clones)."""
    return xsd_dir is not None and (xsd_dir / RIBBON_XSD).is_file()


@lru_cache(maxsize=4)
def application_ribbon_schema(xsd_dir: Path) -> etree.XMLSchema:
    """RibbonCore.xsd as published: validates a global <RibbonDiffXml>."""
    return etree.XMLSchema(etree.parse(str(xsd_dir / RIBBON_XSD)))


@lru_cache(maxsize=4)
def entity_ribbon_schema(xsd_dir: Path) -> etree.XMLSchema:
    """RibbonCore.xsd plus one wrapper element whose child has RibbonEntityDiffXmlType."""
    wrapper = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:include schemaLocation="{RIBBON_XSD}"/>
  <xs:element name="{ENTITY_RIBBON_WRAPPER}">
    <xs:complexType><xs:sequence>
      <xs:element name="RibbonDiffXml" type="RibbonEntityDiffXmlType"/>
    </xs:sequence></xs:complexType>
  </xs:element>
</xs:schema>"""
    document = etree.XML(wrapper.encode(), base_url=(xsd_dir / "entity-ribbon.xsd").as_uri())
    return etree.XMLSchema(document)


def _patched(text: str) -> str:
    text = _ANCHORED_PATTERN.sub(r"\1\2\3", text)
    return text.replace(_LOOKAHEAD, "")


@lru_cache(maxsize=4)
def customizations_schema(xsd_dir: Path) -> xmlschema.XMLSchema:
    """CustomizationsSolution.xsd built by xmlschema (lax) from a patched temporary copy."""
    with tempfile.TemporaryDirectory(prefix="ac-xsd-") as tmp:
        for source in xsd_dir.glob("*.xsd"):
            text = source.read_text(encoding="utf-8-sig")
            (Path(tmp) / source.name).write_text(_patched(text), encoding="utf-8")
        return xmlschema.XMLSchema(str(Path(tmp) / CUSTOMIZATIONS_XSD), validation="lax")
