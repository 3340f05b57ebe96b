"""Scanner and datamodule for DAGM 2007 (the 10-class "weakly supervised" release).

Layout as distributed::

    <root>/Class{1..10}/{Train,Test}/NNNN.PNG                 grey 512x512 images
    <root>/Class{1..10}/{Train,Test}/Label/Labels.txt          which images are defective
    <root>/Class{1..10}/{Train,Test}/Label/NNNN_label.PNG      coarse ellipse per defect

``Labels.txt`` starts with a header line (a single number), then one row per image::

    index  flag  filename  0  label_filename      (flag 1 = defective; label_filename 0 otherwise)

separated by tabs or spaces. DAGM labels defects in *both* splits: the seen anomalies are
drawn from Train's defective images (``seen_from="train"``), the rest of Train's defective
images are not used at all, and Test is evaluated whole. The ellipses over-cover the
defects, so pixel metrics on DAGM are measured against a coarse ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prn.data.base import AnomalyDataModule
from prn.data.errors import DatasetError
from prn.data.image_io import require_same_size
from prn.data.records import DatasetSplit, Record, find_category_dir, list_image_files, require_dir

CATEGORIES = tuple(f"Class{index}" for index in range(1, 11))
NORMAL, DEFECT = "good", "defect"
LAYOUT = "DAGM 2007 (Class<N>/{Train,Test}/NNNN.PNG with Label/Labels.txt)"
DOWNLOAD_HINT = "see `python -m prn.data.download dagm` for where to get DAGM 2007"


@dataclass(frozen=True)
class LabelRow:
    """One image row of ``Labels.txt``; ``label_name`` is None for defect-free images."""

    line_number: int
    defective: bool
    image_name: str
    label_name: str | None


def scan_dagm(root: Path | str, category: str) -> DatasetSplit:
    """List one DAGM class; Train's defective images become the labelled training anomalies."""
    class_dir = find_category_dir(Path(root).expanduser(), str(category), _is_class, DOWNLOAD_HINT)
    train = _split_records(require_dir(class_dir / "Train", "training images and Label/", LAYOUT))
    test = _split_records(require_dir(class_dir / "Test", "test images and Label/", LAYOUT))
    return DatasetSplit.from_labelled_train(train, test, class_dir / "Train")


def read_labels(path: Path) -> list[LabelRow]:
    """Parse ``Labels.txt``: skip the header and blank lines, tolerate any whitespace between fields."""
    if not path.is_file():
        raise DatasetError(
            f"missing {path}: DAGM lists its defective images there; restore it from the original archive."
        )
    lines = [
        (number, line.split())
        for number, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1)
    ]
    lines = [(number, fields) for number, fields in lines if fields]
    if lines and len(lines[0][1]) < 3:
        lines = lines[1:]
    return [_parse_row(path, number, fields) for number, fields in lines]


def _parse_row(path: Path, line_number: int, fields: list[str]) -> LabelRow:
    index, flag, image_name = (fields + ["", "", ""])[:3]
    if not index.isdigit() or flag not in ("0", "1") or not image_name:
        raise DatasetError(
            f"{path}:{line_number}: {' '.join(fields)!r} is not 'index flag filename 0 label_filename' "
            "with flag 0 or 1; fix the row."
        )
    label_name = fields[4] if len(fields) >= 5 and fields[4] != "0" else None
    return LabelRow(line_number, flag == "1", image_name, label_name)


def _is_class(path: Path) -> bool:
    return (path / "Train").is_dir() or (path / "Test").is_dir()


def _split_records(split_dir: Path) -> list[Record]:
    """Records of one split, in file-name order; every image must be listed exactly once."""
    labels_path = split_dir / "Label" / "Labels.txt"
    rows = {row.image_name.lower(): row for row in read_labels(labels_path)}
    images = list_image_files(split_dir)
    unlisted = [path.name for path in images if path.name.lower() not in rows]
    if unlisted:
        raise DatasetError(
            f"images {unlisted[:5]} in {split_dir} are not listed in {labels_path}; add rows for them or remove them."
        )
    present = {path.name.lower() for path in images}
    missing = [row.image_name for name, row in rows.items() if name not in present]
    if missing:
        raise DatasetError(
            f"{labels_path} lists {missing[:5]} but {split_dir} does not hold them; restore the images or fix Labels.txt."
        )
    return [_record(path, rows[path.name.lower()], labels_path) for path in images]


def _record(image_path: Path, row: LabelRow, labels_path: Path) -> Record:
    if not row.defective:
        return Record(image_path, 0, None, NORMAL)
    label_name = row.label_name or f"{image_path.stem}_label.PNG"
    mask_path = labels_path.parent / label_name
    if not mask_path.is_file():
        raise DatasetError(
            f"{labels_path}:{row.line_number} marks {image_path.name} defective but its label {mask_path} does not exist; "
            "restore the label image from the original archive."
        )
    require_same_size(image_path, mask_path)
    return Record(image_path, 1, mask_path, DEFECT)


class DAGMDataModule(AnomalyDataModule):
    """One DAGM 2007 class (``Class1`` .. ``Class10``); see :class:`AnomalyDataModule` for the options."""

    def __init__(self, root: str | Path, category: str, seen_from: str = "train", **options: Any) -> None:
        super().__init__(root, category, scanner=scan_dagm, seen_from=seen_from, **options)
