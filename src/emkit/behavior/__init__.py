"""Behaviour segmentation: from pose-tracker files to states, usage and dwell times.

An application layer above the models (it composes emkit's public estimators):

* :func:`read_poses` reads DeepLabCut, SLEAP, LightningPose, Anipose and NWB files through
  the ``movement`` package (``pip install 'emkit[behavior]'``); :func:`read_table_recordings`
  reads generic tables (accelerometers, precomputed features);
* :class:`PoseFeatures`: egocentric alignment, optional PCA, kinematics, standardisation
  (missing keypoints stay NaN);
* :func:`segment` fits an autoregressive (or Gaussian) HMM to all recordings and returns a
  :class:`Segmentation` with per-frame states, per-recording usage, dwell times in seconds
  and transition counts; ``Segmentation.write(dir)`` writes them with the model, an
  ethogram and the HTML report (``emkit segment`` on the command line);
* :func:`simulate_poses`: synthetic animals with known behaviours.
"""

from .features import PoseFeatures, egocentric, kinematics
from .recordings import SOURCE_SOFTWARE, Recording, read_poses, read_table_recordings
from .segment import Segmentation, segment
from .synthetic import BEHAVIOURS, KEYPOINTS, simulate_poses

__all__ = ["BEHAVIOURS", "KEYPOINTS", "PoseFeatures", "Recording", "SOURCE_SOFTWARE", "Segmentation", "egocentric", "kinematics", "read_poses",
           "read_table_recordings", "segment", "simulate_poses"]
