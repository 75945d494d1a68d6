"""The one definition of the recogniser's classes: names in label order and the pathology -> label mapping
(benign 0, malignant 1, the positive class of every ROC). Imported by datasets, metrics, crops, inference and
reports; importable without torch."""
from typing import Optional

CLASSES = ('benign', 'malignant')
LABEL = {name: i for i, name in enumerate(CLASSES)}


def pathology_label(pathology) -> Optional[int]:
    """0 / 1 for 'benign' / 'malignant' (any case); None for anything else (normal, unknown, missing)."""
    return LABEL.get(str(pathology).strip().lower()) if pathology is not None else None
