"""Render the app icon from resources/icons/based.svg into every size the installers need.

    python tools/make_icons.py

Writes resources/icons/png/based-<N>.png (16 ... 1024), resources/icons/based.ico (Windows:
16-256, PNG-compressed entries) and resources/icons/based.icns (macOS: 16-1024 incl. @2x), and
copies the SVG to desktop/assets/icons/based.svg, where the running app looks for its icon.

Rendering uses Qt's own SVG renderer (QtSvg ships in PySide6-Essentials); the ICO and ICNS
containers are written here directly, so no imaging library is needed. Output is deterministic.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "icons" / "based.svg"
OUT = ROOT / "resources" / "icons"
APP_COPY = ROOT / "desktop" / "assets" / "icons" / "based.svg"

PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS element types holding PNG data, by pixel size (the @2x types reuse the larger renders).
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"ic11", 32),  # 16@2x
    (b"icp6", 64),
    (b"ic12", 64),  # 32@2x
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic13", 256),  # 128@2x
    (b"ic09", 512),
    (b"ic14", 512),  # 256@2x
    (b"ic10", 1024),  # 512@2x
)


def render_png(svg: Path, size: int) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg.name} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")  # type: ignore[call-overload]  # the stubs say bytes; str works
    buf.close()
    return bytes(data.data())


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """An ICO container whose entries are PNG images (Windows Vista and later)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries = b""
    payload = b""
    for s in sizes:
        data = pngs[s]
        dim = 0 if s >= 256 else s  # 0 means 256
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset + len(payload))
        payload += data
    return header + entries + payload


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    body = b""
    for kind, size in ICNS_TYPES:
        data = pngs[size]
        body += kind + struct.pack(">I", 8 + len(data)) + data
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    sizes = sorted(set(PNG_SIZES) | set(ICO_SIZES) | {s for _, s in ICNS_TYPES})
    pngs = {s: render_png(SVG, s) for s in sizes}
    png_dir = OUT / "png"
    png_dir.mkdir(parents=True, exist_ok=True)
    for s in PNG_SIZES:
        (png_dir / f"based-{s}.png").write_bytes(pngs[s])
    (OUT / "based.ico").write_bytes(ico_bytes({s: pngs[s] for s in ICO_SIZES}))
    (OUT / "based.icns").write_bytes(icns_bytes(pngs))
    APP_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SVG, APP_COPY)
    del app
    print(f"icons: {len(PNG_SIZES)} PNGs, based.ico ({len(ICO_SIZES)} sizes), "
          f"based.icns ({len(ICNS_TYPES)} entries), desktop/assets/icons/based.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
