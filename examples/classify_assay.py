"""A Bayes classifier of assay readings: one Gaussian mixture per class, with alerts.

Simulates two readings per sample for three classes of assay (one class is itself two
sub-populations), picks each class's number of components by BIC, classifies new samples and
flags those that are ambiguous (between classes) or anomalous (unlike any training sample).
Writes the decision regions with the flagged points marked and the model file.

Run: python examples/classify_assay.py [output-directory]
"""

import os
import sys

import numpy as np

import emkit
from emkit.plot import plot_decision_regions, save_figure

out = sys.argv[1] if len(sys.argv) > 1 else "emkit-examples"
os.makedirs(out, exist_ok=True)

rng = np.random.default_rng(0)
X = np.concatenate([rng.normal([1.0, 1.0], [0.5, 0.4], (200, 2)),    # inactive
                    rng.normal([3.5, 1.5], [0.6, 0.3], (120, 2)),    # active, low-binding sub-population
                    rng.normal([4.5, 3.5], [0.4, 0.6], (120, 2)),    # active, high-binding sub-population
                    rng.normal([1.5, 4.0], [0.5, 0.5], (150, 2))])   # toxic
y = np.repeat(["inactive", "active", "active", "toxic"], [200, 120, 120, 150])

# one mixture per class, its number of components chosen by BIC on that class's samples
sel = emkit.select(emkit.GaussianMixtureClassifier(random_state=0), X, range(1, 5), y=y, random_state=0)
clf = sel.best_model
print("components per class:", sel.best_n_components)

new = np.array([[1.0, 1.2],     # an ordinary inactive sample
                [2.15, 1.2],    # between inactive and active
                [4.4, 3.3],     # an ordinary active sample
                [8.0, -1.0]])   # unlike anything seen: a failed well?
result = clf.classify(new)
for x, label, p, amb, ano in zip(new, result.labels, result.proba, result.ambiguous, result.anomalous):
    alert = ", ".join(a for a, f in (("AMBIGUOUS", amb), ("ANOMALOUS", ano)) if f) or "ok"
    print(f"{x} -> {label:<8s} p = {np.round(p, 3)} {alert}")
print(f"training samples flagged: {clf.is_ambiguous(X).sum()} ambiguous, {clf.is_anomalous(X).sum()} anomalous")

save_figure(plot_decision_regions(clf, np.concatenate([X, new]), feature_names=["reading 1", "reading 2"]),
            os.path.join(out, "assay_regions.png"))
print("wrote", clf.save(os.path.join(out, "assay_classifier.npz")), os.path.join(out, "assay_regions.png"))
