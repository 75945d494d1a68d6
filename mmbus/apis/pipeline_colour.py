"""Which colour a classifier's test pipeline reads its images in: the one rule that in-memory
inference, class-activation maps, the exported config and the ONNX bundle all follow when they hand
the network a crop instead of a file."""

#: ``color_type`` values of mmcv's ``LoadImageFromFile`` that give a 1-channel image.
GREY_COLOR_TYPES = ('grayscale', 'unchanged_grayscale')


def is_loader(step) -> bool:
    """``step`` (a transform config) is a ``LoadImageFromFile``, under any registry scope."""
    return 'LoadImageFromFile' in str(step.get('type', ''))


def is_grey_loader(step) -> bool:
    """``step`` is a ``LoadImageFromFile`` that reads grey."""
    return is_loader(step) and step.get('color_type', 'color') in GREY_COLOR_TYPES


def pipeline_reads_grey(pipeline) -> bool:
    """The image a file-reading run of ``pipeline`` passes on is grey.

    Every ``LoadImageFromFile`` re-reads ``img_path`` and overwrites ``img``, so when a pipeline
    has more than one (an mmpretrain test pipeline has one, first) the last decides the colour.
    No loader: the caller's image is used as given, i.e. not grey.
    """
    loaders = [t for t in pipeline if is_loader(t)]
    return bool(loaders) and is_grey_loader(loaders[-1])
