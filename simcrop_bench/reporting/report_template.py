"""The static page around the report's sections: inline CSS only, no scripts, fonts or links out."""

from __future__ import annotations

from html import escape

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.synthetic td.data { color: #8a5a00; font-weight: bold; }
.banner { background: #fff3cd; border: 2px solid #e0a800; padding: 0.7em 1em; font-weight: bold;
          margin: 1em 0; }
.note { color: #555; font-style: italic; }
figure { display: inline-block; margin: 0.5em 1.5em 1em 0; vertical-align: top; }
figure img { width: 420px; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.8em; color: #444; max-width: 420px; }
footer { margin-top: 3em; border-top: 1px solid #ccc; padding-top: 0.6em; font-size: 0.8em; color: #555; }
footer dt { font-weight: bold; float: left; clear: left; width: 11em; }
footer dd { margin-left: 11.5em; }
"""


def page(title: str, body: str) -> str:
    """A complete HTML document; ``title`` is plain text, ``body`` is already HTML."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def section(title: str, content: str, anchor: str) -> str:
    return f'<section id="{escape(anchor)}">\n<h2>{escape(title)}</h2>\n{content}\n</section>'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def figure(src: str, alt: str, caption: str) -> str:
    return f'<figure><img src="{escape(src)}" alt="{escape(alt)}"><figcaption>{escape(caption)}</figcaption></figure>'


def definition_list(items: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items) + "</dl>"
