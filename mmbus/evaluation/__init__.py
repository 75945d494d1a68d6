"""Metrics (registered by :mod:`mmbus.registry`), and the operating-point and calibration helpers, which
import without mmengine."""
from .calibration import (apply_temperature, brier_score, expected_calibration_error, fit_temperature,
                          load_calibration, plot_reliability, reliability_curve, save_calibration,
                          validate_calibration)
from .operating_points import choose_thresholds, evaluate_at, roc_curve, wilson_interval, youden_threshold

__all__ = [
    'apply_temperature', 'brier_score', 'choose_thresholds', 'evaluate_at', 'expected_calibration_error',
    'fit_temperature', 'load_calibration', 'plot_reliability', 'reliability_curve', 'roc_curve',
    'save_calibration', 'validate_calibration', 'wilson_interval', 'youden_threshold'
]
