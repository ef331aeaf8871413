"""Render the README's picture of a derivation: page 2 of ``xent derive --classes 3 --format latex``.

    python scripts/render_readme_picture.py [--output docs/derive-ce-c3.png]

Needs pdflatex (Debian: texlive-latex-base) and pdftoppm (Debian: poppler-utils).
The page is the document exactly as ``xent derive`` writes it, compiled by
pdflatex and rasterised at 110 dpi, cropped to the text block.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ["derive", "--classes", "3", "--format", "latex"]
PAGE = 2
DPI = 110
CROP = {"-x": 165, "-y": 150, "-W": 600, "-H": 1000}  # pixels at DPI: the A4 page's text block


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "derive-ce-c3.png")
    args = parser.parse_args()
    for tool in ("pdflatex", "pdftoppm"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian: texlive-latex-base, poppler-utils)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tex = subprocess.run([sys.executable, "-m", "xentcli", *COMMAND], check=True, capture_output=True,
                             text=True).stdout
        (work / "doc.tex").write_text(tex, encoding="utf-8")
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=work, check=True,
                       capture_output=True)
        crop = [str(x) for kv in CROP.items() for x in kv]
        subprocess.run(["pdftoppm", "-png", "-singlefile", "-f", str(PAGE), "-l", str(PAGE), "-r", str(DPI), *crop,
                        "doc.pdf", "page"], cwd=work, check=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / "page.png", args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
