"""Statistics answers as HttpBody: `{"stats": [...]}` in JSON, or the same tree in XML.

XML mirrors the JSON (CONTRACT §8): root `<stats>`, one `<fact>` per element, children named
as the JSON keys; the items of a list (`top_tags`) are elements named by the singular of
the list's key (`<top_tags><top_tag>…`). Built with xml.etree, which does the escaping.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import orjson
from google.api import httpbody_pb2

from usage_billing_service.stats_params import Rendering

XML_ITEM_NAMES = {"top_tags": "top_tag"}
# Characters XML 1.0 cannot carry at all, even escaped (a tag is free text from producers):
# ElementTree would write them raw and make the document unparsable, so they become U+FFFD.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def render(stats: list[dict], how: Rendering) -> httpbody_pb2.HttpBody:
    """The answer `{"stats": stats}` in the requested format (indented when human)."""
    if how.format == "xml":
        return httpbody_pb2.HttpBody(content_type="application/xml", data=to_xml(stats, how.human))
    option = orjson.OPT_INDENT_2 if how.human else 0
    data = orjson.dumps({"stats": stats}, option=option)
    return httpbody_pb2.HttpBody(content_type="application/json",
                                 data=data + b"\n" if how.human else data)


def to_xml(stats: list[dict], human: bool = False) -> bytes:
    """`<stats><fact>…</fact>…</stats>` with an XML declaration, UTF-8.

    >>> to_xml([{"user": {"id": "u<1>"}, "bandwidth_data": 5}]).split(b"\\n")[1]
    b'<stats><fact><user><id>u&lt;1&gt;</id></user><bandwidth_data>5</bandwidth_data></fact></stats>'

    """
    root = ET.Element("stats")
    for fact in stats:
        _fill(ET.SubElement(root, "fact"), fact)
    if human:
        ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _fill(element: ET.Element, value: object) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _fill(ET.SubElement(element, key), child)
    elif isinstance(value, list):
        name = XML_ITEM_NAMES.get(element.tag, "item")
        for child in value:
            _fill(ET.SubElement(element, name), child)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = NOT_XML.sub("\ufffd", str(value))
