"""Image and PDF files built by hand, byte by byte, with the metadata a phone would add.

The JPEG has an APP1 Exif segment whose TIFF structure holds camera make and model in IFD0 and
a GPS IFD with latitude and longitude (the layout of Exif 2.3 / TIFF 6.0), an XMP APP1, an
APP13 IPTC segment, a comment, a real-looking scan with stuffed 0xFF bytes and a restart marker,
and a hidden file appended after the end-of-image marker. The PNG has tEXt, iTXt, zTXt, tIME
and eXIf chunks around a real IHDR/IDAT/IEND image.
"""

from __future__ import annotations

import struct
import zlib

GPS_LATITUDE = (51, 30, 2647)  # 51°30'26.47"N, as rationals below
CAMERA_MAKE = b"PhoneMaker\x00"
CAMERA_MODEL = b"Model X-200 SN123456\x00"
JPEG_COMMENT = b"taken at 14 Marsh Lane"
XMP_PACKET = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description GPSLatitude="51,30.44N"/>' \
             b"</x:xmpmeta>"
APPENDED = b"PK\x03\x04 a zip file hidden after the image"


def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body


def exif_with_gps() -> bytes:
    """The body of an APP1 Exif segment: IFD0 (Make, Model, GPS pointer) and a GPS IFD."""
    # Big-endian TIFF header; IFD0 at offset 8.
    ifd0_entries = 3
    ifd0_size = 2 + ifd0_entries * 12 + 4
    make_offset = 8 + ifd0_size
    model_offset = make_offset + len(CAMERA_MAKE)
    gps_offset = model_offset + len(CAMERA_MODEL)
    gps_entries = 4
    gps_size = 2 + gps_entries * 12 + 4
    lat_offset = gps_offset + gps_size
    lon_offset = lat_offset + 24
    tiff = bytearray(b"MM\x00\x2a" + struct.pack(">I", 8))
    tiff += struct.pack(">H", ifd0_entries)
    tiff += struct.pack(">HHII", 0x010F, 2, len(CAMERA_MAKE), make_offset)  # Make
    tiff += struct.pack(">HHII", 0x0110, 2, len(CAMERA_MODEL), model_offset)  # Model
    tiff += struct.pack(">HHII", 0x8825, 4, 1, gps_offset)  # GPSInfo IFD pointer
    tiff += struct.pack(">I", 0)
    tiff += CAMERA_MAKE + CAMERA_MODEL
    tiff += struct.pack(">H", gps_entries)
    tiff += struct.pack(">HHI4s", 0x0001, 2, 2, b"N\x00\x00\x00")  # GPSLatitudeRef
    tiff += struct.pack(">HHII", 0x0002, 5, 3, lat_offset)  # GPSLatitude
    tiff += struct.pack(">HHI4s", 0x0003, 2, 2, b"W\x00\x00\x00")  # GPSLongitudeRef
    tiff += struct.pack(">HHII", 0x0004, 5, 3, lon_offset)  # GPSLongitude
    tiff += struct.pack(">I", 0)
    degrees, minutes, centiseconds = GPS_LATITUDE
    tiff += struct.pack(">IIIIII", degrees, 1, minutes, 1, centiseconds, 100)
    tiff += struct.pack(">IIIIII", 0, 1, 7, 1, 4012, 100)
    return b"Exif\x00\x00" + bytes(tiff)


# The parts of a baseline JPEG that carry the picture (a 8x8 grey image's tables).
JFIF = _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
ICC = _segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + b"\x00" * 32)
DQT = _segment(0xDB, b"\x00" + bytes(range(1, 65)))
SOF0 = _segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
DHT = _segment(0xC4, b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00")
DRI = _segment(0xDD, b"\x00\x01")
SOS = _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
# Entropy-coded data with a stuffed 0xFF (FF 00), a restart marker (FF D0) and fill bytes.
SCAN = b"\x12\x34\xff\x00\x56\xff\xd0\x78\x9a\xff\x00\xbc"


def jpeg_with_metadata() -> bytes:
    return (b"\xff\xd8" + JFIF + _segment(0xE1, exif_with_gps()) +
            _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP_PACKET) + ICC +
            _segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x10"
                           b"\x1c\x02\x5a\x00\x08Boston!!") +
            _segment(0xFE, JPEG_COMMENT) + DQT + SOF0 + DHT + DRI + SOS + SCAN +
            b"\xff\xff\xd9" + APPENDED)


def jpeg_clean() -> bytes:
    """What the safe copy of :func:`jpeg_with_metadata` must be, exactly."""
    return b"\xff\xd8" + JFIF + ICC + DQT + SOF0 + DHT + DRI + SOS + SCAN + b"\xff\xd9"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + \
        struct.pack(">I", zlib.crc32(kind + data))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IHDR = _chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))  # 2x2 greyscale
IDAT = _chunk(b"IDAT", zlib.compress(b"\x00\x10\x20\x00\x30\x40"))
IEND = _chunk(b"IEND", b"")
GAMA = _chunk(b"gAMA", struct.pack(">I", 45455))
PNG_SECRET = b"GPS 51.5073,-0.1276"


def png_with_metadata() -> bytes:
    return (PNG_SIGNATURE + IHDR + GAMA +
            _chunk(b"tEXt", b"Comment\x00" + PNG_SECRET) +
            _chunk(b"iTXt", b"Author\x00\x00\x00\x00\x00Jane Reporter") +
            _chunk(b"zTXt", b"Software\x00\x00" + zlib.compress(b"PhoneMaker camera 2.1")) +
            _chunk(b"tIME", struct.pack(">HBBBBB", 2025, 3, 1, 14, 5, 9)) +
            _chunk(b"eXIf", exif_with_gps()[6:]) + IDAT + IEND + b"trailing bytes")


def png_clean() -> bytes:
    return PNG_SIGNATURE + IHDR + GAMA + IDAT + IEND


def pdf_with_metadata() -> bytes:
    """A one-page PDF with a document information dictionary and an XMP stream."""
    import io

    import pypdf

    writer = pypdf.PdfWriter()
    writer.add_blank_page(200, 200)
    writer.add_metadata({"/Author": "Jane Reporter", "/Creator": "Scanner App on Phone X-200",
                         "/Title": "payslip March"})
    writer.xmp_metadata = XMP_PACKET
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_with_photo() -> bytes:
    """A PDF written by hand whose page shows :func:`jpeg_with_metadata` (a DCTDecode image
    XObject), with an information dictionary: the photo's Exif travels inside the PDF."""
    photo = jpeg_with_metadata()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] "
        b"/Resources << /XObject << /Im1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Filter /DCTDecode /Length " + str(len(photo)).encode() +
        b" >>\nstream\n" + photo + b"\nendstream",
        b"<< /Length 32 >>\nstream\nq 100 0 0 100 50 50 cm /Im1 Do Q\nendstream",
        b"<< /Author (Jane Reporter) /Producer (Scanner App) >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)
