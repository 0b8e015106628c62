"""Does every piece of text a user can see fit its widget? (issue 13.3)

For each visible label, button, check box, combo box, tab, header section, list/tree item and
empty line edit's placeholder, the text is measured with the widget's own QFontMetrics (rich
text: a QTextDocument in the widget's font), turned into the size the widget's style needs for
it (``QStyle.sizeFromContents``, the frame and padding of that button, tab or header), and
compared with the widget's geometry. Clipped, cut mid-word, elided ("…") or pushed outside a
parent (e.g. a button past the edge of its scroll area) all count as not fitting.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QFontMetrics, QTextDocument
from PySide6.QtGui import Qt as GuiQt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractScrollArea,
    QCheckBox,
    QComboBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QRadioButton,
    QStyle,
    QStyleOptionButton,
    QStyleOptionComboBox,
    QStyleOptionFrame,
    QStyleOptionHeader,
    QStyleOptionTab,
    QStyleOptionToolButton,
    QTabBar,
    QToolButton,
    QTreeWidget,
    QWidget,
)

SLACK = 1  # px: rounding between font metrics and layout


def _plain(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


def _name(w: QWidget) -> str:
    label = getattr(w, "text", None)
    text = label() if callable(label) else ""
    return f"{type(w).__name__} {w.objectName() or w.accessibleName() or ''} {str(text)[:60]!r}"


def _rich(label: QLabel) -> bool:
    fmt = label.textFormat()
    return fmt == Qt.TextFormat.RichText or (
        fmt == Qt.TextFormat.AutoText and GuiQt.mightBeRichText(label.text()))


def label_problem(label: QLabel) -> str | None:
    text = label.text()
    if not text.strip():
        return None
    m = label.margin()
    cr = label.contentsRect().adjusted(m, m, -m, -m)
    indent = label.indent()
    if indent > 0:
        cr.adjust(indent, 0, 0, 0)
    wrap = label.wordWrap()
    if _rich(label):
        doc = QTextDocument()
        doc.setDefaultFont(label.font())
        doc.setDocumentMargin(0)
        doc.setHtml(text)
        doc.setTextWidth(cr.width() if wrap else -1)
        need_w, need_h = doc.idealWidth(), doc.size().height()
    else:
        fm = QFontMetrics(label.font())
        flags = int(Qt.TextFlag.TextExpandTabs) | (int(Qt.TextFlag.TextWordWrap) if wrap else 0)
        r = fm.boundingRect(QRect(0, 0, max(cr.width(), 1), 1_000_000), flags, text)
        need_w, need_h = r.width(), r.height()
    if need_w > cr.width() + SLACK:
        return f"{_name(label)}: needs {need_w:.0f} px wide, has {cr.width()}"
    if need_h > cr.height() + SLACK:
        return f"{_name(label)}: needs {need_h:.0f} px high, has {cr.height()}"
    return None


def button_problem(b: QAbstractButton) -> str | None:
    text = _plain(b.text())
    if not text:
        return None
    fm = QFontMetrics(b.font())
    tw, th = fm.horizontalAdvance(text), fm.height()
    style = b.style()
    icon = b.iconSize() if not b.icon().isNull() else QSize(0, 0)
    if isinstance(b, QToolButton):
        opt = QStyleOptionToolButton()
        b.initStyleOption(opt)
        w, h = tw, th
        if b.toolButtonStyle() != Qt.ToolButtonStyle.ToolButtonTextOnly and (
                b.arrowType() != Qt.ArrowType.NoArrow or not b.icon().isNull()):
            side = b.iconSize()
            w, h = w + side.width() + 4, max(h, side.height())
        need = style.sizeFromContents(QStyle.ContentsType.CT_ToolButton, opt, QSize(w, h), b)
    elif isinstance(b, (QCheckBox, QRadioButton)):
        opt = QStyleOptionButton()
        b.initStyleOption(opt)
        ct = QStyle.ContentsType.CT_CheckBox if isinstance(b, QCheckBox) else QStyle.ContentsType.CT_RadioButton
        need = style.sizeFromContents(ct, opt, QSize(tw, th), b)
    elif isinstance(b, QPushButton):
        opt = QStyleOptionButton()
        b.initStyleOption(opt)
        w = tw + (icon.width() + 4 if icon.width() else 0)
        need = style.sizeFromContents(QStyle.ContentsType.CT_PushButton, opt,
                                      QSize(w, max(th, icon.height())), b)
    else:
        return None
    if need.width() > b.width() + SLACK or need.height() > b.height() + SLACK:
        return (f"{_name(b)}: needs {need.width()}x{need.height()} px for its text, "
                f"has {b.width()}x{b.height()}")
    return None


def combo_problem(c: QComboBox) -> str | None:
    text = c.currentText()
    if not text or c.isEditable():
        return None
    opt = QStyleOptionComboBox()
    c.initStyleOption(opt)
    field = c.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                     QStyle.SubControl.SC_ComboBoxEditField, c)
    need = QFontMetrics(c.font()).horizontalAdvance(text)
    if not c.itemIcon(c.currentIndex()).isNull():
        need += c.iconSize().width() + 4
    if need > field.width() + SLACK:
        return f"{_name(c)}: shows {text!r} in {field.width()} px, needs {need}"
    return None


def placeholder_problem(e: QLineEdit) -> str | None:
    text = e.placeholderText()
    if e.text() or not text:
        return None
    opt = QStyleOptionFrame()
    e.initStyleOption(opt)
    r = e.style().subElementRect(QStyle.SubElement.SE_LineEditContents, opt, e)
    m = e.textMargins()
    width = r.width() - m.left() - m.right() - 4  # QLineEdit's own 2 px on each side
    need = QFontMetrics(e.font()).horizontalAdvance(text)
    if need > width + SLACK:
        return f"{_name(e)}: placeholder {text[:50]!r} needs {need} px, has {width}"
    return None


def tabs_problems(bar: QTabBar) -> list[str]:
    out = []
    fm = QFontMetrics(bar.font())
    for i in range(bar.count()):
        text = _plain(bar.tabText(i))
        opt = QStyleOptionTab()
        bar.initStyleOption(opt, i)
        need = bar.style().sizeFromContents(
            QStyle.ContentsType.CT_TabBarTab, opt,
            QSize(fm.horizontalAdvance(text) + 2 * bar.style().pixelMetric(
                QStyle.PixelMetric.PM_TabBarTabHSpace, opt, bar) // 2, fm.height()), bar)
        rect = bar.tabRect(i)
        if rect.width() + SLACK < need.width() or not bar.rect().contains(rect):
            out.append(f"tab {text!r}: needs {need.width()} px, has {rect.width()} "
                       f"(or lies outside its bar)")
    return out


def header_problems(h: QHeaderView) -> list[str]:
    out = []
    model = h.model()
    if model is None:
        return out
    fm = QFontMetrics(h.font())
    margin = h.style().pixelMetric(QStyle.PixelMetric.PM_HeaderMargin, QStyleOptionHeader(), h)
    for s in range(h.count()):
        if h.isSectionHidden(s):
            continue
        text = str(model.headerData(s, h.orientation()) or "")
        need = fm.horizontalAdvance(text) + 2 * margin
        if text and need > h.sectionSize(s) + SLACK:
            out.append(f"header {text!r}: needs {need} px, has {h.sectionSize(s)}")
    return out


def item_problems(view: QAbstractItemView) -> list[str]:
    out = []
    fm = QFontMetrics(view.font())
    margin = 2 * (view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view) + 1)
    if isinstance(view, QTreeWidget):
        for n in range(view.topLevelItemCount()):
            item = view.topLevelItem(n)
            for c in range(view.columnCount()):
                if view.isColumnHidden(c):
                    continue
                text = item.text(c)
                width = view.columnWidth(c)
                if c == 0:
                    width -= view.indentation() if view.rootIsDecorated() else 0
                need = fm.horizontalAdvance(text) + margin
                # user content cut to its column is fine when the whole of it is one hover away
                whole = " ".join(item.toolTip(c).split())
                if text and need > width + SLACK and not (whole and whole.startswith(text.strip())):
                    out.append(f"{type(view).__name__} item {text!r}: needs {need} px, has {width}")
    elif isinstance(view, QListWidget) and not view.wordWrap():
        width = view.viewport().width()
        for n in range(view.count()):
            text = view.item(n).text()
            need = fm.horizontalAdvance(text) + margin
            if text and need > width + SLACK:
                out.append(f"QListWidget item {text!r}: needs {need} px, has {width}")
    return out


def status_line_problem(w: QWidget) -> str | None:
    text = w.text()  # type: ignore[attr-defined]
    if not text:
        return None
    fm = QFontMetrics(w.font())
    r = fm.boundingRect(QRect(0, 0, max(w.width(), 1), 1_000_000), int(Qt.TextFlag.TextWordWrap), text)
    if r.height() > w.height() - 4 + SLACK:
        return f"{_name(w)}: needs {r.height()} px high, has {w.height() - 4}"
    return None


def _in_scroll_viewport(w: QWidget, ancestor: QWidget) -> bool:
    p = ancestor.parentWidget()
    return isinstance(p, QAbstractScrollArea) and p.viewport() is ancestor


def outside_parent(w: QWidget) -> str | None:
    """A widget pushed (partly) outside an ancestor: clipped. Inside a scroll area only the
    horizontal direction counts (scrolling down a list is fine; scrolling sideways to find a
    button is not)."""
    top = w.window()
    r = QRect(w.mapTo(top, QPoint(0, 0)), w.size())
    a = w.parentWidget()
    scrolled = False  # inside a scroll area, from its viewport up
    while a is not None:
        ar = QRect(a.mapTo(top, QPoint(0, 0)), a.size()) if a is not top else top.rect()
        scrolled = scrolled or _in_scroll_viewport(w, a)
        horizontal = r.left() < ar.left() - SLACK or r.right() > ar.right() + SLACK
        vertical = r.top() < ar.top() - SLACK or r.bottom() > ar.bottom() + SLACK
        if horizontal or (vertical and not scrolled):
            return f"{_name(w)}: lies outside {type(a).__name__} {a.objectName()!r} ({r} in {ar})"
        if a is top:
            break
        a = a.parentWidget()
    return None


def _skip(w: QWidget) -> bool:
    """Parts of composite widgets that draw no text of their own."""
    p = w.parentWidget()
    return p is not None and isinstance(p, (QComboBox, QTabBar)) or type(w).__name__ in (
        "QSpinBoxLineEdit", "QDoubleSpinBoxLineEdit")


def problems(root: QWidget) -> list[str]:
    """Every visible text under ``root`` that does not fit, one line each."""
    out: list[str] = []
    for w in [root, *root.findChildren(QWidget)]:
        if not w.isVisible() or _skip(w) or w.width() <= 0:
            continue
        p = None
        if isinstance(w, QLabel) and w.pixmap().isNull():
            p = label_problem(w)
        elif isinstance(w, QAbstractButton):
            p = button_problem(w)
        elif isinstance(w, QComboBox):
            p = combo_problem(w)
        elif isinstance(w, QLineEdit) and not isinstance(w.parentWidget(), QComboBox):
            p = placeholder_problem(w)
        elif isinstance(w, QTabBar):
            out += tabs_problems(w)
        elif isinstance(w, QHeaderView):
            out += header_problems(w)
        elif type(w).__name__ == "StatusLine":
            p = status_line_problem(w)
        if isinstance(w, QAbstractItemView) and not isinstance(w, QHeaderView):
            out += item_problems(w)
        if p:
            out.append(p)
        if isinstance(w, (QLabel, QAbstractButton, QComboBox, QLineEdit)):
            outside = outside_parent(w)
            if outside:
                out.append(outside)
    return out
