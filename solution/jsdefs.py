"""Which dotted function names a script defines, without running it.

The ribbon calls functions by name (`ActiveCampaignBridge.Ribbon.addToAutomation`); a typo is
only noticed when a user clicks the button. The checker compares the names in RibbonDiffXml with
what the library defines, recognising the two styles scripts use:
`A.B.c = function (...) {...}` (also arrows and aliases) and object literals
`A.B = { c: function () {...}, d() {...}, e }`, plus plain `function name(...)` declarations.
This is a scanner, not a JavaScript parser: strings, comments and regular expressions are
blanked first so their contents cannot look like code.
"""

from __future__ import annotations

import re

IDENT = r"[A-Za-z_$][\w$]*"
_ASSIGNMENT = re.compile(rf"(?<![\w$.])((?:{IDENT}\.)+{IDENT}|{IDENT})\s*=(?![=>])\s*")
_DECLARATION = re.compile(rf"(?:^|[^\w$.])(?:var|let|const)\s+({IDENT})\s*=\s*")
_FUNCTION = re.compile(rf"(?:^|[^\w$.])function\s+({IDENT})\s*\(")
_FUNCTION_VALUE = re.compile(rf"(?:async\s+)?function\b|(?:async\s+)?(?:\([^()]*\)|{IDENT})\s*=>")
_REGEX_PRECEDERS = set("(,=:[!&|?{};+-*%<>~^")
_GLOBAL_PREFIXES = ("window.", "globalThis.", "self.")


def blank_literals(source: str) -> str:
    """Replace comments, strings and regex literals by spaces, keeping offsets and quotes."""
    out = list(source)
    i, length = 0, len(source)
    last_significant = ""
    while i < length:
        char = source[i]
        pair = source[i : i + 2]
        if pair == "//":
            end = source.find("\n", i)
            end = length if end == -1 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        if pair == "/*":
            end = source.find("*/", i + 2)
            end = length if end == -1 else end + 2
            out[i:end] = [c if c == "\n" else " " for c in source[i:end]]
            i = end
            continue
        regex_start = char == "/" and (
            last_significant in _REGEX_PRECEDERS
            or last_significant == ""
            or re.search(r"(?:return|typeof|case)\s*$", source[:i]) is not None
        )
        if char in "'\"`" or regex_start:
            quote = char
            j = i + 1
            in_class = False
            while j < length:
                current = source[j]
                if current == "\\":
                    j += 2
                    continue
                if quote == "/":
                    if current == "[":
                        in_class = True
                    elif current == "]":
                        in_class = False
                    elif current == "/" and not in_class or current == "\n":
                        break
                elif current == quote:
                    break
                j += 1
            end = min(j + 1, length)
            out[i + 1 : end - 1] = " " * max(end - 1 - (i + 1), 0)
            last_significant = "a"  # a literal is a value: a following "/" divides
            i = end
            continue
        if not char.isspace():
            last_significant = char if not (char.isalnum() or char in "_$") else "a"
        i += 1
    return "".join(out)


def _strip_global(name: str) -> str:
    for prefix in _GLOBAL_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _matching_brace(text: str, start: int) -> int:
    depth = 0
    for index in range(start, len(text)):
        if text[index] in "{[(":
            depth += 1
        elif text[index] in "}])":
            depth -= 1
            if depth == 0:
                return index
    return len(text)


def _object_members(text: str, start: int, prefix: str, names: set[str]) -> None:
    """Record the members of the object literal whose "{" is at `start`."""
    end = _matching_brace(text, start)
    index = start + 1
    while index < end:
        member = re.compile(rf"\s*(?:async\s+)?[\"']?({IDENT})[\"']?\s*([:(,}}])").match(
            text, index
        )
        if not member:
            break
        name, separator = member.group(1), member.group(2)
        value_start = member.end()
        full = f"{prefix}.{name}"
        if separator == ":":
            value = text[value_start:].lstrip()
            offset = value_start + (len(text[value_start:]) - len(value))
            if value.startswith("{"):
                _object_members(text, offset, full, names)
            names.add(full)
        else:
            names.add(full)
            if separator in ",}":
                index = value_start if separator == "," else end
                continue
        # skip to the next top-level comma of this literal (a method starts at its "(")
        depth = 0
        cursor = value_start - 1 if separator == "(" else value_start
        while cursor < end:
            char = text[cursor]
            if char in "{[(":
                depth += 1
            elif char in "}])":
                depth -= 1
            elif char == "," and depth == 0:
                break
            cursor += 1
        index = cursor + 1


def defined_names(source: str) -> set[str]:
    """Every dotted name the script assigns a function (or object member) to."""
    text = blank_literals(source)
    names: set[str] = set()
    for match in _FUNCTION.finditer(text):
        names.add(match.group(1))
    for pattern in (_ASSIGNMENT, _DECLARATION):
        for match in pattern.finditer(text):
            target = _strip_global(match.group(1))
            value_at = match.end()
            if text.startswith("{", value_at):
                _object_members(text, value_at, target, names)
            elif _FUNCTION_VALUE.match(text, value_at) or re.match(IDENT, text[value_at:]):
                names.add(target)
    return names
