"""Models: calibrated purchase propensity (LightGBM) and its baselines; channel choice lives beside them.

Every model follows scikit-learn's estimator contract and takes the per-row ``cutoff`` in ``fit`` so
that early stopping and calibration use held-out *time*, never a random row split.
"""

from __future__ import annotations

from omni_ml.models.baselines import LogisticBaseline, RecencyFrequencyBaseline
from omni_ml.models.btyd import BetaGeoModel, GammaGammaModel, ParetoNBDModel, btyd_customer_value, rfm_summary
from omni_ml.models.channel import ChannelConfig, ChannelModel, channel_training_data, fit_channel_model
from omni_ml.models.propensity import PropensityModel, load_model, predict_propensity, save_model

__all__ = [
    "BetaGeoModel",
    "ChannelConfig",
    "ChannelModel",
    "GammaGammaModel",
    "LogisticBaseline",
    "ParetoNBDModel",
    "PropensityModel",
    "RecencyFrequencyBaseline",
    "btyd_customer_value",
    "channel_training_data",
    "fit_channel_model",
    "load_model",
    "predict_propensity",
    "rfm_summary",
    "save_model",
]
