"""From pose-tracker files to behavioural states, usage and dwell times per recording.

Writes two DeepLabCut CSV files of simulated mice (stand-ins for your tracker's output; 10% of
keypoints dropped, as trackers do), segments them with a Gaussian HMM on egocentric pose and
kinematics, and writes states.csv, summary.csv, transitions.csv, model.npz, ethogram.png and
report.html.  The same from a shell:

    emkit segment mouse0.csv mouse1.csv --source-software DeepLabCut --fps 30 -k 3 \\
        --model gaussian-hmm --anchor body --heading tail_base,neck --seed 0 -o segmentation/

Needs ``pip install 'emkit[behavior]'`` (the movement package reads the tracker files).
Run: python examples/pose_segmentation.py [output-directory]
"""

import os
import sys

import numpy as np
from movement.io import load_poses, save_poses

from emkit.behavior import BEHAVIOURS, KEYPOINTS, segment, simulate_poses

out = sys.argv[1] if len(sys.argv) > 1 else "emkit-examples"
os.makedirs(out, exist_ok=True)
fps = 30.0

# 1. Tracker files: two mice, 1200 frames (40 s) each, written by movement as DeepLabCut CSV
files, truth = [], []
for i in range(2):
    positions, states = simulate_poses(1200, fps=fps, missing=0.1, random_state=i)   # (T, 6 keypoints, 2)
    ds = load_poses.from_numpy(positions.transpose(0, 2, 1)[..., None], keypoint_names=KEYPOINTS,
                               individual_names=["mouse"], fps=fps, source_software="DeepLabCut")
    path = os.path.join(out, f"mouse{i}.csv")
    if os.path.exists(path):
        os.remove(path)
    save_poses.to_dlc_file(ds, path, split_individuals=False)
    files.append(path)
    truth.append(states)

# 2. Segment: egocentric pose (centred on the body, heading from tail base to neck), speed and
#    angular velocity, standardised; dropped keypoints stay missing and are integrated out
seg = segment(files, source_software="DeepLabCut", fps=fps, n_states=3, model="gaussian-hmm", anchor="body",
              heading=("tail_base", "neck"), random_state=0)
print(f"{len(seg.recordings)} recordings, features: {', '.join(seg.feature_names)}")
for note in seg.notes:
    print("note:", note)

# 3. Per-recording usage and dwell times (seconds), and how the states match the simulated behaviours
print(seg.summary().round(3).to_string(index=False))
true = np.concatenate(truth)
for k in range(seg.n_states):
    share = np.bincount(true[seg.states == k], minlength=3) / max(1, np.sum(seg.states == k))
    print(f"state {k}: {100 * share.max():.0f}% of its frames are {BEHAVIOURS[share.argmax()]}")

# 4. Everything to disk: tables, model file, ethogram of every recording, HTML report
for kind, path in seg.write(os.path.join(out, "segmentation")).items():
    print(f"wrote {kind}: {path}")
