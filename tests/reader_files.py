"""Documents of each type the load stage reads, made here with the libraries' own writers
(reportlab for PDFs, pypdf to encrypt them, python-docx for DOCX), so a test knows the text
it put in."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

WIDTH, HEIGHT = A4
LINE = 14  # points between two lines of body text


def pdf(pages: list[list[str]], header: str | None = None, footer: str | None = None) -> bytes:
    """A text PDF: each page's lines from the top down; the header and footer (`{page}` is the
    page number) drawn on every page, in the top and bottom margins."""
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=A4)
    for number, lines in enumerate(pages, 1):
        c.setFont("Helvetica", 9)
        if header:
            c.drawString(72, HEIGHT - 40, header.format(page=number))
        if footer:
            c.drawString(WIDTH / 2 - 30, 30, footer.format(page=number))
        c.setFont("Helvetica", 11)
        for i, line in enumerate(lines):
            c.drawString(72, HEIGHT - 100 - i * LINE, line)
        c.showPage()
    c.save()
    return out.getvalue()


def two_column_pdf(left: list[str], right: list[str]) -> bytes:
    """One page in two columns, drawn line by line across both (left 1, right 1, left 2, ...):
    the content stream's order is not the reading order."""
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=A4)
    c.setFont("Helvetica", 10)
    for i, (a, b) in enumerate(zip(left, right)):
        y = HEIGHT - 80 - i * LINE
        c.drawString(60, y, a)
        c.drawString(WIDTH / 2 + 20, y, b)
    c.showPage()
    c.save()
    return out.getvalue()


def scanned_pdf(pages: int = 2) -> bytes:
    """Pages holding only an image (a scan without OCR): no text layer."""
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (600, 800), "white")
    ImageDraw.Draw(picture).rectangle((50, 50, 550, 120), fill="black")
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=A4)
    for _ in range(pages):
        c.drawImage(ImageReader(picture), 0, 0, WIDTH, HEIGHT)
        c.showPage()
    c.save()
    return out.getvalue()


def encrypted_pdf(plain: bytes, user_password: str, owner_password: str = "owner") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(plain)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_file(blocks: list) -> bytes:
    """A DOCX of paragraphs (str) and tables (a list of rows, each a list of cell texts; None
    merges a cell with the one on its left)."""
    import docx

    document = docx.Document()
    for block in blocks:
        if isinstance(block, str):
            document.add_paragraph(block)
            continue
        table = document.add_table(rows=len(block), cols=len(block[0]))
        for r, row in enumerate(block):
            for c, text in enumerate(row):
                if text is None:
                    table.cell(r, c - 1).merge(table.cell(r, c))
                else:
                    table.cell(r, c).text = text
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _zip_entry(name: str, packed: bytes, crc: int, size: int, method: int, offset: int) -> tuple[bytes, bytes]:
    encoded = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(packed), size,
                        len(encoded), 0) + encoded + packed
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(packed), size,
                          len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    return local, central


def zip_bomb_docx(unpacked_gb: int = 2) -> bytes:
    """A DOCX-named zip whose word/document.xml unpacks to `unpacked_gb` GB of spaces from about
    1 MB: the deflate stream is one 1 MB block, fully flushed, repeated (real data: unpacking it
    would produce every byte)."""
    chunk = b" " * (1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    count = unpacked_gb * 1024
    packed = block * count + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    types = (b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
             b'</Types>')
    locals_, centrals, offset = [], [], 0
    for name, data, entry_crc, size, method in (
        ("[Content_Types].xml", types, zlib.crc32(types), len(types), zipfile.ZIP_STORED),
        ("word/document.xml", packed, crc, count << 20, zipfile.ZIP_DEFLATED),
    ):
        local, central = _zip_entry(name, data, entry_crc, size, method, offset)
        locals_.append(local)
        centrals.append(central)
        offset += len(local)
    directory = b"".join(centrals)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(centrals), len(centrals), len(directory), offset, 0)
    return b"".join(locals_) + directory + end


def _raw_pdf(content_stream: bytes, filter_name: str) -> bytes:
    """A one-page PDF written by hand around one content stream (with its xref table)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>",
        b"<< /Length %d /Filter /%s >>\nstream\n" % (len(content_stream), filter_name.encode())
        + content_stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def pdf_bomb(unpacked_gb: int = 3) -> bytes:
    """A PDF of a few MB whose one content stream inflates (FlateDecode) to `unpacked_gb` GB of
    spaces: a valid zlib stream (header, fully flushed 1 MB blocks, Adler-32)."""
    chunk = b" " * (1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    count = unpacked_gb * 1024
    checksum = 1
    for _ in range(count):
        checksum = zlib.adler32(chunk, checksum)
    stream = (b"\x78\xda" + block * count + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
              + struct.pack(">I", checksum))
    return _raw_pdf(stream, "FlateDecode")
