"""Small files that are expensive to parse: nesting bombs and page-count bombs, written by
hand (no library would make them), each with a correct cross-reference table."""

from __future__ import annotations

PAGE_SIZE = b"/MediaBox [0 0 595 842]"


def build_pdf(objects: list[bytes]) -> bytes:
    """Objects numbered from 1, object 1 the catalog."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _one_page_with(catalog_extra: bytes) -> bytes:
    return build_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b" >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R " + PAGE_SIZE + b" >>",
        ]
    )


def nested_arrays(depth: int) -> bytes:
    """A valid one-page PDF whose catalog holds an array nested ``depth`` deep."""
    return _one_page_with(b"/Nest " + b"[" * depth + b"]" * depth)


def nested_dictionaries(depth: int) -> bytes:
    """A valid one-page PDF whose catalog holds a dictionary nested ``depth`` deep."""
    return _one_page_with(b"/Nest " + b"<< /A " * depth + b"null" + b" >>" * depth)


def page_tree(fanout: int, levels: int) -> bytes:
    """``fanout ** levels`` pages in a few kilobytes: every node of a level is one object, so
    each level's kids are ``fanout`` references to the same next level."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(levels):
        number = 2 + level
        parent = b"" if level == 0 else b" /Parent %d 0 R" % (number - 1)
        kids = b" ".join([b"%d 0 R" % (number + 1)] * fanout)
        count = fanout ** (levels - level)
        objects.append(b"<< /Type /Pages%s /Kids [%s] /Count %d >>" % (parent, kids, count))
    objects.append(b"<< /Type /Page /Parent %d 0 R %s >>" % (1 + levels, PAGE_SIZE))
    return build_pdf(objects)


def wide_page_list(pages: int) -> bytes:
    """One Pages node listing the same page ``pages`` times."""
    return build_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b"3 0 R " * pages, pages),
            b"<< /Type /Page /Parent 2 0 R " + PAGE_SIZE + b" >>",
        ]
    )


def page_tree_cycle() -> bytes:
    """A Pages node that is its own kid."""
    return build_pdf(
        [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"]
    )
